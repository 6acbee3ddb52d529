#!/usr/bin/env bash
# Starts two demo backends (python3 http.server) and the three nodes in the
# background; logs and PIDs go to ./run/. Stop with ./stop.sh.
# Fails, saying why, when a tool is missing, a port is taken, or a backend
# or node does not come up; prints its hints only once the VIP answers.
set -euo pipefail
cd "$(dirname "$0")"
raftlb=${RAFTLB:-../../target/release/raftlb}
[ -x "$raftlb" ] || { echo "build first: cargo build --release (or set RAFTLB=/path/to/raftlb)" >&2; exit 2; }
raftlb=$(cd "$(dirname "$raftlb")" && pwd)/$(basename "$raftlb")

missing=()
for tool in python3 curl; do command -v "$tool" > /dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
  exit 2
fi
command -v jq > /dev/null || echo "note: the failover walkthrough in README.md also uses jq (Debian: apt-get install jq)"

taken() { # host port: whether something accepts connections there
  (exec 3<>"/dev/tcp/$1/$2") 2> /dev/null
}
busy=()
for port in 9001 9002; do taken 127.0.0.1 "$port" && busy+=("127.0.0.1:$port"); done
for i in 1 2 3; do
  for port in 7100 7200 7300 8080; do taken "127.0.0.1$i" "$port" && busy+=("127.0.0.1$i:$port"); done
done
taken 127.0.0.100 8080 && busy+=("127.0.0.100:8080 (the VIP)")
if [ ${#busy[@]} -gt 0 ]; then
  echo "already in use: ${busy[*]}; is a cluster from ./start.sh (./stop.sh stops it) or raftlb demo running?" >&2
  exit 1
fi

# Waits up to 10 s for URL to answer 200 while PID lives; else shows LOG.
wait_for() { # what url pid log
  for _ in $(seq 100); do
    curl -sf -o /dev/null -m 1 "$2" && return 0
    if ! kill -0 "$3" 2> /dev/null; then
      echo "$1 exited; the end of $4:" >&2; tail -n 20 "$4" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "$1 did not answer $2 within 10 s; the end of $4:" >&2; tail -n 20 "$4" >&2; exit 1
}

# Mutual TLS: a CA, the three nodes' certificates and an operator's, made
# once (again after rm -r certs).
if [ ! -f certs/ca.pem ]; then
  "$raftlb" certs init --out certs --node 1=127.0.0.11 --node 2=127.0.0.12 --node 3=127.0.0.13 --client admin > /dev/null
  echo "made certs/ with raftlb certs init (CA, node1-3, client admin)"
fi
tls="--ca certs/ca.pem --cert certs/admin.pem --key certs/admin-key.pem"

mkdir -p run
for port in 9001 9002; do
  mkdir -p "run/www$port" && echo "backend $port" > "run/www$port/index.html"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "run/www$port" > "run/backend$port.log" 2>&1 &
  echo $! > "run/backend$port.pid"
done
for port in 9001 9002; do
  wait_for "backend $port" "http://127.0.0.1:$port/" "$(cat "run/backend$port.pid")" "run/backend$port.log"
done
for i in 1 2 3; do
  "$raftlb" node --config "node$i.toml" > "run/node$i.log" 2>&1 &
  echo $! > "run/node$i.pid"
done
for i in 1 2 3; do
  wait_for "node $i" "http://127.0.0.1$i:7300/readyz" "$(cat "run/node$i.pid")" "run/node$i.log"
done
for _ in $(seq 100); do
  curl -sf -o /dev/null -m 1 http://127.0.0.100:8080/ && break
  sleep 0.1
done
curl -sf -o /dev/null -m 1 http://127.0.0.100:8080/ || { echo "the VIP 127.0.0.100:8080 does not answer; see run/node*.log" >&2; exit 1; }
"$raftlb" ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200,127.0.0.13:7200 $tls status
echo
echo "try: curl http://127.0.0.100:8080/   (the VIP; each node also serves its own 127.0.0.1N:8080)"
echo "     $raftlb ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200,127.0.0.13:7200 $tls get backends"
echo "     logs in run/, stop with ./stop.sh; README.md has a failover drill"
