#!/usr/bin/env python3
"""Helpers for benches/compare.sh (standard library only).

Subcommands:
  parse-wrk FILE              wrk --latency output -> one TSV line:
                              rps total p50_us p99_us non2xx sock_errors
  table RESULTS.tsv           markdown tables (medians over rounds), one per case
  sink HOST PORT              TCP sink: the first 8 bytes of a connection give a
                              length N (big endian); after N more bytes it answers
                              "done\\n". A connection that sends nothing is held.
  bulk HOST PORT BYTES        sends BYTES to a sink, prints MiB/s
  median X...                 the median of the numbers
  idle ...                    RSS per idle proxied connection (see --help)
  propagate ...               config propagation time in a three-node cluster
"""

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}


def to_us(text):
    """'123.45us' / '1.20ms' / '2.00s' -> microseconds (float)."""
    for unit in ("us", "ms", "s", "m", "h"):
        if text.endswith(unit):
            number = text[: -len(unit)]
            try:
                return float(number) * UNITS_US[unit]
            except ValueError:
                continue
    raise ValueError(f"unknown latency {text!r}")


def parse_wrk(path):
    rps = total = p50 = p99 = None
    non2xx = 0
    sock = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0] == "Requests/sec:":
                rps = float(words[1])
            elif len(words) >= 3 and words[1] == "requests" and words[2] == "in":
                total = int(words[0])
            elif words[0] == "50%" and len(words) >= 2:
                p50 = to_us(words[1])
            elif words[0] == "99%" and len(words) >= 2:
                p99 = to_us(words[1])
            elif line.strip().startswith("Non-2xx or 3xx responses:"):
                non2xx = int(words[-1])
            elif line.strip().startswith("Socket errors:"):
                # Socket errors: connect 0, read 0, write 0, timeout 0
                nums = [int(w.strip(",")) for w in words[2:] if w.strip(",").isdigit()]
                sock = sum(nums)
    if rps is None or total is None:
        print("nan\t0\tnan\tnan\t0\t0")
        return
    fmt = lambda v: "nan" if v is None else f"{v:.1f}"
    print(f"{rps:.2f}\t{total}\t{fmt(p50)}\t{fmt(p99)}\t{non2xx}\t{sock}")


TARGET_ORDER = [
    "direct", "raftlb http", "raftlb tcp", "haproxy http", "haproxy tcp",
    "nginx http", "nginx tcp", "envoy http", "envoy tcp",
]
CASE_TITLES = {
    "small": "keep-alive, 3 B body",
    "big": "keep-alive, 16 KiB body",
    "close": "Connection: close, 3 B body (a new connection per request)",
}


def med(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def table(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 12 or p[0] == "round":
                continue
            rows.append({
                "round": int(p[0]), "case": p[1], "target": p[2],
                "rps": float(p[3]), "total": int(p[4]), "p50": float(p[5]), "p99": float(p[6]),
                "non2xx": int(p[7]), "sock": int(p[8]),
                "cpu_us": float(p[9]) if p[9] != "-" else None,
                "bal_pct": float(p[10]) if p[10] != "-" else None,
                "cpu0_pct": float(p[11]) if p[11] else float("nan"),
            })
    cases = [c for c in ("small", "big", "close") if any(r["case"] == c for r in rows)]
    for case in cases:
        rs = [r for r in rows if r["case"] == case]
        targets = [t for t in TARGET_ORDER if any(r["target"] == t for r in rs)]
        targets += sorted({r["target"] for r in rs} - set(targets))
        direct = med([r["rps"] for r in rs if r["target"] == "direct"])
        print(f"### {CASE_TITLES.get(case, case)}")
        print()
        print("| target | req/s (median) | vs direct | p50 µs | p99 µs | balancer CPU µs/req | CPU vs HAProxy | balancer CPU % | CPU 0 busy % | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        notes = []

        def cpu_of(target):
            return med([r["cpu_us"] for r in rs if r["target"] == target and r["cpu_us"] is not None])

        for t in targets:
            tr = [r for r in rs if r["target"] == t]
            rps = med([r["rps"] for r in tr])
            ratio = rps / direct if direct == direct and direct > 0 else float("nan")
            cpu = [r["cpu_us"] for r in tr if r["cpu_us"] is not None]
            pct = [r["bal_pct"] for r in tr if r["bal_pct"] is not None]
            errs = sum(r["non2xx"] + r["sock"] for r in tr)
            # Against HAProxy at the same layer (`… http` to `haproxy http`).
            layer = t.rsplit(" ", 1)[-1]
            haproxy = cpu_of(f"haproxy {layer}")
            vs = med(cpu) / haproxy if cpu and haproxy == haproxy and haproxy > 0 else float("nan")
            print(
                f"| {t} | {rps:,.0f} | {ratio:.2f} | {med([r['p50'] for r in tr]):.0f} | "
                f"{med([r['p99'] for r in tr]):.0f} | {('%.1f' % med(cpu)) if cpu else '-'} | "
                f"{('%.2f×' % vs) if vs == vs else '-'} | "
                f"{('%.0f' % med(pct)) if pct else '-'} | {med([r['cpu0_pct'] for r in tr]):.0f} | {errs} |"
            )
            for r in tr:
                if r["non2xx"] or r["sock"] or r["total"] == 0:
                    notes.append(
                        f"{t} round {r['round']}: {r['total']} requests, non-2xx {r['non2xx']}, socket errors {r['sock']}"
                    )
        print()
        for n in notes:
            print(f"- errors: {n}")
        if notes:
            print()


# ---------------------------------------------------------------- sink / bulk

# One receive buffer for all connections: the data is discarded inside
# buffer_updated, and the event loop runs one callback at a time. (A buffer
# per connection would cost 1 MiB for every idle connection held.)
SINK_BUFFER = bytearray(1 << 20)


class SinkProtocol(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = SINK_BUFFER
        self.header = b""
        self.need = None
        self.got = 0
        self.done = False

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        if self.done:
            return
        data = memoryview(self.buf)[:nbytes]
        if self.need is None:
            take = min(8 - len(self.header), nbytes)
            self.header += bytes(data[:take])
            data = data[take:]
            if len(self.header) < 8:
                return
            self.need = int.from_bytes(self.header, "big")
        self.got += len(data)
        if self.got >= self.need:
            self.done = True
            self.transport.write(b"done\n")

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        pass


def sink(host, port):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(SinkProtocol, host, port, backlog=4096, reuse_address=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def bulk(host, port, nbytes):
    chunk = bytes(1 << 20)
    s = socket.create_connection((host, port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(nbytes.to_bytes(8, "big"))
    left = nbytes
    view = memoryview(chunk)
    while left > 0:
        n = min(left, len(chunk))
        s.sendall(view[:n])
        left -= n
    reply = b""
    while not reply.endswith(b"done\n"):
        part = s.recv(16)
        if not part:
            raise SystemExit("bulk: connection closed before the sink confirmed")
        reply += part
    elapsed = time.perf_counter() - t0
    s.close()
    print(f"{nbytes / elapsed / (1 << 20):.1f}")


# ----------------------------------------------------------------- idle RSS

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def get_status(host, port):
    c = http.client.HTTPConnection(host, port, timeout=2)
    c.request("GET", "/status")
    body = c.getresponse().read()
    c.close()
    return json.loads(body)


def idle(args):
    admin_host, admin_port = args.admin.rsplit(":", 1)
    admin_port = int(admin_port)

    def counts():
        st = get_status(admin_host, admin_port)
        fe = sum(f["active_connections"] for f in st.get("frontends", []) if f["name"] == args.frontend)
        be = sum(b["active_connections"] for b in st.get("backends", []) if b["address"] == args.backend)
        return fe, be

    base_fe, base_be = counts()
    before = rss_kib(args.pid)
    socks = []
    deadline = time.monotonic() + args.timeout
    try:
        for i in range(args.n):
            if time.monotonic() > deadline:
                raise SystemExit(f"idle: opening connections took longer than {args.timeout}s ({i} open)")
            s = socket.create_connection((args.host, args.port), timeout=5)
            socks.append(s)
            if i % 500 == 499:
                time.sleep(0.01)  # leave the accept queue some room
        opened = time.monotonic()
        while True:
            fe, be = counts()
            if fe - base_fe >= args.n and be - base_be >= args.n:
                break
            if time.monotonic() > deadline:
                print(f"# idle: raftlb reports frontend {fe - base_fe}, backend {be - base_be} of {args.n}", file=sys.stderr)
                break
            time.sleep(0.1)
        wait_seen = time.monotonic() - opened
        time.sleep(args.settle)
        fe, be = counts()
        after = rss_kib(args.pid)
    finally:
        for s in socks:
            s.close()
    t_close = time.monotonic()
    while time.monotonic() - t_close < 30:
        cfe, cbe = counts()
        if cfe <= base_fe and cbe <= base_be:
            break
        time.sleep(0.1)
    time.sleep(1)
    after_close = rss_kib(args.pid)
    per = (after - before) / args.n
    complete = "complete" if fe - base_fe >= args.n and be - base_be >= args.n else "INCOMPLETE"
    print(
        f"{per:.2f}\t{before}\t{after}\t{after_close}\t{fe - base_fe}\t{be - base_be}\t{wait_seen:.1f}\t{complete}"
    )


# -------------------------------------------------------------- propagation

def propagate(args):
    nodes = args.nodes.split(",")
    conns = {}

    def status(node):
        for attempt in range(2):
            c = conns.get(node)
            if c is None:
                c = conns[node] = http.client.HTTPConnection(node, args.admin_port, timeout=2)
            try:
                c.request("GET", "/status")
                return json.loads(c.getresponse().read())
            except (http.client.HTTPException, OSError):
                c.close()
                conns.pop(node, None)
                if attempt:
                    raise

    def weight_of(st):
        for b in st["backends"]:
            if b["pool"] == args.pool and b["address"] == args.addr:
                return b["weight"]
        return None

    # all nodes agree on the starting weight
    deadline = time.monotonic() + 20
    while True:
        ws = {weight_of(status(n)) for n in nodes}
        if len(ws) == 1 and None not in ws:
            current = ws.pop()
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"propagate: nodes disagree on the starting weight: {ws}")
        time.sleep(0.1)

    prop_ms, ack_ms, failures = [], [], []
    for i in range(args.writes):
        want = 2 + (i % 99)
        if want == current:
            want = 2 + ((i + 1) % 99)
        seen = {}
        armed = threading.Event()
        t0_box = [0.0]

        def poller(node):
            armed.wait()
            limit = t0_box[0] + args.timeout
            while True:
                st = status(node)
                now = time.perf_counter()
                if weight_of(st) == want:
                    seen[node] = now - t0_box[0]
                    return
                if now > limit:
                    return

        threads = [threading.Thread(target=poller, args=(n,), daemon=True) for n in nodes]
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        t0_box[0] = t0
        armed.set()
        r = subprocess.run(
            [args.ctl, "ctl", "--endpoint", args.endpoint, "backend", "set-weight", args.pool, args.addr, str(want)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=args.timeout,
        )
        ack = time.perf_counter() - t0
        for t in threads:
            t.join(args.timeout + 5)
        if r.returncode != 0:
            failures.append(f"write {i}: ctl exit {r.returncode}: {r.stderr.decode(errors='replace').strip()}")
            continue
        if len(seen) < len(nodes):
            failures.append(f"write {i}: weight {want} not seen on {sorted(set(nodes) - set(seen))} within {args.timeout}s")
            continue
        ack_ms.append(ack * 1000)
        prop_ms.append(max(seen.values()) * 1000)
        current = want

    # baseline: starting the ctl process and one read-only call
    base = []
    for _ in range(20):
        t0 = time.perf_counter()
        subprocess.run([args.ctl, "ctl", "--endpoint", args.endpoint, "status"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=args.timeout)
        base.append((time.perf_counter() - t0) * 1000)

    def pct(xs, q):
        if not xs:
            return float("nan")
        xs = sorted(xs)
        k = max(0, min(len(xs) - 1, int(round(q / 100 * len(xs) + 0.5)) - 1))
        return xs[k]

    print(json.dumps({
        "writes": args.writes, "ok": len(prop_ms),
        "prop_p50": pct(prop_ms, 50), "prop_p99": pct(prop_ms, 99), "prop_max": max(prop_ms) if prop_ms else None,
        "ack_p50": pct(ack_ms, 50), "ack_p99": pct(ack_ms, 99),
        "status_p50": pct(base, 50),
        "failures": failures[:5], "failure_count": len(failures),
    }))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "parse-wrk":
        parse_wrk(rest[0])
    elif cmd == "table":
        table(rest[0])
    elif cmd == "sink":
        sink(rest[0], int(rest[1]))
    elif cmd == "bulk":
        bulk(rest[0], int(rest[1]), int(rest[2]))
    elif cmd == "median":
        print(f"{med([float(x) for x in rest]):.1f}")
    elif cmd == "idle":
        p = argparse.ArgumentParser(prog="compare_helpers.py idle")
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--n", type=int, default=10000)
        p.add_argument("--pid", type=int, required=True, help="raftlb's PID (VmRSS)")
        p.add_argument("--admin", required=True, help="raftlb admin HOST:PORT")
        p.add_argument("--frontend", required=True, help="frontend name in /status")
        p.add_argument("--backend", required=True, help="backend address in /status")
        p.add_argument("--settle", type=float, default=2.0)
        p.add_argument("--timeout", type=float, default=60.0)
        idle(p.parse_args(rest))
    elif cmd == "propagate":
        p = argparse.ArgumentParser(prog="compare_helpers.py propagate")
        p.add_argument("--ctl", required=True, help="the raftlb binary")
        p.add_argument("--endpoint", required=True)
        p.add_argument("--nodes", required=True, help="comma-separated admin hosts")
        p.add_argument("--admin-port", type=int, default=7300)
        p.add_argument("--pool", required=True)
        p.add_argument("--addr", required=True)
        p.add_argument("--writes", type=int, default=100)
        p.add_argument("--timeout", type=float, default=10.0)
        propagate(p.parse_args(rest))
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
