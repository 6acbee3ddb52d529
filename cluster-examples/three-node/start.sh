#!/usr/bin/env bash
# Starts two demo backends (python3 http.server) and the three nodes in the
# background; logs and PIDs go to ./run/. Stop with ./stop.sh.
set -euo pipefail
cd "$(dirname "$0")"
raftlb=${RAFTLB:-../../target/release/raftlb}
[ -x "$raftlb" ] || { echo "build first: cargo build --release (or set RAFTLB=/path/to/raftlb)"; exit 2; }
mkdir -p run
for port in 9001 9002; do
  mkdir -p "run/www$port" && echo "backend $port" > "run/www$port/index.html"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "run/www$port" > "run/backend$port.log" 2>&1 &
  echo $! > "run/backend$port.pid"
done
for i in 1 2 3; do
  "$raftlb" node --config "node$i.toml" > "run/node$i.log" 2>&1 &
  echo $! > "run/node$i.pid"
done
for i in 1 2 3; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1$i:7300/readyz" > /dev/null && break
    sleep 0.1
  done
done
"$raftlb" ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200,127.0.0.13:7200 status
echo
echo "try: curl http://127.0.0.100:8080/   (the VIP; each node also serves its own 127.0.0.1N:8080)"
echo "     logs in run/, stop with ./stop.sh; README.md has a failover drill"
