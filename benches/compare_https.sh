#!/usr/bin/env bash
# benches/compare_https.sh — raftlb's HTTPS termination against HAProxy and
# nginx on one machine, the same ECDSA P-256 certificate on all three.
#
#   cargo build --release
#   benches/compare_https.sh                      # DURATION=5 ROUNDS=3
#   benches/compare_https.sh 2>&1 | tee benches/compare-https-latest.txt
#
# Environment: RAFTLB (default target/release/raftlb), DURATION (seconds per
# run, default 5), ROUNDS (interleaved rounds, medians; default 3),
# CONNECTIONS (wrk connections, default 32), CLIENTS (parallel openssl
# s_time clients for the handshake cases, default 4).
#
# Needs root for apt-get (only when haproxy, nginx or wrk is missing), two
# CPUs, openssl and curl. Traffic stays on 127.0.0.0/8, every load is
# bounded in time, and only the processes started here are stopped.
#
# Layout (CPU 0: clients and the backend; CPU 1: the balancer under test,
# one worker each):
#   127.0.0.201:9001  backend nginx, "ok\n" over plain HTTP
#   127.0.0.202:8443  raftlb https frontend (certificate from `ctl cert add`)
#   127.0.0.203:8443  HAProxy `bind … ssl crt`
#   127.0.0.204:8443  nginx `listen … ssl`
#
# Cases, per balancer (rounds interleaved across balancers):
#   keep-alive  wrk -t1 -c$CONNECTIONS over HTTPS: requests/s, and the
#               balancer's CPU µs per request (utime+stime from /proc).
#   full        $CLIENTS x `openssl s_time -new`: a full TLS 1.3 handshake
#               and one GET per connection: handshakes/s, CPU µs each.
#   resumed     $CLIENTS x `openssl s_time -reuse`: each connection resumes
#               the client's first session (TLS 1.3 ticket): the same.
# Each balancer keeps its defaults for tickets and session caches.
set -uo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
CLIENTS=${CLIENTS:-4}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT" || exit 2

say() { printf '%s\n' "$*"; }
die() { printf 'compare_https.sh: %s\n' "$*" >&2; exit 1; }

RAFTLB=${RAFTLB:-target/release/raftlb}
[ -x "$RAFTLB" ] || die "$RAFTLB not found: build first: cargo build --release"
RAFTLB=$(cd "$(dirname "$RAFTLB")" && pwd)/$(basename "$RAFTLB")
need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
for tool in taskset curl openssl getconf python3; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt-get)"
  apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y "${need[@]}" >/dev/null 2>&1; } ||
    die "apt-get install ${need[*]} failed"
fi

T=$(mktemp -d /tmp/raftlb-https.XXXXXX) || die "mktemp failed"
. "$HERE/bench_lib.sh"

# ------------------------------------------------------------ certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$T/key.pem" -out "$T/cert.pem" -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test >/dev/null 2>&1 || die "openssl req failed"
cat "$T/cert.pem" "$T/key.pem" > "$T/combined.pem"

say "# raftlb HTTPS comparison"
say
say "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "- command: DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS CLIENTS=$CLIENTS $0"
say "- machine: nproc $(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); kernel $(uname -r)"
say "- raftlb: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), binary built $(date -u -r "$RAFTLB" '+%Y-%m-%d %H:%M UTC'); rustls with $(grep -q '"aws_lc_rs"' "$ROOT/Cargo.toml" && echo aws-lc-rs || echo ring) (per Cargo.toml)"
say "- $(haproxy -v 2>&1 | head -1 | cut -d' ' -f1-3); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); $(openssl version | cut -d' ' -f1-2)"
say "- certificate: ECDSA P-256, self-signed, the same file for all; clients on CPU 0, each balancer on CPU 1 with one worker; $ROUNDS interleaved rounds, medians"
say

# ------------------------------------------------------------ backend
start_backend_nginx

# ------------------------------------------------------------ raftlb
write_raftlb_node_toml
cat > "$T/raftlb/cluster.toml" <<EOF
[[frontend]]
name     = "https"
port     = 8443
protocol = "https"
pool     = "small"

[[pool]]
name = "small"
  [pool.health]
  check = "none"
  [[pool.backend]]
  address = "127.0.0.201:9001"
EOF
(cd "$T/raftlb" && RUST_LOG=warn,rustls=error exec taskset -c 1 "$RAFTLB" node --config node.toml) > "$T/raftlb/node.log" 2>&1 &
RAFTLB_PID=$!
track $RAFTLB_PID
wait_http http://127.0.0.202:7300/readyz 30 || die "raftlb did not become ready: $(tail -5 "$T/raftlb/node.log")"
"$RAFTLB" ctl --endpoint 127.0.0.202:7200 cert add bench --cert "$T/cert.pem" --key "$T/key.pem" >/dev/null ||
  die "ctl cert add failed"

# ------------------------------------------------------------ haproxy
mkdir -p "$T/haproxy"
cat > "$T/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend https
    bind 127.0.0.203:8443 ssl crt $T/combined.pem alpn http/1.1
    option http-keep-alive
    default_backend small
backend small
    http-reuse always
    server s1 127.0.0.201:9001
EOF
taskset -c 1 haproxy -db -f "$T/haproxy/haproxy.cfg" > "$T/haproxy/haproxy.log" 2>&1 &
HAPROXY_PID=$!
track $HAPROXY_PID

# ------------------------------------------------------------ nginx
mkdir -p "$T/nginx/logs"
cat > "$T/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $T/nginx/tmp_body;
    proxy_temp_path $T/nginx/tmp_proxy;
    fastcgi_temp_path $T/nginx/tmp_fcgi;
    uwsgi_temp_path $T/nginx/tmp_uwsgi;
    scgi_temp_path $T/nginx/tmp_scgi;
    upstream small { server 127.0.0.201:9001; keepalive 64; }
    server {
        listen 127.0.0.204:8443 ssl;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        location / {
            proxy_pass http://small;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
taskset -c 1 nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -g 'daemon off;' > "$T/nginx/logs/stdout.log" 2>&1 &
NGINX_PID=$!
track $NGINX_PID

TARGETS=("raftlb|127.0.0.202" "haproxy|127.0.0.203" "nginx|127.0.0.204")
for target in "${TARGETS[@]}"; do
  ip=${target#*|}
  ok=0
  for _ in $(seq 100); do
    curl -sfk -m 1 --resolve "bench.test:8443:$ip" https://bench.test:8443/ >/dev/null && { ok=1; break; }
    sleep 0.1
  done
  [ $ok = 1 ] || die "${target%%|*} does not answer HTTPS on $ip:8443"
done
sleep 0.5
# The balancers' processes (nginx: master and worker).
pids_of() {
  case $1 in
    raftlb) echo "$RAFTLB_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    nginx) echo "$NGINX_PID $(ps --ppid "$NGINX_PID" -o pid= | tr '\n' ' ')" ;;
  esac
}

# One run: prints "OPERATIONS CPU_TICKS".
run_keepalive() { # IP PIDS...
  local ip=$1; shift
  local before after out
  before=$(ticks "$@")
  out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "https://$ip:8443/" 2>&1)
  after=$(ticks "$@")
  local n
  n=$(printf '%s\n' "$out" | awk '/requests in/ {print $1; exit}')
  echo "${n:-0} $((after - before))"
}
run_s_time() { # MODE IP PIDS...
  local mode=$1 ip=$2; shift 2
  local before after i total=0 pids=()
  before=$(ticks "$@")
  for i in $(seq "$CLIENTS"); do
    # (s_time sends no SNI: each balancer serves its only certificate.)
    taskset -c 0 openssl s_time -connect "$ip:8443" "-$mode" \
      -time "$DURATION" -www / > "$T/s_time.$i" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  after=$(ticks "$@")
  for i in $(seq "$CLIENTS"); do
    n=$(awk '/connections in [0-9.]+ real seconds/ {print $1; exit}' "$T/s_time.$i")
    total=$((total + ${n:-0}))
  done
  echo "$total $((after - before))"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
  for target in "${TARGETS[@]}"; do
    name=${target%%|*} ip=${target#*|}
    # shellcheck disable=SC2046
    RESULTS[$name/keepalive]+="$(run_keepalive "$ip" $(pids_of "$name"));"
    # shellcheck disable=SC2046
    RESULTS[$name/full]+="$(run_s_time new "$ip" $(pids_of "$name"));"
    # shellcheck disable=SC2046
    RESULTS[$name/resumed]+="$(run_s_time reuse "$ip" $(pids_of "$name"));"
  done
done

for case in keepalive full resumed; do
  case $case in
    keepalive) say "## keep-alive requests (wrk -c$CONNECTIONS, ${DURATION}s)"; unit="requests/s"; per="CPU µs/request" ;;
    full) say "## full handshakes ($CLIENTS x openssl s_time -new, ${DURATION}s)"; unit="handshakes/s"; per="CPU µs/handshake" ;;
    resumed) say "## resumed handshakes ($CLIENTS x openssl s_time -reuse, ${DURATION}s)"; unit="handshakes/s"; per="CPU µs/handshake" ;;
  esac
  say
  python3 - "$DURATION" "$CLK_TCK" "$unit" "$per" \
    "raftlb=${RESULTS[raftlb/$case]}" "haproxy=${RESULTS[haproxy/$case]}" "nginx=${RESULTS[nginx/$case]}" <<'EOF'
import statistics, sys
duration, tck, unit, per = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {}
for arg in sys.argv[5:]:
    name, runs = arg.split("=", 1)
    rates, cpus = [], []
    for run in filter(None, runs.split(";")):
        ops, ticks = (int(x) for x in run.split())
        rates.append(ops / duration)
        cpus.append(ticks / tck * 1e6 / ops if ops else float("nan"))
    rows[name] = (statistics.median(rates), statistics.median(cpus))
base = rows["haproxy"][1]
print(f"| balancer | {unit} | {per} | CPU vs HAProxy |")
print("|---|---:|---:|---:|")
for name, (rate, cpu) in rows.items():
    print(f"| {name} | {rate:,.0f} | {cpu:.1f} | {cpu / base:.2f} |")
print()
EOF
done
say "- raftlb node log (RUST_LOG=warn,rustls=error): $(grep -c . "$T/raftlb/node.log") lines; the last ones:"
sed 's/\x1b\[[0-9;]*m//g' "$T/raftlb/node.log" | grep -v '^\s*$' | tail -3 | cut -c1-300 | sed 's/^/    /'
