#!/usr/bin/env bash
# An idle three-node `raftlb demo` on a quiet machine, then with both cores
# saturated by stress-ng: counts the peer-reachability flaps, HTTP/2 stream
# resets, leader changes and VIP releases each node logged in each phase,
# and the CPU time the three nodes used in it.
#
#   benches/busy_machine.sh [RAFTLB_BINARY ...]   # default: target/release/raftlb
#   PHASE_S=60 (seconds per phase), STRESS_CPUS=2 (stress-ng CPU hogs; 8 oversubscribes 4x)
#
# Installs stress-ng (Debian) when missing. Starts and stops only its own
# processes, by PID; the demo's traffic stays on 127.0.0.x.
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE_S=${PHASE_S:-60}
STRESS_CPUS=${STRESS_CPUS:-2}
if ! command -v stress-ng >/dev/null; then
  apt-get update -qq && apt-get install -y -qq stress-ng >/dev/null
fi
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=(target/release/raftlb)

count() { # pattern, files...
  local pattern=$1; shift
  cat "$@" 2>/dev/null | grep -c -- "$pattern" || true
}

ticks=$(getconf CLK_TCK)
cpu_s() { # CPU seconds used so far by the demo's node processes
  local pid total=0
  for pid in $(pgrep -P "$demo"); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  echo "$total"
}

phase() { # name, dir
  local name=$1 dir=$2
  local logs=("$dir"/node*.log)
  local before_unreachable before_back before_reset before_leader before_release
  before_unreachable=$(count "peer unreachable" "${logs[@]}")
  before_back=$(count "peer reachable again" "${logs[@]}")
  before_reset=$(count "remotely-reset" "${logs[@]}")
  before_leader=$(count "leader changed" "${logs[@]}")
  before_release=$(count "VIP released" "${logs[@]}")
  local before_cpu
  before_cpu=$(cpu_s)
  if [ "$name" = busy ]; then
    stress-ng --cpu "$STRESS_CPUS" --timeout "${PHASE_S}s" --quiet &
    local stress=$!
    wait "$stress" || true
  else
    sleep "$PHASE_S"
  fi
  local used=$(( $(cpu_s) - before_cpu ))
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$binary" "$name" \
    $(( $(count "peer unreachable" "${logs[@]}") - before_unreachable )) \
    $(( $(count "peer reachable again" "${logs[@]}") - before_back )) \
    $(( $(count "remotely-reset" "${logs[@]}") - before_reset )) \
    $(( $(count "leader changed" "${logs[@]}") - before_leader )) \
    $(( $(count "VIP released" "${logs[@]}") - before_release )) \
    "$(awk -v t="$used" -v hz="$ticks" 'BEGIN {printf "%.1f", t / hz}')"
}

echo "| binary | phase (${PHASE_S} s) | peer unreachable | reachable again | stream resets | leader changes (lines, all nodes) | VIP releases | node CPU s |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for binary in "${binaries[@]}"; do
  out=$(mktemp)
  "$binary" demo >"$out" 2>&1 &
  demo=$!
  dir=""
  for _ in $(seq 1 100); do
    dir=$(sed -n 's/.*configs and logs in \(.*\)$/\1/p' "$out" | head -1)
    [ -n "$dir" ] && grep -q "leader changed" "$dir"/node1.log 2>/dev/null && break
    sleep 0.2
  done
  if [ -z "$dir" ] || ! grep -q "leader changed" "$dir"/node1.log 2>/dev/null; then
    echo "the demo of $binary did not start (no leader in 20 s); see $out" >&2
    kill -INT "$demo"; wait "$demo" || true
    exit 1
  fi
  sleep 5 # settle
  phase quiet "$dir"
  phase busy "$dir"
  kill -INT "$demo"; wait "$demo" || true
  rm -f "$out"
done
