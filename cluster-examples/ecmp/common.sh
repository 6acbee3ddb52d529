# Names and helpers shared by the scripts in this folder; sourced, not run.
# shellcheck shell=bash
# shellcheck disable=SC2034  # used by the scripts that source this

BRIDGE=rlbe-br0
BRIDGE_ADDR=10.78.0.254/24
VIP=10.78.9.9
ROUTER_NS=rlbe-r
ROUTER_ADDR=10.78.0.1
ROUTER_CLIENT_ADDR=10.78.1.1 # the router's side of the client's link (c0)
CLIENT_NS=rlbe-client
CLIENT_ADDR=10.78.1.50
WEB_NS=rlbe-web
WEB_ADDR=10.78.0.21
BACKEND_PORTS=(9001 9002)
ROUTER_AS=65000
NODE_AS=65001
NODE_NAMESPACES=(rlbe-n1 rlbe-n2 rlbe-n3)
# The namespaces on the bridge; the client is behind the router.
LAN_NAMESPACES=(rlbe-r rlbe-n1 rlbe-n2 rlbe-n3 rlbe-web)
NAMESPACES=(rlbe-r rlbe-n1 rlbe-n2 rlbe-n3 rlbe-web rlbe-client)
ENDPOINTS=10.78.0.11:7200,10.78.0.12:7200,10.78.0.13:7200

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

need_root() {
  [ "$(id -u)" -eq 0 ] ||
    die "must run as root (it works on network namespaces, veths and a bridge); try: sudo $0"
}

# The address of a namespace's eth0 on the bridge.
ns_addr() {
  case $1 in
    rlbe-r) echo "$ROUTER_ADDR" ;;
    rlbe-n[123]) echo "10.78.0.1${1#rlbe-n}" ;;
    rlbe-web) echo "$WEB_ADDR" ;;
    *) die "unknown namespace $1" ;;
  esac
}

# Node N's address.
node_addr() {
  echo "10.78.0.1$1"
}

ns_exists() {
  [ -e "/run/netns/$1" ]
}

link_exists() {
  ip link show dev "$1" > /dev/null 2>&1
}

# Checks a node number argument and prints it.
node_arg() {
  case ${1:-} in
    1 | 2 | 3) echo "$1" ;;
    *) die "usage: $(basename "$0") N   (N = 1, 2 or 3)" ;;
  esac
}

# The raftlb binary as an absolute path; dies if it is not there.
raftlb_path() {
  local raftlb=${RAFTLB:-../../target/release/raftlb}
  [ -x "$raftlb" ] ||
    die "no raftlb binary at $raftlb: build it with cargo build --release (or set RAFTLB=/path/to/raftlb)"
  realpath "$raftlb"
}

# A PID that is running and not a zombie.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# The PID in run/NAME.pid if that process is alive; fails otherwise.
running() {
  local pid
  pid=$(cat "run/$1.pid" 2> /dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && echo "$pid"
}

# Starts node N's raftlb in its namespace; appends to run/nodeN.log.
start_node() {
  local n=$1 raftlb=$2
  ip netns exec "rlbe-n$n" "$raftlb" node --config "run/node$n.toml" \
    >> "run/node$n.log" 2>&1 < /dev/null &
  echo $! > "run/node$n.pid"
}

# Starts BIRD in namespace NS with run/NAME.conf, its control socket at
# run/NAME.ctl; appends to run/NAME.log. `ip netns exec` execs BIRD, so $!
# is BIRD's PID (BIRD writes the same one to run/NAME.pid with -P).
start_bird() {
  local ns=$1 name=$2
  ip netns exec "$ns" bird -f -c "run/$name.conf" -s "run/$name.ctl" -P "run/$name.pid" \
    >> "run/$name.log" 2>&1 < /dev/null &
  echo $! > "run/$name.pid"
}

# The router's next hops for the VIP, sorted, space-separated ("" if none).
next_hops() {
  ip -n "$ROUTER_NS" route show "$VIP" 2> /dev/null |
    awk '{for (i = 1; i < NF; i++) if ($i == "via") print $(i + 1)}' | sort | tr '\n' ' ' |
    sed 's/ $//'
}

# The partition's blackhole routes, from the set of cut-off nodes in
# run/partitioned (one node number a line): between nodes A and B there is
# a blackhole route each way when A or B is cut off. Routes to and from
# the router, the backends and the client are untouched.
apply_partitions() {
  local cut a b
  cut=" $(tr '\n' ' ' < run/partitioned 2> /dev/null || true) "
  for a in 1 2 3; do
    for b in 1 2 3; do
      [ "$a" != "$b" ] || continue
      if [[ $cut == *" $a "* || $cut == *" $b "* ]]; then
        ip -n "rlbe-n$a" route replace blackhole "$(node_addr "$b")/32"
      else
        ip -n "rlbe-n$a" route del blackhole "$(node_addr "$b")/32" 2> /dev/null || true
      fi
    done
  done
}
