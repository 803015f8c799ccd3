#!/usr/bin/env python3
"""Scrape cost: coolmesh /metrics against node_exporter, side by side.

    sudo python3 bench/scrape.py [--rounds 3] [--duration 15s] [--idle 60]

In a private network namespace (so ports never collide with anything else),
in the same run and alternating, under the same wrk load
(`wrk -t2 -c10 -d15s --latency`):

- `node_exporter`: prometheus-node-exporter with only hwmon and
  thermal_zone, on the fixture sysfs tree (agent/tests/fixtures/sysfs);
- `coolmesh synthetic`: bench/scrape-server, the exporter's own code path
  (`Metrics::new` + `coolmesh_exporter::serve`, 2-worker runtime like the
  agent) with a synthetic snapshot of 100 alive peers and 64 sensors;
- `coolmesh agent`: the real agent binary, 64 sensors from the `file`
  source, in a cluster of --agents real agents (so it has agents-1 peers).

Then RSS of each process (VmRSS, and the VmHWM peak) and CPU use over
--idle seconds without any scrape (utime+stime from /proc).

Writes bench/out/scrape-<time>.json and prints markdown tables.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmbench as cb  # noqa: E402

OUT = os.path.join(cb.ROOT, "bench", "out")
NE_PORT = 24000
SYN_PORT = 24001
AGENT_HTTP = 24010
AGENT_P2P = 20200


def readings(n):
    return [{"chip": f"platform_coretemp_{i // 16}", "sensor": f"temp{i % 16 + 1}",
             "label": f"Core {i % 16}", "celsius": 40 + (i % 30) * 0.5,
             "max_celsius": 84, "critical_celsius": 100} for i in range(n)]


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]


def wrk(port, args):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}", "--latency",
           f"http://127.0.0.1:{port}/metrics"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Socket errors:.*", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50_ms": to_ms(lat["50"]), "p99_ms": to_ms(lat["99"]),
            "socket_errors": errors.group(0) if errors else "",
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "cmd": " ".join(cmd), "raw": out}


def page_stats(port):
    st, body = cb.http(port, "GET", "/metrics")
    text = body.decode()
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {"status": st, "bytes": len(body), "series": series}


def inside(args):
    meta = cb.machine()
    base = os.path.join(OUT, "scrape")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    tgt = os.environ.get("CARGO_TARGET_DIR", os.path.join(cb.ROOT, "target"))
    procs = {}
    ne = subprocess.Popen(
        ["prometheus-node-exporter",
         f"--path.sysfs={os.path.join(cb.ROOT, 'agent/tests/fixtures/sysfs')}",
         "--collector.disable-defaults", "--collector.hwmon", "--collector.thermal_zone",
         f"--web.listen-address=127.0.0.1:{NE_PORT}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(base, "node_exporter.log"), "w"))
    syn = subprocess.Popen(
        [os.path.join(tgt, "release", "coolmesh-scrape-server"), "--listen",
         f"127.0.0.1:{SYN_PORT}", "--peers", str(args.peers), "--sensors", str(args.sensors)],
        stdout=open(os.path.join(base, "scrape-server.log"), "w"), stderr=subprocess.STDOUT)
    nodes = []
    for i in range(args.agents):
        nodes.append(cb.AgentNode(base, i, AGENT_HTTP + i, AGENT_P2P + i,
                                  seeds=[AGENT_P2P] if i else [], cluster="scrape",
                                  readings=readings(args.sensors) if i == 0 else None))
    try:
        for x in nodes:
            x.start()
        for x in nodes:
            x.wait_http()
        if len(nodes) > 1:
            cb.wait_converged(nodes, 120)
        agent = nodes[0]
        # The first sensor round must have happened.
        for _ in range(100):
            if cb.get_json(agent.http_port, "/v1/state").get("ready"):
                break
            time.sleep(0.1)
        time.sleep(3)
        targets = {
            "node_exporter": (NE_PORT, ne.pid),
            "coolmesh synthetic (100 peers)": (SYN_PORT, syn.pid),
            f"coolmesh agent ({args.agents - 1} peers)": (agent.http_port, agent.proc.pid),
        }
        for name, (port, pid) in targets.items():
            for _ in range(100):
                try:
                    if cb.http(port, "GET", "/metrics")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
        pages = {name: page_stats(port) for name, (port, _) in targets.items()}
        rss_before = {name: cb.proc_rss_kib(pid) for name, (_, pid) in targets.items()}
        print(json.dumps(pages), flush=True)
        hub = cb.hub_of(nodes)
        runs = {name: [] for name in targets}
        order = list(targets)
        for r in range(args.rounds):
            seq = order if r % 2 == 0 else list(reversed(order))
            for name in seq:
                port, pid = targets[name]
                c0 = cb.proc_cpu_seconds(pid)
                res = wrk(port, args)
                res["server_cpu_s"] = cb.proc_cpu_seconds(pid) - c0
                res["round"] = r + 1
                runs[name].append(res)
                print(f"round {r + 1} {name}: {res['rps']:.0f} req/s p50 {res['p50_ms']:.2f} ms "
                      f"p99 {res['p99_ms']:.2f} ms {res['socket_errors']}", flush=True)
                time.sleep(2)
        rss_after = {name: cb.proc_rss_kib(pid) for name, (_, pid) in targets.items()}
        # Idle CPU: nothing scrapes for args.idle seconds.
        time.sleep(2)
        c0 = {name: cb.proc_cpu_seconds(pid) for name, (_, pid) in targets.items()}
        a0 = [cb.proc_cpu_seconds(x.proc.pid) for x in nodes]
        t0 = time.monotonic()
        time.sleep(args.idle)
        dt = time.monotonic() - t0
        idle_cpu = {name: (cb.proc_cpu_seconds(pid) - c0[name]) / dt
                    for name, (_, pid) in targets.items()}
        agents_cpu = [(cb.proc_cpu_seconds(x.proc.pid) - a) / dt for x, a in zip(nodes, a0)]
        rss_idle = {name: cb.proc_rss_kib(pid) for name, (_, pid) in targets.items()}
        agents_rss = [cb.proc_rss_kib(x.proc.pid)[0] for x in nodes]
        res = {"meta": meta, "args": vars(args), "pages": pages, "runs": runs,
               "rss_before_kib": rss_before, "rss_after_kib": rss_after,
               "rss_idle_kib": rss_idle, "idle_cpu_cores": idle_cpu, "idle_seconds": dt,
               "agents_idle_cpu_cores": agents_cpu, "agents_rss_kib": agents_rss,
               "agents": [x.name for x in nodes], "hub": hub.name if hub else None,
               "measured_agent_is_hub": hub is agent}
    finally:
        for x in nodes:
            x.stop()
        for p in (ne, syn):
            p.terminate()
            p.wait()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(OUT, f"scrape-{stamp}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print()
    print(tables(res))
    print(f"\nraw: {path}")


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def tables(res):
    meta, args = res["meta"], res["args"]
    out = [f"Machine: {meta['nproc']} x {meta['cpu']}, kernel {meta['kernel']}, load average at "
           f"start {meta['loadavg_at_start']}; {meta['date']}; commit {meta['git']}",
           f"Load: `wrk -t{args['threads']} -c{args['connections']} -d{args['duration']} --latency`, "
           f"{args['rounds']} rounds, targets alternating; per target the median round "
           f"(by req/s), and every round's req/s.\n"]
    ne_name = "node_exporter"
    ne = res["runs"][ne_name]
    ne_rps, ne_p99 = med([r["rps"] for r in ne]), med([r["p99_ms"] for r in ne])
    rows = []
    for name, runs in res["runs"].items():
        rps = med([r["rps"] for r in runs])
        p50 = med([r["p50_ms"] for r in runs])
        p99 = med([r["p99_ms"] for r in runs])
        pg = res["pages"][name]
        cpu_per_req = sum(r["server_cpu_s"] for r in runs) / sum(
            r["rps"] * float(args["duration"].rstrip("s")) for r in runs)
        rows.append([name, pg["series"], f"{pg['bytes'] / 1024:.1f}", f"{rps:.0f}",
                     " / ".join(f"{r['rps']:.0f}" for r in runs),
                     f"{p50:.2f}", f"{p99:.2f}",
                     "-" if name == ne_name else f"{rps / ne_rps:.2f}x",
                     "-" if name == ne_name else f"{p99 / ne_p99:.2f}x",
                     f"{cpu_per_req * 1e6:.0f}"])
    out.append(cb.md_table(["server", "series", "page KiB", "req/s", "req/s per round",
                            "p50 ms", "p99 ms", "req/s vs node_exporter",
                            "p99 vs node_exporter", "server CPU us/req"], rows))
    out.append("")
    rows = []
    for name in res["runs"]:
        rb, ra, ri = res["rss_before_kib"][name], res["rss_after_kib"][name], res["rss_idle_kib"][name]
        rows.append([name, f"{rb[0] / 1024:.1f}", f"{ra[0] / 1024:.1f}", f"{ra[1] / 1024:.1f}",
                     f"{res['idle_cpu_cores'][name] * 100:.3f}%"])
    out.append(cb.md_table(["process", "RSS MiB before load", "RSS MiB after load",
                            "peak RSS (VmHWM) MiB", f"idle CPU over {res['idle_seconds']:.0f} s "
                            "(% of one core)"], rows))
    ac = res["agents_idle_cpu_cores"]
    ar = res["agents_rss_kib"]
    out.append(f"\nAll {len(ac)} agents of the cluster, idle: CPU mean {sum(ac) / len(ac) * 100:.3f}% "
               f"max {max(ac) * 100:.3f}% of one core; RSS mean {sum(ar) / len(ar) / 1024:.1f} MiB "
               f"max {max(ar) / 1024:.1f} MiB. The hub ({res.get('hub')}) used "
               + (f"{ac[res['agents'].index(res['hub'])] * 100:.3f}%. " if res.get("hub") in res.get("agents", []) else "? ")
               + f"The measured agent is "
               f"{'' if res['measured_agent_is_hub'] else 'not '}the hub.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="15s")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--peers", type=int, default=100)
    ap.add_argument("--sensors", type=int, default=64)
    ap.add_argument("--agents", type=int, default=10,
                    help="real agents in the cluster of the measured agent")
    ap.add_argument("--netns", default="cm-bench-scrape")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if os.environ.get("CM_NETNS") == args.netns:
        inside(args)
        return 0
    for tool in ("wrk", "prometheus-node-exporter"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: apt-get install -y wrk prometheus-node-exporter")
    os.environ["BENCH_OUT"] = OUT
    return cb.run_in_netns(args.netns, os.path.abspath(__file__), sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
