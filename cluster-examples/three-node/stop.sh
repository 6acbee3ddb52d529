#!/usr/bin/env bash
# Stops what start.sh started (by the PIDs it recorded): nodes get SIGTERM
# and drain; the data dirs stay, so ./start.sh resumes the same cluster.
set -uo pipefail
cd "$(dirname "$0")" || exit
for f in run/node*.pid run/backend*.pid; do
  [ -f "$f" ] || continue
  kill -TERM "$(cat "$f")" 2>/dev/null
  rm -f "$f"
done
echo "stopped; remove ./data to start a fresh cluster"
