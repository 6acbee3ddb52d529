#!/usr/bin/env bash
# Undoes ./up.sh, also after a partial or failed run: stops the processes
# recorded in run/*.pid (the raftlb nodes, the BIRDs, the backends;
# SIGTERM, SIGKILL after 10 s; nothing is killed by name), deletes the
# namespaces, the veths and the bridge, and removes run/ (logs and Raft
# data with it). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root

# Is PID one this example started? It must be in one of our namespaces, or
# (if that namespace is gone already) have our command line.
ours() {
  local pid=$1 ns cmd
  alive "$pid" || return 1
  ns=$(ip netns identify "$pid" 2> /dev/null || true)
  case " ${NAMESPACES[*]} " in
    *" $ns "*) [ -n "$ns" ] && return 0 ;;
  esac
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null || true)
  case $cmd in
    *" node --config run/node"[123]".toml"* | *"http.server 900"[12]" --bind $WEB_ADDR"*) return 0 ;;
    *"bird -f -c run/router.conf"* | *"bird -f -c run/bird"[123]".conf"*) return 0 ;;
  esac
  return 1
}

pids=()
for f in run/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2> /dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"; then
    kill -TERM "$pid" 2> /dev/null || true
    pids+=("$pid")
  fi
done
if [ "${#pids[@]}" -gt 0 ]; then
  for _ in $(seq 100); do
    left=()
    for pid in "${pids[@]}"; do
      if alive "$pid"; then left+=("$pid"); fi
    done
    [ "${#left[@]}" -gt 0 ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if alive "$pid"; then
      echo "PID $pid did not stop within 10 s; SIGKILL" >&2
      kill -KILL "$pid" 2> /dev/null || true
    fi
  done
  echo "stopped ${#pids[@]} processes"
fi

for ns in "${NAMESPACES[@]}"; do
  if ns_exists "$ns"; then
    ip netns del "$ns"
  fi
done
# A namespace's veths go with it, though not at once: the kernel cleans a
# deleted namespace up in the background. A bridge port still there is
# deleted here (and may vanish meanwhile, hence no error).
for ns in "${LAN_NAMESPACES[@]}"; do
  if link_exists "$ns-br"; then
    ip link del "$ns-br" 2> /dev/null || true
  fi
done
if link_exists "$BRIDGE"; then
  ip link del "$BRIDGE"
fi
rm -rf run

remaining=
for _ in $(seq 30); do
  remaining=
  for ns in "${NAMESPACES[@]}"; do
    if ns_exists "$ns"; then remaining="$remaining $ns"; fi
  done
  for ns in "${LAN_NAMESPACES[@]}"; do
    if link_exists "$ns-br"; then remaining="$remaining $ns-br"; fi
  done
  if link_exists "$BRIDGE"; then remaining="$remaining $BRIDGE"; fi
  [ -n "$remaining" ] || break
  sleep 0.1
done
[ -z "$remaining" ] || die "could not remove:$remaining"
echo "removed the namespaces, veths, bridge $BRIDGE and run/"
