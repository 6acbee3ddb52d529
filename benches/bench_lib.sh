# benches/bench_lib.sh — what the benchmark scripts share: processes
# started here are tracked by PID and start time and stopped on exit (only
# those), CPU time is read from /proc, and services are waited for.
# Sourced after T (the temp dir) is set.

PIDS=()   # "pid:starttime" of every process started here

starttime() { # field 22 of /proc/PID/stat
  local l
  l=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  l=${l##*) }
  set -- $l
  echo "${20}"
}
track() { local s; s=$(starttime "$1") && PIDS+=("$1:$s"); }
alive() { # pid:start still the same process
  local pid=${1%%:*} st=${1##*:} now
  now=$(starttime "$pid") && [ "$now" = "$st" ]
}
cleanup() {
  trap - EXIT INT TERM
  local p i
  for p in "${PIDS[@]}"; do alive "$p" && kill -TERM "${p%%:*}" 2>/dev/null; done
  for i in $(seq 30); do
    local any=0
    for p in "${PIDS[@]}"; do alive "$p" && any=1; done
    [ $any = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do alive "$p" && kill -KILL "${p%%:*}" 2>/dev/null; done
  if [ -n "${KEEP_TMP:-}" ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# sum of utime+stime (clock ticks) over the given PIDs
ticks() {
  local sum=0 pid l
  for pid in "$@"; do
    l=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    l=${l##*) }
    set -- $l
    sum=$((sum + ${12} + ${13}))
  done
  echo "$sum"
}
# "busy total" jiffies of CPU 0 from /proc/stat
cpu0() {
  local name user nice sys idle iow irq sirq steal rest
  while read -r name user nice sys idle iow irq sirq steal rest; do
    if [ "$name" = cpu0 ]; then
      echo "$((user + nice + sys + irq + sirq + steal)) $((user + nice + sys + idle + iow + irq + sirq + steal))"
      return
    fi
  done < /proc/stat
}
CLK_TCK=$(getconf CLK_TCK)

wait_http() { # URL [seconds]
  local url=$1 limit=${2:-30} i
  for i in $(seq $((limit * 10))); do
    curl -sf -m 1 -o /dev/null "$url" && return 0
    sleep 0.1
  done
  return 1
}
wait_port() { # HOST PORT [seconds]
  local i
  for i in $(seq $((${3:-10} * 10))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# The backend: nginx on CPU 0, 127.0.0.201:9001 answering "ok\n" (3 B) and
# :9002 serving a 16 KiB file; its PIDs tracked (BACKEND_PID: the master).
start_backend_nginx() {
  mkdir -p "$T/backend/www" "$T/backend/logs"
  head -c 16384 /dev/zero | tr '\0' 'x' > "$T/backend/www/big.bin"
  cat > "$T/backend/nginx.conf" <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 60000;
pid $T/backend/nginx.pid;
error_log $T/backend/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $T/backend/tmp_body;
    proxy_temp_path $T/backend/tmp_proxy;
    fastcgi_temp_path $T/backend/tmp_fcgi;
    uwsgi_temp_path $T/backend/tmp_uwsgi;
    scgi_temp_path $T/backend/tmp_scgi;
    server {
        listen 127.0.0.201:9001 backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.201:9002 backlog=4096;
        root $T/backend/www;
        default_type application/octet-stream;
        location / { }
    }
}
EOF
  taskset -c 0 nginx -p "$T/backend/" -c "$T/backend/nginx.conf" -g 'daemon off;' > "$T/backend/logs/stdout.log" 2>&1 &
  BACKEND_PID=$!
  track $BACKEND_PID
  wait_http http://127.0.0.201:9001/ 10 || die "backend nginx did not start: $(cat "$T/backend/logs/"*)"
  for w in $(ps --ppid $BACKEND_PID -o pid=); do track "$w"; done
}

# A one-node raftlb on 127.0.0.202 (peer 7100, API 7200, admin 7300), one
# worker thread: writes $T/raftlb/node.toml, seeded from cluster.toml in
# the same folder.
write_raftlb_node_toml() { # [DIR under $T] [IP] [extra top-level line]
  local dir=${1:-raftlb} ip=${2:-127.0.0.202} extra=${3:-}
  mkdir -p "$T/$dir"
  cat > "$T/$dir/node.toml" <<EOF
$extra
id = 1
raft_addr  = "$ip:7100"
api_addr   = "$ip:7200"
admin_addr = "$ip:7300"
serve_ip   = "$ip"
data_dir   = "$T/$dir/data"
shutdown_grace_ms = 1000
worker_threads = 1

[cluster]
members = { 1 = "$ip:7100" }
seed    = "cluster.toml"
EOF
}
