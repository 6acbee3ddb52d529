#!/usr/bin/env bash
# Which node namespaces have the VIP (on lo: see src/vip/netlink.rs); there should never be two
# live holders. Also shows where the client's ARP entry for the VIP points.
#
#   ./holder.sh           a table; exit status 0 if exactly one namespace has it
#   ./holder.sh --id      only the node number of each holder, one a line
#                         (kill -9 "$(cat run/node"$(./holder.sh --id)".pid)")
#   ./holder.sh --watch   one line every time the picture changes, with the
#                         time; Ctrl-C stops it
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root

# Namespaces that have the VIP, space-separated.
holders() {
  local ns out=
  for ns in "${NODE_NAMESPACES[@]}"; do
    ns_exists "$ns" || continue
    case " $(ip -n "$ns" -br addr show 2> /dev/null) " in
      *" $VIP/"*) out="$out $ns" ;;
    esac
  done
  echo "${out# }"
}

mac_of() {
  ip -n "$1" -br link show dev eth0 2> /dev/null | awk '{print $3}'
}

# The client's ARP entry for the VIP: "NS (STATE)", "MAC (STATE)" or "none".
client_arp() {
  local mac state ns
  ns_exists rlb-client || { echo none; return; }
  read -r mac state < <(ip -n rlb-client neigh show "$VIP" dev eth0 2> /dev/null |
    awk '{for (i = 1; i <= NF; i++) if ($i == "lladdr") print $(i + 1), $NF}') || true
  [ -n "${mac:-}" ] || { echo none; return; }
  for ns in "${NODE_NAMESPACES[@]}"; do
    if [ "$(mac_of "$ns")" = "$mac" ]; then
      echo "$ns ($state)"
      return
    fi
  done
  echo "$mac ($state)"
}

# Notes on a node namespace: cut off, or nothing running in it. A holder
# with nothing running has a stale address (its node was killed).
notes() {
  local ns=$1 holding=$2 out=
  case $(ip -br link show dev "$ns-br" 2> /dev/null | awk '{print $2}') in
    UP | UNKNOWN | LOWERLAYERDOWN) ;;
    *) out="$out, cut off" ;;
  esac
  if [ -z "$(ip netns pids "$ns" 2> /dev/null)" ]; then
    if [ "$holding" = 1 ]; then
      out="$out, no process: stale address"
    else
      out="$out, no process"
    fi
  fi
  echo "${out#, }"
}

case ${1:-} in
  --id)
    for ns in $(holders); do echo "${ns#rlb-n}"; done
    ;;
  --watch)
    last=
    while true; do
      h=$(holders)
      line="holders: ${h:-none}"
      for ns in $h; do
        note=$(notes "$ns" 1)
        [ -z "$note" ] || line="$line [$ns: $note]"
      done
      [ "$(wc -w <<< "$h")" -le 1 ] || line="$line  <-- MORE THAN ONE"
      arp=$(client_arp)
      line="$line; client ARP -> ${arp% (*}"
      if [ "$line" != "$last" ]; then
        echo "$(date +%T.%3N) $line"
        last=$line
      fi
      sleep 0.05
    done
    ;;
  "")
    h=" $(holders) "
    for ns in "${NODE_NAMESPACES[@]}"; do
      ns_exists "$ns" || { printf '%-7s not set up\n' "$ns"; continue; }
      case $h in
        *" $ns "*) what="holds $VIP  eth0 $(mac_of "$ns")" holding=1 ;;
        *) what="-" holding=0 ;;
      esac
      note=$(notes "$ns" "$holding")
      printf '%-7s %s%s\n' "$ns" "$what" "${note:+  ($note)}"
    done
    echo "client ARP for $VIP -> $(client_arp)"
    count=$(wc -w <<< "$h")
    echo "holders: $count"
    [ "$count" -eq 1 ]
    ;;
  *) die "usage: $(basename "$0") [--id|--watch]" ;;
esac
