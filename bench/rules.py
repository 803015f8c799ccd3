#!/usr/bin/env python3
"""Rule and dashboard cost at 1,000 agents, before and after, in one run.

    python3 bench/rules.py                      # 1,000 agents, main's rules against the work tree's
    python3 bench/rules.py --before HEAD~3      # any git revision as "before"
    python3 bench/rules.py --agents 50 --history 1h --measure 60   # a quick smoke run

What it does, all on 127.0.0.1 with the distribution's `prometheus` and
`promtool` (Debian: prometheus):

1. Synthetic agents: --agents pages of /metrics made from the agent's golden
   page (agent/tests/fixtures/golden-metrics.prom: its families, sensors,
   sources and HTTP series), each with its own instance, node, peer_id and
   values, plus what a clustered agent adds: peer_up and peer_headroom for
   min(--peers, agents - 1) peers (the agent's cap, non-alive first), power
   votes and targets, the probe histogram, gossip counters, transitions,
   a CRDT counter. The room is mid-incident: a few agents are down (their
   scrape fails, the others list them dead), some pre_fail, shutdown,
   local_fault and maintenance, one hot row with a rising trend.
2. A day of history (--history) of `coolmesh_node_info` at the scrape
   interval, plus the room-level records the alerts read over a day,
   backfilled with `promtool tsdb create-blocks-from openmetrics`: what a
   `[1d]` range costs depends on the day of samples behind it.
3. One Prometheus (scrape every 10 s, evaluation every 15 s: production)
   scraping the pages from a small HTTP server in this process, with BOTH
   rule sets loaded: "before" (alerts/*.yml at --before, default main;
   records, alerts and groups renamed with a `before__` prefix so that
   both sets evaluate side by side on the same data) and "after" (the work
   tree's alerts/*.yml).
4. After --warmup seconds, for --measure seconds: every rule group's
   evaluation time at each evaluation (/api/v1/rules, one value per
   evaluation), summarised per group and per set; cross-checked with
   `prometheus_rule_group_last_duration_seconds` scraped by Prometheus itself.
5. Every PromQL expression of the dashboards (before: at --before, after:
   the work tree), with $job/$cluster/$instance = .* (Grafana's "All"),
   $__rate_interval/$__interval = 1m, $__range = the live window: an
   instant query and a range query over the live window at a 15 s step,
   each run 3 times; Prometheus's own evalTotalTime (stats=all), median.

Prints markdown tables; writes bench/out/rules-<time>.json. It is a
benchmark, not a test: nothing here fails on a number.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
GOLDEN = os.path.join(ROOT, "agent", "tests", "fixtures", "golden-metrics.prom")
RULE_FILES = ("alerts/coolmesh.rules.yml", "alerts/coolmesh.recording.yml")
DASHBOARDS = ("dashboards/coolmesh-room.json", "dashboards/coolmesh-node.json")
PREFIX = "before__"
SCRAPE = 10
EVAL = 15
JOB = "coolmesh"
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Families a clustered agent exports that the golden (single, unclustered)
# page lacks: name -> (type, help).
EXTRA_FAMILIES = {
    "coolmesh_thermal_trend_celsius_per_minute": ("gauge", "Slope of the hottest sensor."),
    "coolmesh_thermal_time_to_critical_seconds": ("gauge", "Projected time to critical."),
    "coolmesh_fsm_transitions_total": ("counter", "State machine transitions."),
    "coolmesh_shutdown_deadline_timestamp_seconds": ("gauge", "Pending shutdown deadline."),
    "coolmesh_maintenance_until_timestamp_seconds": ("gauge", "Maintenance end."),
    "coolmesh_power_up": ("gauge", "Policy result."),
    "coolmesh_power_target_up": ("gauge", "Last probe result per target."),
    "coolmesh_power_probe_duration_seconds": ("histogram", "Duration of power target probes."),
    "coolmesh_power_probe_failures_total": ("counter", "Failed probes."),
    "coolmesh_peer_up": ("gauge", "Peer liveness."),
    "coolmesh_peer_headroom_celsius": ("gauge", "Peer headroom."),
    "coolmesh_cluster_power_votes": ("gauge", "Power votes."),
    "coolmesh_gossip_messages_total": ("counter", "Gossip messages."),
    "coolmesh_gossip_bytes_total": ("counter", "Gossip bytes."),
    "coolmesh_gossip_rejected_total": ("counter", "Rejected peer input."),
    "coolmesh_crdt_value": ("gauge", "CRDT counter value."),
    "coolmesh_crdt_local": ("gauge", "CRDT counter local slot."),
}
REJECT_REASONS = ("bad_signature", "foreign_slot", "malformed", "oversized", "unauthorized",
                  "rate_limited", "handshake", "capacity", "new_identities", "not_in_roster")
STATES = ("normal", "pre_fail", "shutdown", "local_fault", "maintenance")
REASONS = ("none", "power", "cooling", "overheat", "prediction", "operator")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ synthetic room

def parse_golden():
    """Families (name -> (type, help)) in order, and the golden series by family."""
    fams, series = {}, {}
    for line in open(GOLDEN, encoding="utf-8"):
        line = line.rstrip("\n")
        m = re.match(r"# (HELP|TYPE) (\S+) (.*)", line)
        if m:
            kind, name, rest = m.groups()
            t, h = fams.get(name, ("gauge", ""))
            fams[name] = (rest, h) if kind == "TYPE" else (t, rest)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)", line)
        name, labels, value = m.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in fams else name
        series.setdefault(base, []).append((name, labels or "", float(value)))
    return fams, series


class Room:
    """The synthetic room: every agent's state and its /metrics page."""

    def __init__(self, n, peers, targets, clusters, seed=20):
        rng = random.Random(seed)
        self.n, self.fams, self.golden = n, *parse_golden()
        self.fams.update({k: v for k, v in EXTRA_FAMILIES.items() if k not in self.fams})
        self.names = [f"node-{i:04d}" for i in range(1, n + 1)]
        self.targets = [f"icmp://pdu-{t}" for t in range(1, targets + 1)]
        self.t0 = time.time()
        idx = list(range(n))
        rng.shuffle(idx)
        # Mid-incident: ~0.3% down, ~1% pre_fail, 0.2% shutdown, 1% local_fault,
        # 1.5% maintenance; the rest normal.
        k = lambda frac: max(1, round(n * frac))  # noqa: E731
        cuts = [("down", k(0.003)), ("pre_fail", k(0.012)), ("shutdown", k(0.002)),
                ("local_fault", k(0.008)), ("maintenance", k(0.015))]
        self.kind = ["normal"] * n
        pos = 0
        for kind, count in cuts:
            for i in idx[pos:pos + count]:
                self.kind[i] = kind
            pos += count
        self.down = {i for i in range(n) if self.kind[i] == "down"}
        self.cluster = [f"room-{1 + i * clusters // n}" for i in range(n)]
        self.members = {}
        for i in range(n):
            self.members.setdefault(self.cluster[i], []).append(i)
        self.peers = peers
        self.static, self.dynamic = [], []
        for i in range(n):
            s, d = self._page(i, rng)
            self.static.append(s)
            self.dynamic.append(d)
        self.series_per_agent = statistics.mean(
            sum(1 for line in (s + "".join(f(0) for f in d)).splitlines() if line and not line.startswith("#"))
            for s, d in zip(self.static[:20], self.dynamic[:20]))

    def instance(self, i):
        return f"{self.names[i]}:9876"

    def node_info_labels(self, i):
        # The identity under both names: coolmesh_cluster and coolmesh_node
        # since issue 17, cluster and node before (--before may be older).
        return (f'cluster="{self.cluster[i]}",node="{self.names[i]}",'
                f'coolmesh_cluster="{self.cluster[i]}",coolmesh_node="{self.names[i]}",'
                f'peer_id="12D3KooW{self.names[i]}"')

    def _page(self, i, rng):
        name, kind = self.names[i], self.kind[i]
        state = {"down": "normal", "normal": "normal"}.get(kind, kind)
        reason = {"pre_fail": rng.choice(("overheat", "prediction")), "shutdown": "overheat",
                  "local_fault": "power", "maintenance": "operator"}.get(state, "none")
        hot = reason in ("overheat", "prediction")
        base = rng.uniform(78, 92) if hot else rng.uniform(32, 62)
        out = {}  # family -> lines

        def add(fam, line):
            out.setdefault(fam, []).append(line)

        add("coolmesh_build_info", 'coolmesh_build_info{revision="bench",rustc="bench",version="0.9.0"} 1')
        add("coolmesh_node_info", "coolmesh_node_info{%s} 1" % self.node_info_labels(i))
        temps, headroom = [], []
        crit = {(l): v for _, l, v in self.golden.get("coolmesh_temperature_critical_celsius", [])}
        for fam in ("coolmesh_temperature_celsius", "coolmesh_temperature_max_celsius",
                    "coolmesh_temperature_critical_celsius"):
            for _, labels, value in self.golden.get(fam, []):
                if fam == "coolmesh_temperature_celsius":
                    value = round(base + rng.uniform(-6, 3), 2)
                    temps.append(value)
                    if labels in crit:
                        headroom.append(crit[labels] - value)
                add(fam, f"{fam}{labels} {value:g}")
        for fam in ("coolmesh_source_up", "coolmesh_source_duration_seconds", "coolmesh_source_readings"):
            for _, labels, value in self.golden.get(fam, []):
                add(fam, f"{fam}{labels} {value:g}")
        hottest, room_ = max(temps), min(headroom)
        add("coolmesh_thermal_hottest_celsius", f"coolmesh_thermal_hottest_celsius {hottest:g}")
        add("coolmesh_thermal_headroom_celsius", f"coolmesh_thermal_headroom_celsius {room_:g}")
        trend = 2.5 if reason == "prediction" else round(rng.gauss(0, 0.15), 3)
        add("coolmesh_thermal_trend_celsius_per_minute", f"coolmesh_thermal_trend_celsius_per_minute {trend:g}")
        if trend > 0:
            add("coolmesh_thermal_time_to_critical_seconds",
                f"coolmesh_thermal_time_to_critical_seconds {room_ / trend * 60:.0f}")
        for s in STATES:
            add("coolmesh_fsm_state", f'coolmesh_fsm_state{{state="{s}"}} {int(s == state)}')
        for r in REASONS:
            add("coolmesh_fsm_reason", f'coolmesh_fsm_reason{{reason="{r}"}} {int(r == reason)}')
        add("coolmesh_fsm_transitions_total",
            'coolmesh_fsm_transitions_total{from="normal",reason="operator",to="maintenance"} 2')
        add("coolmesh_fsm_transitions_total",
            'coolmesh_fsm_transitions_total{from="maintenance",reason="operator",to="normal"} %d'
            % (1 if state == "maintenance" else 2))
        if state != "normal":
            add("coolmesh_fsm_transitions_total",
                f'coolmesh_fsm_transitions_total{{from="normal",reason="{reason}",to="{state}"}} 1')
        if state in ("pre_fail", "shutdown"):
            add("coolmesh_shutdown_deadline_timestamp_seconds",
                f"coolmesh_shutdown_deadline_timestamp_seconds {self.t0 + rng.uniform(60, 1800):.3f}")
        if state == "maintenance":
            add("coolmesh_maintenance_until_timestamp_seconds",
                f"coolmesh_maintenance_until_timestamp_seconds {self.t0 + rng.uniform(1800, 14400):.3f}")
        for fam in ("coolmesh_shutdown_command_failures_total", "coolmesh_shutdown_command_outcome_unknown_total",
                    "coolmesh_shutdown_dry_run", "coolmesh_shutdown_executed"):
            add(fam, f"{fam} 0")
        fault = state == "local_fault"
        add("coolmesh_power_up", f"coolmesh_power_up {0 if fault else 1}")
        for t in self.targets:
            add("coolmesh_power_target_up", f'coolmesh_power_target_up{{target="{t}"}} {0 if fault else 1}')
        # The room's voters (alive members) and peers as this agent sees them.
        members = self.members[self.cluster[i]]
        dead = [j for j in members if j in self.down and j != i]
        alive = [j for j in members if j not in self.down and j != i]
        listed = (dead + alive)[: self.peers]
        voters = len(alive) + 1
        for t in self.targets:
            add("coolmesh_cluster_power_votes", f'coolmesh_cluster_power_votes{{target="{t}",vote="down"}} 0')
            add("coolmesh_cluster_power_votes",
                f'coolmesh_cluster_power_votes{{target="{t}",vote="up"}} {voters - (1 if fault else 0)}')
        overheating = sum(1 for j in members if self.kind[j] in ("pre_fail", "shutdown"))
        add("coolmesh_cluster_overheating_peers", f"coolmesh_cluster_overheating_peers {overheating}")
        add("coolmesh_cluster_quorum", f"coolmesh_cluster_quorum {max(2, voters // 2 + 1)}")
        add("coolmesh_cluster_peers", f'coolmesh_cluster_peers{{state="alive"}} {len(alive)}')
        add("coolmesh_cluster_peers", f'coolmesh_cluster_peers{{state="dead"}} {len(dead)}')
        add("coolmesh_cluster_peers", 'coolmesh_cluster_peers{state="suspect"} 0')
        for j in listed:
            add("coolmesh_peer_up", f'coolmesh_peer_up{{peer="{self.names[j]}"}} {0 if j in self.down else 1}')
            add("coolmesh_peer_headroom_celsius",
                f'coolmesh_peer_headroom_celsius{{peer="{self.names[j]}"}} {rng.uniform(5, 60):.1f}')
        for fam, rows in self.golden.items():
            if fam.startswith("coolmesh_http_"):
                for n_, labels, value in rows:
                    add(fam, f"{n_}{labels} {value:g}")
        add("coolmesh_crdt_value", 'coolmesh_crdt_value{name="restarts"} 42')
        add("coolmesh_crdt_local", 'coolmesh_crdt_local{name="restarts"} %d' % (i % 3))
        for r in REJECT_REASONS:
            add("coolmesh_gossip_rejected_total", f'coolmesh_gossip_rejected_total{{reason="{r}"}} 0')

        # Counters that move (rates are not all zero): formatted per scrape.
        rates = {("in", "digest"): 2.0, ("in", "records"): 0.5, ("in", "push"): 0.1,
                 ("out", "digest"): 2.0, ("out", "records"): 0.5, ("out", "push"): 0.1}
        probe = 1.0 / 5  # one probe per target every 5 s
        lat = rng.uniform(0.0005, 0.004)

        def counters(t):
            lines = []
            for (d, k_), r in rates.items():
                lines.append(f'coolmesh_gossip_messages_total{{direction="{d}",kind="{k_}"}} {int(r * t)}')
            lines_b = [f'coolmesh_gossip_bytes_total{{direction="{d}"}} {int(600 * t)}' for d in ("in", "out")]
            h = []
            count = int(probe * t)
            for tg in self.targets:
                for le in PROBE_BUCKETS:
                    h.append(f'coolmesh_power_probe_duration_seconds_bucket{{target="{tg}",le="{le:g}"}} '
                             f'{count if le >= lat else 0}')
                h.append(f'coolmesh_power_probe_duration_seconds_bucket{{target="{tg}",le="+Inf"}} {count}')
                h.append(f'coolmesh_power_probe_duration_seconds_sum{{target="{tg}"}} {count * lat:.6f}')
                h.append(f'coolmesh_power_probe_duration_seconds_count{{target="{tg}"}} {count}')
            f = []
            for tg in self.targets:
                f.append(f'coolmesh_power_probe_failures_total{{kind="local",target="{tg}"}} '
                         f'{count if fault else 0}')
                f.append(f'coolmesh_power_probe_failures_total{{kind="target",target="{tg}"}} 0')
            return {"coolmesh_gossip_messages_total": lines, "coolmesh_gossip_bytes_total": lines_b,
                    "coolmesh_power_probe_duration_seconds": h, "coolmesh_power_probe_failures_total": f}

        static = []
        dyn_fams = ("coolmesh_gossip_messages_total", "coolmesh_gossip_bytes_total",
                    "coolmesh_power_probe_duration_seconds", "coolmesh_power_probe_failures_total")
        for fam in sorted(set(out) | set(dyn_fams)):
            t, h = self.fams.get(fam, ("gauge", ""))
            head = f"# HELP {fam} {h}\n# TYPE {fam} {t}\n"
            if fam in dyn_fams:
                static.append((fam, head))
            else:
                static.append((fam, head + "\n".join(out[fam]) + "\n"))
        # Pages are written family by family; the moving ones are filled in per scrape.
        text = "".join(body for fam, body in static if fam not in dyn_fams)
        heads = {fam: body for fam, body in static if fam in dyn_fams}

        def dyn(t):
            c = counters(t)
            return "".join(heads[f] + "\n".join(c[f]) + "\n" for f in dyn_fams)

        return text, [dyn]

    def page(self, i):
        t = time.time() - self.t0 + 86400
        return (self.static[i] + "".join(f(t) for f in self.dynamic[i])).encode()


def serve(room, port):
    index = {room.names[i]: i for i in range(room.n)}

    class Handler(BaseHTTPRequestHandler):
        # One connection per scrape: no thread parked per target between scrapes.
        protocol_version = "HTTP/1.0"

        def do_GET(self):  # noqa: N802
            name = self.path.rsplit("/", 1)[-1]
            i = index.get(name)
            if i is None or i in room.down:
                body, code = b"down\n", 503
            else:
                body, code = room.page(i), 200
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# ------------------------------------------------------------------ rules

def git_show(rev, path):
    return subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def record_names(texts):
    return sorted({m for t in texts for m in re.findall(r"^\s*-\s*record:\s*(\S+)", t, re.M)},
                  key=len, reverse=True)


def rename(text, records):
    """Prefix records, alerts and groups of a rule file (or a dashboard) so
    that two sets can be loaded into one Prometheus."""
    for r in records:
        text = re.sub(rf"(?<![\w:]){re.escape(r)}(?![\w:])", PREFIX + r, text)
    text = re.sub(r"^(\s*-\s*alert:\s*)(\S+)", rf"\g<1>{PREFIX}\2", text, flags=re.M)
    text = re.sub(r"^(\s*-\s*name:\s*)(\S+)", rf"\g<1>{PREFIX}\2", text, flags=re.M)
    return text


def long_ranges(texts):
    """Names read over a range of an hour or more: (name, range)."""
    out = set()
    for t in texts:
        for name, rng in re.findall(r"([A-Za-z_:][\w:]*)(?:\{[^}]*\})?\[(\d+[hdw])\]", t):
            out.add((name, rng))
    return sorted(out)


# ------------------------------------------------------------------ history

def room_label(rule_texts):
    """The room label a rule set reads from coolmesh_node_info: coolmesh_cluster
    since issue 17, cluster before."""
    return "coolmesh_cluster" if any("coolmesh_cluster" in t for t in rule_texts) else "cluster"


def write_history(room, path, start, end, names):
    """OpenMetrics input for promtool: coolmesh_node_info for every agent
    and the room-level records in `names` ({name: its room label}), from
    start to end."""
    with open(path, "w") as f:
        f.write("# HELP coolmesh_node_info identity\n# TYPE coolmesh_node_info gauge\n")
        for i in range(room.n):
            # The agents that are down died half-way through the history.
            stop = int(end) if i not in room.down else int((start + end) / 2)
            lab = 'coolmesh_node_info{job="%s",instance="%s",%s} 1 ' % (JOB, room.instance(i), room.node_info_labels(i))
            f.write("".join(f"{lab}{t}\n" for t in range(int(start), stop, SCRAPE)))
        ets = range(int(start), int(end), EVAL)
        for name in names:
            rl = names[name]
            if name.endswith("cluster_power_votes:lost"):
                sets = [f'{rl}="{c}",job="{JOB}",target="{t}"' for c in room.members for t in room.targets]
            elif name.endswith("cluster_overheating_peers:failing"):
                sets = [f'{rl}="{c}",job="{JOB}"' for c in room.members]
            else:
                continue
            f.write(f"# HELP {name} backfill\n# TYPE {name} gauge\n")
            for s in sets:
                lab = f"{name}{{{s}}} 0 "
                f.write("".join(f"{lab}{t}\n" for t in ets))
        f.write("# EOF\n")


# ------------------------------------------------------------------ prometheus

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prom_get(base, path, params=None, timeout=120):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=timeout) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise RuntimeError(f"{path}: {doc}")
    return doc["data"]


def prom_post(base, path, params, timeout=300):
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(base + path, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as e:
        doc = json.load(e)
    if doc.get("status") != "success":
        raise RuntimeError(doc.get("error", doc))
    return doc["data"]


# ------------------------------------------------------------------ dashboards

VAR_RE = re.compile(r"\$\{?(job|cluster|instance)(?::[a-z]+)?\}?")


def dashboard_exprs(doc):
    out = []

    def panels(items):
        for p in items or []:
            yield p
            yield from panels(p.get("panels"))

    for p in panels(doc.get("panels")):
        for t in p.get("targets") or []:
            if isinstance(t.get("expr"), str):
                out.append((f"{p.get('id')} {p.get('title')} {t.get('refId')}", t["expr"], bool(t.get("instant"))))
    for a in doc.get("annotations", {}).get("list", []):
        if isinstance(a.get("expr"), str):
            out.append((f"annotation {a.get('name')}", a["expr"], False))
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = (q.get("query", "") if isinstance(q, dict) else q or "").strip()
            m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_]\w*\s*\)", q, re.S)
            if m:
                out.append((f"variable {v['name']}", m.group(1), True))
    return out


def substitute(expr, window, instance=".*"):
    """Grafana's variables: "All" (.*) for job and cluster; instance .* on
    the room dashboard, one agent on the node dashboard (it takes one)."""
    e = re.sub(r"\$\{?__range\}?", f"{int(window)}s", expr)
    e = re.sub(r"\$\{?__(rate_interval|interval)\}?", "1m", e)
    return VAR_RE.sub(lambda m: instance if m.group(1) == "instance" else ".*", e)


def time_query(base, expr, window, instant_only):
    """Median over up to 3 runs of Prometheus's evalTotalTime, instant and range."""
    res = {}
    now = time.time()
    kinds = [("instant", "/api/v1/query", {"query": expr, "time": f"{now:.3f}", "stats": "all"})]
    if not instant_only:
        kinds.append(("range", "/api/v1/query_range",
                      {"query": expr, "start": f"{now - window:.3f}", "end": f"{now:.3f}", "step": "15",
                       "stats": "all"}))
    for kind, path, params in kinds:
        times, series, err = [], 0, None
        for _ in range(3):
            try:
                data = prom_post(base, path, params)
                times.append(data["stats"]["timings"]["evalTotalTime"])
                series = len(data["result"])
            except Exception as e:  # noqa: BLE001
                err = str(e)[:200]
                break
            if sum(times) > 5:  # slow enough: one or two runs say it
                break
        res[kind] = {"seconds": statistics.median(times) if times else None, "series": series, "error": err}
    return res


# ------------------------------------------------------------------ main

def summarise(values):
    v = sorted(values)
    if not v:
        return {"n": 0}
    q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]  # noqa: E731
    return {"n": len(v), "median": q(0.5), "p90": q(0.9), "max": v[-1], "mean": statistics.mean(v)}


def ms(x):
    return "-" if x is None else f"{x * 1000:.1f}"


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--peers", type=int, default=256, help="the agent's cap on per-peer series")
    ap.add_argument("--targets", type=int, default=2, help="power targets per agent")
    ap.add_argument("--clusters", type=int, default=1)
    ap.add_argument("--history", default="24h", help="history of coolmesh_node_info to backfill (e.g. 24h, 1h, 0h)")
    ap.add_argument("--warmup", type=int, default=120, help="seconds after every target is up")
    ap.add_argument("--measure", type=int, default=600, help="seconds of rule evaluations to collect")
    ap.add_argument("--before", default="main", help="git revision of the 'before' rules and dashboards")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()

    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (Debian: apt-get install -y prometheus)")
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="coolmesh-rules-bench.")
    procs = []
    result = {"args": vars(a), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "git": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
              "before_rev": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", a.before],
                                           capture_output=True, text=True).stdout.strip(),
              "dirty": bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "alerts", "dashboards"],
                                           capture_output=True, text=True).stdout.strip()),
              "prometheus": subprocess.run(["prometheus", "--version"], capture_output=True,
                                           text=True).stdout.splitlines()[0],
              "nproc": os.cpu_count(), "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    try:
        # Rules: before (renamed) and after.
        before = {p: git_show(a.before, p) for p in RULE_FILES}
        after = {p: open(os.path.join(ROOT, p), encoding="utf-8").read() for p in RULE_FILES}
        brecs = record_names(before.values())
        os.makedirs(os.path.join(tmp, "rules"))
        rule_paths = []
        for p, text in before.items():
            rule_paths.append(os.path.join(tmp, "rules", "before-" + os.path.basename(p)))
            open(rule_paths[-1], "w").write(rename(text, brecs))
        for p, text in after.items():
            rule_paths.append(os.path.join(tmp, "rules", "after-" + os.path.basename(p)))
            open(rule_paths[-1], "w").write(text)
        subprocess.run(["promtool", "check", "rules", *rule_paths], check=True, capture_output=True)
        ranges = long_ranges([*before.values(), *after.values()])
        result["long_ranges"] = {"before": long_ranges(before.values()), "after": long_ranges(after.values())}
        log(f"ranges of an hour or more: before {result['long_ranges']['before']}, "
            f"after {result['long_ranges']['after']}")

        t = time.time()
        room = Room(a.agents, a.peers, a.targets, a.clusters)
        result["series_per_agent"] = room.series_per_agent
        result["kinds"] = {k: room.kind.count(k) for k in set(room.kind)}
        log(f"{a.agents} synthetic agents, {room.series_per_agent:.0f} series each "
            f"({room.series_per_agent * a.agents:,.0f} in all); {result['kinds']} ({time.time() - t:.1f}s)")

        # History, backfilled.
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        hist = int(re.fullmatch(r"(\d+)h", a.history).group(1)) * 3600
        if hist:
            t = time.time()
            now = time.time()
            rl_before, rl_after = room_label(before.values()), room_label(after.values())
            names = {n: rl_after for n, _ in ranges if n.startswith("cluster:")}
            names.update({PREFIX + n: rl_before for n, _ in ranges if n.startswith("cluster:") and n in brecs})
            names = dict(sorted(names.items()))
            om = os.path.join(tmp, "history.om")
            write_history(room, om, now - hist, now - 30, names)
            subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", om, data],
                           check=True)
            os.remove(om)
            result["backfilled"] = ["coolmesh_node_info", *names]
            log(f"backfilled {a.history} of coolmesh_node_info and {list(names)} ({time.time() - t:.0f}s)")

        # Server and Prometheus.
        sport, pport = free_port(), free_port()
        srv = serve(room, sport)
        cfg = {
            "global": {"scrape_interval": f"{SCRAPE}s", "scrape_timeout": f"{SCRAPE}s",
                       "evaluation_interval": f"{EVAL}s"},
            "rule_files": rule_paths,
            "scrape_configs": [
                {"job_name": JOB,
                 "static_configs": [{"targets": [room.instance(i) for i in range(room.n)]}],
                 "relabel_configs": [
                     {"source_labels": ["__address__"], "target_label": "instance"},
                     {"source_labels": ["__address__"], "regex": "([^:]+):.*",
                      "target_label": "__metrics_path__", "replacement": "/metrics/$1"},
                     {"target_label": "__address__", "replacement": f"127.0.0.1:{sport}"}]},
                {"job_name": "prometheus", "scrape_interval": "5s",
                 "static_configs": [{"targets": [f"127.0.0.1:{pport}"]}]},
            ],
        }
        open(os.path.join(tmp, "prometheus.yml"), "w").write(json.dumps(cfg, indent=1))
        plog = open(os.path.join(tmp, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{pport}", "--storage.tsdb.retention.time=30d"],
            stdout=plog, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{pport}"
        deadline = time.time() + 300
        while True:
            try:
                r = prom_get(base, "/api/v1/query", {"query": f'count(up{{job="{JOB}"}} == 1)'})
                up = int(float(r["result"][0]["value"][1])) if r["result"] else 0
                if up >= room.n - len(room.down):
                    break
            except (OSError, RuntimeError, ValueError):
                pass
            if time.time() > deadline or procs[0].poll() is not None:
                raise SystemExit(f"targets not up in time; see {tmp}/prometheus.log")
            time.sleep(2)
        log(f"Prometheus {base}: every target up; warming up {a.warmup}s")
        time.sleep(a.warmup)

        # Rule evaluation times, one value per evaluation.
        log(f"measuring rule evaluations for {a.measure}s")
        per_group, per_rule, seen = {}, {}, set()
        t_start = time.time()
        while time.time() - t_start < a.measure:
            groups = prom_get(base, "/api/v1/rules")["groups"]
            for g in groups:
                key = (g["name"], g.get("lastEvaluation"))
                if key in seen or not g.get("lastEvaluation", "").startswith("2"):
                    continue
                seen.add(key)
                per_group.setdefault(g["name"], []).append(g["evaluationTime"])
                for r in g["rules"]:
                    per_rule.setdefault((g["name"], r["name"]), []).append(r["evaluationTime"])
            time.sleep(4)
        window = time.time() - t_start
        load = open("/proc/loadavg").read().split()[:3]
        result["loadavg_end"] = load
        cross = prom_get(base, "/api/v1/query", {
            "query": f"avg_over_time(prometheus_rule_group_last_duration_seconds[{int(window)}s])"})["result"]
        samples = prom_get(base, "/api/v1/query", {
            "query": "prometheus_rule_group_last_evaluation_samples"})["result"]
        missed = prom_get(base, "/api/v1/query", {
            "query": "prometheus_rule_group_iterations_missed_total"})["result"]
        missed = {re.sub(r"^.*;", "", s["metric"]["rule_group"]): float(s["value"][1]) for s in missed}
        heads = prom_get(base, "/api/v1/query", {"query": "prometheus_tsdb_head_series"})["result"]
        result["head_series"] = int(float(heads[0]["value"][1])) if heads else None
        cross = {re.sub(r"^.*;", "", s["metric"]["rule_group"]): float(s["value"][1]) for s in cross}
        samples = {re.sub(r"^.*;", "", s["metric"]["rule_group"]): float(s["value"][1]) for s in samples}
        result["groups"] = {g: {**summarise(v), "avg_last_duration": cross.get(g),
                                "samples": samples.get(g), "missed": missed.get(g)} for g, v in per_group.items()}
        result["rules"] = {f"{g} / {r}": summarise(v) for (g, r), v in per_rule.items()}

        # Alerts: both sets should fire the same.
        alerts = prom_get(base, "/api/v1/alerts")["alerts"]
        firing = {"before": {}, "after": {}}
        for al in alerts:
            name = al["labels"]["alertname"]
            side = "before" if name.startswith(PREFIX) else "after"
            name = name[len(PREFIX):] if side == "before" else name
            firing[side][f"{name} ({al['state']})"] = firing[side].get(f"{name} ({al['state']})", 0) + 1
        result["alerts"] = firing

        # Dashboards.
        bd = {p: json.loads(rename(git_show(a.before, p), brecs)) for p in DASHBOARDS}
        ad = {p: json.load(open(os.path.join(ROOT, p), encoding="utf-8")) for p in DASHBOARDS}
        result["dashboards"] = {}
        live = min(window + a.warmup, 3600)
        for side, docs in (("before", bd), ("after", ad)):
            for p, doc in docs.items():
                key = f"{side} {os.path.basename(p)}"
                rows = []
                one = room.instance(0) if "node" in os.path.basename(p) else ".*"
                for where, expr, instant in dashboard_exprs(doc):
                    e = substitute(expr, live, one)
                    rows.append({"where": where, "expr": e, **time_query(base, e, live, instant)})
                result["dashboards"][key] = rows
                log(f"{key}: {len(rows)} queries timed")
        result["live_window_s"] = live
        srv.shutdown()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    path = os.path.join(OUT, time.strftime("rules-%Y%m%d-%H%M%S.json"))
    json.dump(result, open(path, "w"), indent=1)
    report(result)
    log(f"raw results: {path}")


def report(r):
    a = r["args"]
    print(f"## Rule evaluation at {a['agents']} agents\n")
    print(f"{r['date']}, {r['prometheus']}, {r['nproc']} CPUs, load {' '.join(r['loadavg_start'])} at start, "
          f"{' '.join(r.get('loadavg_end', []))} at end; {r['series_per_agent']:.0f} series per agent, "
          f"{r.get('head_series') or 0:,} head series; history: {a['history']} of "
          f"{', '.join(r.get('backfilled', ['nothing']))}; before = {a['before']} ({r['before_rev']}), "
          f"after = work tree at {r['git']}{' (uncommitted changes)' if r['dirty'] else ''}.\n")
    groups = r["groups"]
    names = sorted({g[len(PREFIX):] if g.startswith(PREFIX) else g for g in groups})
    print("| group | before median ms | before p90 | before max | after median ms | after p90 | after max "
          "| series out before | after | missed before | after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tb = ta = 0.0
    for n in names:
        b, f = groups.get(PREFIX + n, {}), groups.get(n, {})
        tb += b.get("median") or 0
        ta += f.get("median") or 0
        print(f"| {n} | {ms(b.get('median'))} | {ms(b.get('p90'))} | {ms(b.get('max'))} | {ms(f.get('median'))} "
              f"| {ms(f.get('p90'))} | {ms(f.get('max'))} | {b.get('samples') or 0:.0f} | {f.get('samples') or 0:.0f} "
              f"| {b.get('missed') or 0:.0f} | {f.get('missed') or 0:.0f} |")
    print(f"| **all groups** | **{ms(tb)}** | | | **{ms(ta)}** | | | | | | |\n")
    n_evals = min((g["n"] for g in groups.values()), default=0)
    print(f"{n_evals}+ evaluations per group over {a['measure']} s. "
          "Cross-check, avg_over_time(prometheus_rule_group_last_duration_seconds) ms: "
          + ", ".join(f"{g} {ms(v.get('avg_last_duration'))}" for g, v in sorted(groups.items())) + "\n")
    rules = sorted(r["rules"].items(), key=lambda kv: -(kv[1].get("median") or 0))[:12]
    print("| costliest rules (median ms) | |\n|---|---:|")
    for k, v in rules:
        print(f"| {k} | {ms(v.get('median'))} |")
    print()
    print("Alerts firing or pending, before / after: "
          f"{json.dumps(r['alerts']['before'], sort_keys=True)} / {json.dumps(r['alerts']['after'], sort_keys=True)}\n")
    for key, rows in r["dashboards"].items():
        inst = [x["instant"]["seconds"] for x in rows if x["instant"]["seconds"] is not None]
        rng = [x["range"]["seconds"] for x in rows if "range" in x and x["range"]["seconds"] is not None]
        errs = [x for x in rows if x["instant"]["error"] or ("range" in x and x["range"]["error"])]
        slow = sorted(rows, key=lambda x: -max(x["instant"]["seconds"] or 0,
                                               (x.get("range") or {}).get("seconds") or 0))[:3]
        print(f"**{key}**: {len(rows)} queries; instant: total {ms(sum(inst))} ms, max {ms(max(inst, default=0))} ms; "
              f"range ({r['live_window_s']:.0f} s at 15 s): total {ms(sum(rng))} ms, max {ms(max(rng, default=0))} ms"
              f"{'; ERRORS: ' + str(len(errs)) if errs else ''}. Slowest: "
              + "; ".join(f"`{x['where']}` {ms(x['instant']['seconds'])} / {ms((x.get('range') or {}).get('seconds'))} ms"
                          f" ({x['instant']['series']} series)" for x in slow) + "\n")


if __name__ == "__main__":
    main()
