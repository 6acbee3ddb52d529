# Names and helpers shared by the scripts in this folder; sourced, not run.
# shellcheck shell=bash
# shellcheck disable=SC2034  # used by the scripts that source this

BRIDGE=rlbbr0
BRIDGE_ADDR=10.77.0.1/24
VIP=10.77.0.100
NODE_NAMESPACES=(rlb-n1 rlb-n2 rlb-n3)
NAMESPACES=(rlb-n1 rlb-n2 rlb-n3 rlb-client rlb-web)
WEB_ADDR=10.77.0.21
BACKEND_PORTS=(9001 9002)
ENDPOINTS=10.77.0.11:7200,10.77.0.12:7200,10.77.0.13:7200

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

need_root() {
  [ "$(id -u)" -eq 0 ] ||
    die "must run as root (it works on network namespaces, veths and a bridge); try: sudo $0"
}

# The address of a namespace's eth0.
ns_addr() {
  case $1 in
    rlb-n[123]) echo "10.77.0.1${1#rlb-n}" ;;
    rlb-client) echo 10.77.0.50 ;;
    rlb-web) echo "$WEB_ADDR" ;;
    *) die "unknown namespace $1" ;;
  esac
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

# Starts node N in its namespace; appends to run/nodeN.log.
start_node() {
  local n=$1 raftlb=$2
  ip netns exec "rlb-n$n" "$raftlb" node --config "run/node$n.toml" \
    >> "run/node$n.log" 2>&1 < /dev/null &
  echo $! > "run/node$n.pid"
}
