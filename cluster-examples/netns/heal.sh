#!/usr/bin/env bash
# Reconnects node N after ./partition.sh N.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
n=$(node_arg "${1:-}")
link_exists "rlb-n$n-br" || die "rlb-n$n-br does not exist: ./up.sh first"
ip link set "rlb-n$n-br" up
echo "node $n reconnected (rlb-n$n-br up)"
