#!/usr/bin/env bash
# Reconnects node N after ./partition.sh N: removes the blackhole routes
# between N and the other nodes (except those another cut-off node still
# needs).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
n=$(node_arg "${1:-}")
ns_exists "rlbe-n$n" && [ -d run ] || die "rlbe-n$n does not exist: ./up.sh first"
if [ -f run/partitioned ]; then
  grep -vx "$n" run/partitioned > run/partitioned.new || true
  mv run/partitioned.new run/partitioned
fi
apply_partitions
echo "node $n reconnected to the other nodes"
