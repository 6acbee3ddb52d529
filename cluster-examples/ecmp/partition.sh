#!/usr/bin/env bash
# Cuts node N off from the other two nodes, but not from the router: a
# blackhole route to each other node's /32 in N's namespace, and to N's
# /32 in theirs (more specific than the LAN's /24, so the packets are
# dropped on their way out, both ways). Raft, the control API and the
# lease requests between N and the others stop; N's BGP session and BFD to
# the router, its health checks to the backends and the client's flows
# through the router are untouched. The process keeps running.
# ./heal.sh N undoes it. Several nodes may be cut off at once; the set is
# in run/partitioned.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
n=$(node_arg "${1:-}")
ns_exists "rlbe-n$n" && [ -d run ] || die "rlbe-n$n does not exist: ./up.sh first"
grep -qx "$n" run/partitioned 2> /dev/null || echo "$n" >> run/partitioned
apply_partitions
echo "node $n cut off from the other nodes (blackhole routes; the router still reaches it); ./heal.sh $n reconnects it"
