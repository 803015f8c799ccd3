#!/usr/bin/env python3
"""Gossip efficiency and stable latency, measured as Maelstrom measures them.

    sudo python3 bench/gossip.py [--nodes 10,25,50] [--delay-ms 100] [--rate 100] [--seconds 20]

For each N: N real `coolmesh agent` processes on the loopback of a fresh
network namespace, every TCP packet of the cluster ports delayed by 100 ms
one way (bench/netdelay.py; the kernel here has no sch_netem, and this is the
same per-packet delay netem applies). The HTTP ports are not delayed: the
client is not part of the measured network.

- Idle window (10 s): gossip traffic with no client operations.
- Load window (20 s): 100 counter increments per second in total, round
  robin over the nodes; node j's increments go to counter `b<j>` on node j,
  so op number k of node j is visible on node x once x reports b<j> >= k.
  Every node's /v1/counters is polled continuously on a kept-alive
  connection; an op's visibility time on x is the arrival time of the first
  poll answer that shows it (an upper bound: it became visible at most one
  poll interval earlier).
- msgs-per-op: sum over nodes of coolmesh_gossip_messages_total{direction="out"}
  (every request and every response is one message) during the load
  window, divided by the ops in it. bytes-per-op likewise with
  coolmesh_gossip_bytes_total{direction="out"} (frame bytes: CBOR + length).
  Wire bytes (IP packets on the cluster ports, all protocol layers: TCP,
  noise, yamux, identify, ping) come from the NFQUEUE rule's counters.
- stable latency of an op: time from sending the POST until the op is
  visible on every node.

Writes bench/out/gossip-<time>.json and prints markdown tables.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmbench as cb  # noqa: E402

OUT = os.path.join(cb.ROOT, "bench", "out")
HTTP_BASE = 21000
P2P_BASE = 20000


class Conn:
    """A kept-alive HTTP/1.1 connection (asyncio)."""

    def __init__(self, port):
        self.port = port
        self.r = self.w = None

    async def request(self, method, path, token=None):
        for attempt in range(2):
            try:
                if self.w is None:
                    self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
                auth = f"Authorization: Bearer {token}\r\n" if token else ""
                self.w.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                             f"{auth}\r\n".encode())
                head = await self.r.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await self.r.readexactly(length)
                return status, body
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.close()
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


def cpu_busy():
    """(busy, total) jiffies of the whole machine."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


async def snapshot(nodes):
    async def one(n):
        c = Conn(n.http_port)
        try:
            st, body = await c.request("GET", "/metrics")
        finally:
            c.close()
        t = body.decode()
        return {
            "msgs_out": cb.metric_sum(t, "coolmesh_gossip_messages_total", direction="out"),
            "msgs_in": cb.metric_sum(t, "coolmesh_gossip_messages_total", direction="in"),
            "bytes_out": cb.metric_sum(t, "coolmesh_gossip_bytes_total", direction="out"),
            "bytes_in": cb.metric_sum(t, "coolmesh_gossip_bytes_total", direction="in"),
            "rejected": cb.metric_sum(t, "coolmesh_gossip_rejected_total"),
            "cpu": cb.proc_cpu_seconds(n.proc.pid),
            "connected": cb.metric_sum(t, "coolmesh_cluster_connections"),
        }
    per = await asyncio.gather(*(one(n) for n in nodes))
    pk, by = cb.iptables_queue_bytes()
    return {"t": time.monotonic(), "nodes": per, "wire_packets": pk, "wire_bytes": by,
            "machine": cpu_busy()}


def install_roster(nodes, key_file):
    """`coolmesh roster add` of every agent on the first one; waits until
    every agent holds it and still sees every other alive."""
    ids = [x.peer_id for x in nodes]
    subprocess.run([cb.coolmesh_bin(), "roster", "add", *ids, "--key", key_file,
                    "--url", f"http://127.0.0.1:{nodes[0].http_port}",
                    "--token-file", os.path.join(nodes[0].dir, "token")],
                   check=True, capture_output=True, text=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        try:
            if all(cb.get_json(x.http_port, "/v1/roster").get("version", 0) > 0 for x in nodes):
                break
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.5)
    else:
        raise RuntimeError("the roster did not reach every agent in 120 s")
    try:
        took = cb.wait_converged(nodes, 120)
    except RuntimeError:
        # What the agents think of the members they do not see alive.
        for x in nodes[:5]:
            peers = cb.get_json(x.http_port, "/v1/peers")
            bad = [(p.get("node"), p.get("liveness")) for p in peers
                   if p.get("liveness") != "alive"]
            m = cb.metrics(x.http_port)
            print(x.name, "not alive:", bad, "swim down total:",
                  cb.metric_sum(m, "coolmesh_swim_down_total"), "rejected:",
                  cb.metric_sum(m, "coolmesh_gossip_rejected_total"), flush=True)
        # Measured anyway, and said so: the figures below are of a room
        # whose members do not all see each other alive.
        print("WARNING: not every agent sees every other alive; measuring anyway", flush=True)
        return
    downs = sum(cb.metric_sum(cb.metrics(x.http_port), "coolmesh_swim_down_total")
                for x in nodes)
    print(f"SWIM downs so far (all nodes): {downs:.0f}", flush=True)
    print(f"roster on every agent {time.monotonic() - t0:.1f}s after the install "
          f"(all alive again {took:.1f}s later)", flush=True)


def delta(a, b, nodes):
    dt = b["t"] - a["t"]
    per = []
    for i, n in enumerate(nodes):
        d = {k: b["nodes"][i][k] - a["nodes"][i][k] for k in a["nodes"][i]}
        d["node"] = n.name
        per.append(d)
    busy = (b["machine"][0] - a["machine"][0]) / max(1, b["machine"][1] - a["machine"][1])
    return {
        "seconds": dt,
        "per_node": per,
        "msgs_out": sum(d["msgs_out"] for d in per),
        "bytes_out": sum(d["bytes_out"] for d in per),
        "wire_bytes": b["wire_bytes"] - a["wire_bytes"],
        "wire_packets": b["wire_packets"] - a["wire_packets"],
        "agents_cpu_cores": sum(d["cpu"] for d in per) / dt,
        "machine_busy_fraction": busy,
    }


async def run_n(n, args):
    base = os.path.join(OUT, f"gossip-n{n}")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base, exist_ok=True)
    extra = ["swim = true"] if args.swim else []
    key_file = os.path.join(base, "operator.key")
    if args.roster:
        # The operator's key: its public half goes into every config, the
        # roster of every agent is installed once the room has formed.
        out = subprocess.run([cb.coolmesh_bin(), "roster", "keygen", "--out", key_file],
                             check=True, capture_output=True, text=True).stdout
        extra += [l for l in out.splitlines() if l.startswith("operator_key")]
    nodes = [cb.AgentNode(base, i, HTTP_BASE + i, P2P_BASE + i,
                          seeds=[P2P_BASE] if i else [], cluster="bench",
                          extra="\n".join(extra))
             for i in range(n)]
    try:
        t_start = time.monotonic()
        for x in nodes:
            x.start()
            await asyncio.sleep(0.05)
        for x in nodes:
            x.wait_http()
        conv = await asyncio.to_thread(cb.wait_converged, nodes, 180)
        print(f"N={n}: converged {conv:.1f}s after the last start "
              f"({time.monotonic() - t_start:.1f}s total)", flush=True)
        downs = sum(cb.metric_sum(cb.metrics(x.http_port), "coolmesh_swim_down_total")
                    for x in nodes)
        print(f"SWIM downs so far (all nodes): {downs:.0f}", flush=True)
        if args.roster:
            await asyncio.to_thread(install_roster, nodes, key_file)
        await asyncio.sleep(args.settle)
        hub = cb.hub_of(nodes)

        # Idle window.
        s0 = await snapshot(nodes)
        await asyncio.sleep(args.idle)
        s1 = await snapshot(nodes)
        idle = delta(s0, s1, nodes)

        # Load window with continuous polling.
        pollers_stop = asyncio.Event()
        # vis[x][j] = list of arrival times; index k-1 = time op k of j became visible at x
        vis = [[[] for _ in range(n)] for _ in range(n)]
        polls = [0] * n
        poll_interval = max(args.min_poll, n / args.poll_rate)

        async def poller(x):
            c = Conn(nodes[x].http_port)
            while not pollers_stop.is_set():
                try:
                    st, body = await c.request("GET", "/v1/counters")
                except Exception:  # noqa: BLE001
                    await asyncio.sleep(poll_interval)
                    continue
                t = time.monotonic()
                polls[x] += 1
                if st == 200:
                    for ctr in json.loads(body):
                        name = ctr.get("name", "")
                        if name.startswith("b") and name[1:].isdigit():
                            j = int(name[1:])
                            if j < n:
                                v = int(ctr.get("value", 0))
                                while len(vis[x][j]) < v:
                                    vis[x][j].append(t)
                await asyncio.sleep(poll_interval)
            c.close()

        ops = []  # (origin j, k, sent, acked, status)
        locks = [asyncio.Lock() for _ in range(n)]
        seq = [0] * n

        async def post(j):
            async with locks[j]:
                seq[j] += 1
                k = seq[j]
                sent = time.monotonic()
                c = Conn(nodes[j].http_port)
                try:
                    st, _ = await c.request("POST", f"/v1/counters/b{j}/inc?amount=1", cb.TOKEN)
                except Exception:  # noqa: BLE001
                    st = 0
                finally:
                    c.close()
                ops.append((j, k, sent, time.monotonic(), st))

        tasks = [asyncio.create_task(poller(x)) for x in range(n)]
        await asyncio.sleep(1.0)
        total_ops = int(args.rate * args.seconds)
        m0 = await snapshot(nodes)
        t0 = time.monotonic()
        posts = []
        for i in range(total_ops):
            at = t0 + i / args.rate
            d = at - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
            posts.append(asyncio.create_task(post(i % n)))
        rest = t0 + args.seconds - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        m1 = await snapshot(nodes)
        load = delta(m0, m1, nodes)
        await asyncio.gather(*posts)
        send_lag = (max(o[2] for o in ops) - (t0 + (total_ops - 1) / args.rate)) if ops else 0.0
        # Drain: wait until everything is visible everywhere (or give up).
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline:
            if all(len(vis[x][j]) >= seq[j] for x in range(n) for j in range(n)):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * poll_interval)
        pollers_stop.set()
        await asyncio.gather(*tasks)

        lat = []
        missing = 0
        failed = sum(1 for o in ops if o[4] != 200)
        for (j, k, sent, acked, st) in ops:
            if st != 200:
                continue
            worst = acked
            for x in range(n):
                if x == j:
                    continue
                if len(vis[x][j]) < k:
                    worst = None
                    break
                worst = max(worst, vis[x][j][k - 1])
            if worst is None:
                missing += 1
            else:
                lat.append(worst - sent)
        ack = [o[3] - o[2] for o in ops if o[4] == 200]
        rss = [cb.proc_rss_kib(x.proc.pid)[0] for x in nodes]
        res = {
            "n": n,
            "hub": hub.name if hub else None,
            "converge_seconds": conv,
            "poll_interval_s": poll_interval,
            "polls_per_node_per_s": sum(polls) / n / (args.seconds + 1),
            "ops": len(ops),
            "ops_failed": failed,
            "ops_never_visible": missing,
            "send_lag_s": send_lag,
            "ack_p50_ms": cb.pct(ack, 50) * 1000 if ack else None,
            "ack_p99_ms": cb.pct(ack, 99) * 1000 if ack else None,
            "lat_p50_ms": cb.pct(lat, 50) * 1000,
            "lat_p95_ms": cb.pct(lat, 95) * 1000,
            "lat_p99_ms": cb.pct(lat, 99) * 1000,
            "lat_max_ms": max(lat) * 1000 if lat else float("nan"),
            "idle": idle,
            "load": load,
            "msgs_per_op": load["msgs_out"] / max(1, len(ops)),
            "bytes_per_op": load["bytes_out"] / max(1, len(ops)),
            "wire_bytes_per_op": load["wire_bytes"] / max(1, len(ops)),
            "connected_mean": sum(x["connected"] for x in s1["nodes"]) / n,
            "connected_max": max(x["connected"] for x in s1["nodes"]),
            "rss_kib_mean": sum(rss) / n,
            "rss_kib_max": max(rss),
            "rss_kib_hub": cb.proc_rss_kib(hub.proc.pid)[0] if hub else None,
        }
        print(json.dumps({k: v for k, v in res.items() if k not in ("idle", "load")}), flush=True)
        return res
    finally:
        for x in nodes:
            x.stop()


def tables(results, meta, args):
    out = []
    out.append(f"Machine: {meta['nproc']} x {meta['cpu']}, kernel {meta['kernel']}, "
               f"load average at start {meta['loadavg_at_start']}; {meta['date']}; "
               f"commit {meta['git']}")
    out.append(f"Network: loopback in a private namespace, {args.delay_ms:g} ms one-way delay per "
               f"packet on the cluster ports; {args.rate:g} increments/s for {args.seconds:g} s.\n")
    rows = []
    for r in results:
        rows.append([r["n"], r["ops"], f"{r['msgs_per_op']:.2f}", f"{r['bytes_per_op']:.0f}",
                     f"{r['wire_bytes_per_op']:.0f}",
                     f"{r['lat_p50_ms']:.0f}", f"{r['lat_p95_ms']:.0f}", f"{r['lat_max_ms']:.0f}",
                     f"{r['poll_interval_s'] * 1000:.0f}",
                     f"{r['load']['agents_cpu_cores']:.2f} / {r['load']['machine_busy_fraction'] * 100:.0f}%",
                     r["ops_failed"] + r["ops_never_visible"]])
    out.append(cb.md_table(["N", "ops", "msgs/op", "frame bytes/op", "wire bytes/op",
                            "stable p50 ms", "p95 ms", "max ms", "poll ms",
                            "agents' CPU (cores) / machine busy", "lost ops"], rows))
    out.append("")
    rows = []
    for r in results:
        for label, w in (("idle", r["idle"]), ("load", r["load"])):
            per = w["per_node"]
            dt = w["seconds"]
            outs = [p["bytes_out"] / dt for p in per]
            ins = [p["bytes_in"] / dt for p in per]
            hub = next((p for p in per if p["node"] == r["hub"]), None)
            rows.append([r["n"], label, f"{w['msgs_out'] / dt:.0f}",
                         f"{sum(outs) / len(outs) / 1024:.1f}", f"{sum(ins) / len(ins) / 1024:.1f}",
                         f"{hub['bytes_out'] / dt / 1024:.1f}" if hub else "?",
                         f"{max(outs) / 1024:.1f}",
                         f"{w['wire_bytes'] / dt / r['n'] / 1024:.1f}",
                         f"{w['agents_cpu_cores'] / r['n'] * 100:.1f}%",
                         f"{r['rss_kib_mean'] / 1024:.1f} / {r['rss_kib_max'] / 1024:.1f}",
                         f"{r['connected_mean']:.1f} / {r['connected_max']}"])
    out.append(cb.md_table(["N", "window", "msgs/s (all)", "out KiB/s per node (mean)",
                            "in KiB/s per node (mean)", "hub out KiB/s", "max out KiB/s",
                            "wire KiB/s per node (mean)", "CPU per agent",
                            "RSS MiB mean / max", "connections mean / max (end of idle)"], rows))
    return "\n".join(out)


async def inside(args):
    sizes = [int(x) for x in args.nodes.split(",")]
    meta = cb.machine()
    results = []
    for n in sizes:
        results.append(await run_n(n, args))
        await asyncio.sleep(2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(OUT, f"gossip-{stamp}{'-' + args.label if args.label else ''}.json")
    meta["binary"] = cb.coolmesh_bin()
    with open(path, "w") as f:
        json.dump({"meta": meta, "args": vars(args), "results": results}, f, indent=1)
    print()
    print(tables(results, meta, args))
    print(f"\nraw: {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="10,25,50")
    ap.add_argument("--delay-ms", type=float, default=100)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--drain", type=float, default=15)
    ap.add_argument("--poll-rate", type=float, default=500,
                    help="total /v1/counters polls per second over all nodes")
    ap.add_argument("--min-poll", type=float, default=0.02, help="shortest poll interval, s")
    ap.add_argument("--netns", default="cm-bench-gossip")
    ap.add_argument("--swim", action="store_true",
                    help="run the agents with cluster.swim = true (docs/scale.md steps 1-2)")
    ap.add_argument("--roster", action="store_true",
                    help="install an operator's roster of every agent once the room has formed "
                         "(with --swim: bounded connections)")
    ap.add_argument("--label", default="", help="appended to the raw result's file name")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if os.environ.get("CM_NETNS") == args.netns:
        asyncio.run(inside(args))
        return 0
    if not os.path.exists(cb.coolmesh_bin()):
        sys.exit(f"{cb.coolmesh_bin()} missing: cargo build --release -p coolmesh")
    os.environ["BENCH_OUT"] = OUT
    return cb.run_in_netns(args.netns, os.path.abspath(__file__), sys.argv[1:],
                           delay_ms=args.delay_ms, delayed_ports=f"{P2P_BASE}:{P2P_BASE + 999}")


if __name__ == "__main__":
    sys.exit(main())
