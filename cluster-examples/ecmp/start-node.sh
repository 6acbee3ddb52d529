#!/usr/bin/env bash
# Starts node N again in its namespace with the command lines up.sh used,
# e.g. after killing it in the drill: ./start-node.sh 2. Starts its raftlb
# if that is not running (its log goes on in run/nodeN.log; it resumes from
# its data dir, run/data/nodeN), and its BIRD if that is not running.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
n=$(node_arg "${1:-}")
if [ ! -f "run/node$n.toml" ] || [ ! -f "run/bird$n.conf" ] || ! ns_exists "rlbe-n$n"; then
  die "rlbe-n$n is not set up: ./up.sh first"
fi
node_pid=$(running "node$n") || node_pid=
bird_pid=$(running "bird$n") || bird_pid=
if [ -n "$node_pid" ] && [ -n "$bird_pid" ]; then
  die "node $n is running already (raftlb PID $node_pid, BIRD PID $bird_pid)"
fi
if [ -z "$node_pid" ]; then
  start_node "$n" "$(raftlb_path)"
  echo "node $n started in rlbe-n$n, PID $(cat "run/node$n.pid"), log run/node$n.log"
fi
if [ -z "$bird_pid" ]; then
  start_bird "rlbe-n$n" "bird$n"
  echo "its BIRD started, PID $(cat "run/bird$n.pid"), log run/bird$n.log"
fi
