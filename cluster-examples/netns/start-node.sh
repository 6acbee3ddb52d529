#!/usr/bin/env bash
# Starts node N again in its namespace with the command line up.sh used,
# e.g. after killing it in the drill: ./start-node.sh 2. Its log goes on in
# run/nodeN.log; it resumes from its data dir (run/data/nodeN).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
n=$(node_arg "${1:-}")
raftlb=$(raftlb_path)
if [ ! -f "run/node$n.toml" ] || ! ns_exists "rlb-n$n"; then
  die "rlb-n$n is not set up: ./up.sh first"
fi
if [ -f "run/node$n.pid" ] && alive "$(cat "run/node$n.pid")"; then
  die "node $n is running already (PID $(cat "run/node$n.pid"))"
fi
start_node "$n" "$raftlb"
echo "node $n started in rlb-n$n, PID $(cat "run/node$n.pid"), log run/node$n.log"
