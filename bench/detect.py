#!/usr/bin/env python3
"""Detection times: power target dark -> pre_fail on every node, and agent
crash (kill -9) -> marked dead on every peer.

    sudo python3 bench/detect.py [--nodes 5] [--trials 3] [--delay-ms 0]

Five real agents on the loopback of a private network namespace (no delay
unless --delay-ms), one shared power target: a TCP listener this script
owns. /v1/state and /v1/peers of every node are polled every 50 ms; times are
from the moment the target went dark (or the kill) to the first poll answer
that shows the new state (upper bound, 50 ms resolution).

Power, two ways of going dark, each at power.interval 1 s and at the
default 5 s (timeout 1 s, jitter 10%, shutdown grace 30 min so nothing
shuts down):
- `refused`: the listener closes; probes fail at once (connection refused);
- `silent`: an iptables DROP rule; probes fail after power.timeout, as with
  a device that lost power.
After each trial the target comes back and the script waits for `normal`.

Crash: default liveness (suspect_after 4 s, dead_after 8 s); kill -9 a
non-hub node, then the hub (the hub rule of docs/protocol.md); the victim is
restarted from its state directory before the next trial.

Writes bench/out/detect-<time>.json and prints markdown tables.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmbench as cb  # noqa: E402

OUT = os.path.join(cb.ROOT, "bench", "out")
HTTP_BASE = 22000
P2P_BASE = 20100
TARGET_PORT = 23000


class Target:
    """A TCP power target: accepts and closes connections while up."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.thread = None

    def up(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.sock = s

        def loop():
            while True:
                try:
                    c, _ = s.accept()
                    c.close()
                except OSError:
                    return
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def down(self):
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None


def iptables_drop(port, add):
    subprocess.run(["iptables", "-A" if add else "-D", "INPUT", "-p", "tcp", "--dport", str(port),
                    "-j", "DROP"], check=True)


def poll_until(nodes, pred, timeout, t0):
    """Poll every node every 50 ms; returns {node name: seconds since t0} for
    the first answer where pred(node) holds (None if never)."""
    got = {n.name: None for n in nodes}
    deadline = t0 + timeout
    while time.monotonic() < deadline and any(v is None for v in got.values()):
        for n in nodes:
            if got[n.name] is not None:
                continue
            try:
                ok = pred(n)
            except (OSError, RuntimeError, ValueError):
                ok = False
            if ok:
                got[n.name] = time.monotonic() - t0
        time.sleep(0.05)
    return got


def state_of(n):
    return cb.get_json(n.http_port, "/v1/state", timeout=2)["fsm"]["state"]


def power_trials(args, interval, mode, trials, results):
    base = os.path.join(OUT, f"detect-power-{interval}")
    shutil.rmtree(base, ignore_errors=True)
    target = Target(TARGET_PORT)
    target.up()
    nodes = [cb.AgentNode(base, i, HTTP_BASE + i, P2P_BASE + i,
                          seeds=[P2P_BASE] if i else [], cluster="detect",
                          power_targets=[f"tcp://127.0.0.1:{TARGET_PORT}"],
                          power_interval=interval, power_timeout="1s")
             for i in range(args.nodes)]
    try:
        for x in nodes:
            x.start()
        for x in nodes:
            x.wait_http()
        cb.wait_converged(nodes, 120)
        for mode_ in mode:
            for t in range(trials):
                # Everyone normal first.
                r = poll_until(nodes, lambda n: state_of(n) == "normal", 60, time.monotonic())
                if any(v is None for v in r.values()):
                    raise RuntimeError(f"not normal before the trial: {r}")
                # Random phase against the probe timer.
                time.sleep(1.0 + (t * 0.37) % 1.0)
                t0 = time.monotonic()
                if mode_ == "refused":
                    target.down()
                else:
                    iptables_drop(TARGET_PORT, True)
                # Every node's state every 50 ms, keeping the path each one takes
                # (a node whose own probe fails before its peers' may pass
                # through local_fault first).
                got = {n.name: None for n in nodes}
                path = {n.name: [] for n in nodes}
                while time.monotonic() - t0 < 60 and any(v is None for v in got.values()):
                    for n in nodes:
                        if got[n.name] is not None:
                            continue
                        try:
                            st = state_of(n)
                        except (OSError, RuntimeError, ValueError):
                            continue
                        now = time.monotonic() - t0
                        if not path[n.name] or path[n.name][-1][1] != st:
                            path[n.name].append((round(now, 3), st))
                        if st == "pre_fail":
                            got[n.name] = now
                    time.sleep(0.05)
                other = {n.name: state_of(n) for n in nodes}
                if mode_ == "refused":
                    target.up()
                else:
                    iptables_drop(TARGET_PORT, False)
                vals = [v for v in got.values() if v is not None]
                res = {"kind": "power", "interval": interval, "mode": mode_, "trial": t + 1,
                       "per_node_s": got, "states_at_end": other, "paths": path,
                       "first_s": min(vals) if vals else None,
                       "all_s": max(vals) if len(vals) == len(nodes) else None}
                print(json.dumps(res), flush=True)
                results.append(res)
    finally:
        for x in nodes:
            x.stop()
        target.down()


def crash_trials(args, trials, results):
    base = os.path.join(OUT, "detect-crash")
    shutil.rmtree(base, ignore_errors=True)
    nodes = [cb.AgentNode(base, i, HTTP_BASE + 50 + i, P2P_BASE + 50 + i,
                          seeds=[P2P_BASE + 50] if i else [], cluster="crash")
             for i in range(args.nodes)]
    try:
        for x in nodes:
            x.start()
        for x in nodes:
            x.wait_http()
        cb.wait_converged(nodes, 120)
        for which in ("non-hub", "hub"):
            for t in range(trials):
                cb.wait_converged(nodes, 120)
                time.sleep(2.0 + (t * 0.37) % 1.0)
                hub = cb.hub_of(nodes)
                if which == "hub":
                    victim = hub
                else:
                    victim = [x for x in nodes if x is not hub][t % (len(nodes) - 1)]
                others = [x for x in nodes if x is not victim]
                t0 = time.monotonic()
                victim.kill9()

                got_s = {}
                got = {}
                # Poll both conditions in one pass.
                pending = {n.name: n for n in others}
                while pending and time.monotonic() - t0 < 60:
                    for name, n in list(pending.items()):
                        try:
                            peers = cb.get_json(n.http_port, "/v1/peers", timeout=2)
                        except (OSError, RuntimeError, ValueError):
                            continue
                        live = next((p.get("liveness") for p in peers
                                     if p.get("node") == victim.name), None)
                        now = time.monotonic() - t0
                        if live in ("suspect", "dead") and name not in got_s:
                            got_s[name] = now
                        if live == "dead":
                            got[name] = now
                            got_s.setdefault(name, now)
                            del pending[name]
                    time.sleep(0.05)
                res = {"kind": "crash", "victim": which, "trial": t + 1, "node": victim.name,
                       "per_node_dead_s": got, "per_node_suspect_s": got_s,
                       "all_dead_s": max(got.values()) if len(got) == len(others) else None,
                       "all_suspect_s": max(got_s.values()) if len(got_s) == len(others) else None}
                print(json.dumps(res), flush=True)
                results.append(res)
                victim.start()
                victim.wait_http()
    finally:
        for x in nodes:
            x.stop()


def tables(results, meta, args):
    out = [f"Machine: {meta['nproc']} x {meta['cpu']}, kernel {meta['kernel']}, load average at "
           f"start {meta['loadavg_at_start']}; {meta['date']}; commit {meta['git']}; "
           f"{args.nodes} agents, loopback in a private namespace"
           + (f", {args.delay_ms:g} ms one-way delay" if args.delay_ms else ", no added delay")
           + "; poll every 50 ms.\n"]
    rows = []
    for interval in sorted({r["interval"] for r in results if r["kind"] == "power"}):
        for mode in ("refused", "silent"):
            rs = [r for r in results if r["kind"] == "power" and r["interval"] == interval
                  and r["mode"] == mode]
            if not rs:
                continue
            alls = [r["all_s"] for r in rs if r["all_s"] is not None]
            firsts = [r["first_s"] for r in rs if r["first_s"] is not None]
            secs = float(interval.rstrip("s"))
            goal = secs + 2
            worst = max(alls) if len(alls) == len(rs) else None
            via = sum(1 for r in rs for p in r.get("paths", {}).values()
                      if any(st == "local_fault" for _, st in p))
            rows.append([f"power dark ({mode}), interval {interval}"
                         + (f" ({via} node-trials via local_fault)" if via else ""), len(rs),
                         f"{min(firsts):.2f}" if firsts else "-",
                         " / ".join(f"{a:.2f}" for a in alls) or "-",
                         f"<= {goal:g} s",
                         "met" if worst is not None and worst <= goal else "MISSED"])
    for which in ("non-hub", "hub"):
        rs = [r for r in results if r["kind"] == "crash" and r["victim"] == which]
        if not rs:
            continue
        alls = [r["all_dead_s"] for r in rs if r["all_dead_s"] is not None]
        sus = [r["all_suspect_s"] for r in rs if r["all_suspect_s"] is not None]
        worst = max(alls) if len(alls) == len(rs) else None
        rows.append([f"kill -9 ({which}) -> dead", len(rs),
                     " / ".join(f"{a:.2f}" for a in sus) + " (suspect everywhere)",
                     " / ".join(f"{a:.2f}" for a in alls) or "-", "<= 10 s",
                     "met" if worst is not None and worst <= 10 else "MISSED"])
    out.append(cb.md_table(["event", "trials", "first node s", "every node s (per trial)",
                            "goal", ""], rows))
    return "\n".join(out)


def inside(args):
    meta = cb.machine()
    results = []
    intervals = [s for s in args.intervals.split(",") if s]
    for interval in intervals:
        power_trials(args, interval, ["refused", "silent"], args.trials, results)
    if args.crash:
        crash_trials(args, args.trials, results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(OUT, f"detect-{stamp}{'-' + args.label if args.label else ''}.json")
    meta["binary"] = cb.coolmesh_bin()
    with open(path, "w") as f:
        json.dump({"meta": meta, "args": vars(args), "results": results}, f, indent=1)
    print()
    print(tables(results, meta, args))
    print(f"\nraw: {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--intervals", default="1s,5s")
    ap.add_argument("--no-crash", dest="crash", action="store_false")
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--netns", default="cm-bench-detect")
    ap.add_argument("--label", default="", help="appended to the raw result's file name")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if os.environ.get("CM_NETNS") == args.netns:
        inside(args)
        return 0
    if not os.path.exists(cb.coolmesh_bin()):
        sys.exit(f"{cb.coolmesh_bin()} missing: cargo build --release -p coolmesh")
    os.environ["BENCH_OUT"] = OUT
    return cb.run_in_netns(args.netns, os.path.abspath(__file__), sys.argv[1:],
                           delay_ms=args.delay_ms, delayed_ports=f"{P2P_BASE}:{P2P_BASE + 99}")


if __name__ == "__main__":
    sys.exit(main())
