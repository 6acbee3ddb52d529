#!/usr/bin/env bash
# What the router does with the VIP and why: its next hops for 10.78.9.9
# (the multipath route its BIRD installed), its BGP session to each node,
# and each node's announcement as the node's /status shows it (vip.bgp).
#
#   ./routes.sh           the route, then a line per node
#   ./routes.sh --watch   one line, timestamped, each time the picture
#                         changes (the route is polled every 10 ms, the
#                         sessions and the nodes' status every 100 ms);
#                         Ctrl-C stops it
#
# It runs in the router's namespace, which reaches every node's admin
# address (:7300) even while a node is cut off by ./partition.sh.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR source=common.sh
source ./common.sh

need_root
case ${1:-} in
  "" | --watch) ;;
  *) die "usage: $(basename "$0") [--watch]" ;;
esac
ns_exists "$ROUTER_NS" || die "$ROUTER_NS does not exist: ./up.sh first"

exec ip netns exec "$ROUTER_NS" python3 - "$VIP" "${1:-}" << 'END_PY'
import json, signal, subprocess, sys, threading, time, urllib.request

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # ./routes.sh | head

VIP, MODE = sys.argv[1], sys.argv[2]
NODES = {n: f"10.78.0.1{n}" for n in (1, 2, 3)}
BY_ADDR = {addr: f"n{n}" for n, addr in NODES.items()}


def now():
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def route():
    """The router's route to the VIP: (its text, the next hops as n1 n2 …)."""
    out = subprocess.run(["ip", "route", "show", VIP], capture_output=True, text=True).stdout
    words = out.split()
    hops = sorted(BY_ADDR.get(w[1], w[1]) for w in zip(words, words[1:]) if w[0] == "via")
    return " ".join(out.split()), hops


def sessions():
    """The router's BGP sessions: node number -> state (Established, Active, …)."""
    out = subprocess.run(["birdc", "-s", "run/router.ctl", "show", "protocols"],
                         capture_output=True, text=True).stdout
    states = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] in ("node1", "node2", "node3") and f[1] == "BGP":
            info = [w for w in f[4:] if not (":" in w or "-" in w)] or [f[3]]
            states[int(f[0][4:])] = info[0]
    return states


def alive(name):
    try:
        pid = open(f"run/{name}.pid").read().strip()
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def bgp_status(n):
    """Node n's vip.bgp from /status, or None."""
    try:
        with urllib.request.urlopen(f"http://{NODES[n]}:7300/status", timeout=0.5) as r:
            return json.load(r)["vip"]["bgp"]
    except Exception:
        return None


def node_line(n, bgp, session, long):
    if not alive(f"node{n}"):
        what = "raftlb not running"
    elif bgp is None:
        what = "no /status answer"
    elif bgp.get("announcing"):
        what = "announcing"
    else:
        # No reason yet: a node just started, before its first check.
        why = bgp.get("why_not") or []
        what = "withdrawn (" + ", ".join(why) + ")" if why else "withdrawn"
    if not long:
        return f"n{n} {what}, bgp {session or '?'}"
    bird = "running" if alive(f"bird{n}") else "not running"
    lines = [f"rlbe-n{n} {NODES[n]}: {what}",
             f"    the router's session node{n}: {session or '?'}; the node's BIRD {bird}"]
    if bgp is not None:
        since = bgp.get("since_ms")
        if since:
            since = time.strftime("%H:%M:%S", time.localtime(since / 1000)) + f".{since % 1000:03d}"
        lines.append(f"    vip.bgp: session {bgp.get('session')}, since {since or '-'}, "
                     f"device {bgp.get('device')}, peer {bgp.get('peer')}")
    return "\n".join(lines)


if MODE != "--watch":
    text, hops = route()
    print(f"router: {VIP} via {' '.join(hops) or 'nothing (no route)'}")
    print(f"  ip route: {text or '-'}")
    states = sessions()
    for n in NODES:
        print(node_line(n, bgp_status(n), states.get(n), True))
    sys.exit(0)

# --watch: pollers fill `state`, the main loop prints when the line changes.
state = {"hops": None, "nodes": {}}
lock = threading.Lock()


def poll_route():
    while True:
        hops = route()[1]
        with lock:
            state["hops"] = hops
        time.sleep(0.01)


def poll_nodes():
    while True:
        states = sessions()
        lines = {n: node_line(n, bgp_status(n), states.get(n), False) for n in NODES}
        with lock:
            state["nodes"] = lines
        time.sleep(0.1)


for f in (poll_route, poll_nodes):
    threading.Thread(target=f, daemon=True).start()
last = None
try:
    while True:
        with lock:
            hops, nodes = state["hops"], dict(state["nodes"])
        if hops is not None and nodes:
            line = f"next hops: {' '.join(hops) or 'none'} | " + " | ".join(nodes[n] for n in NODES)
            if line != last:
                print(f"{now()} {line}", flush=True)
                last = line
        time.sleep(0.005)
except KeyboardInterrupt:
    pass
END_PY
