#!/usr/bin/env bash
# Cuts node N off the LAN: its port on the bridge goes down, so it reaches
# neither the other nodes nor the client (its eth0 loses carrier). The
# process keeps running. ./heal.sh N undoes it.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
n=$(node_arg "${1:-}")
link_exists "rlb-n$n-br" || die "rlb-n$n-br does not exist: ./up.sh first"
ip link set "rlb-n$n-br" down
echo "node $n cut off (rlb-n$n-br down); ./heal.sh $n reconnects it"
