#!/usr/bin/env python3
"""Helpers for the end-to-end alert test (.ci/e2e-alerts.sh).

The shell script owns the processes; this file writes the configuration,
changes the agents' inputs and asks Prometheus, Alertmanager and the webhook
receiver what they saw. Everything talks to 127.0.0.1 only.

Subcommands (all take the test's temp dir first):
  setup TMP REPO [--room]  allocate loopback ports, write every config, print nothing
                           (--room: the room-wide power loss, agents not in dry-run)
  readings TMP AGENT C     rewrite AGENT's readings file with the inlet at C degrees
  wait-alert TMP ...       wait until an alert fires in Prometheus or reaches the webhook
  wait-query TMP EXPR ...  wait until a PromQL expression returns enough series
  wait-am TMP NAME ...     wait until Alertmanager holds an alert back, inhibited by another
  hold TMP SECONDS ...     for SECONDS, an alert keeps firing and no notification says resolved
  pages TMP --since T ...  what reached the webhook since T: the pages, and no early "resolved"
  dashboards TMP REPO      run every dashboard expression against Prometheus
  listeners NAME=PID...    every socket these processes listen on is on loopback
  diag TMP                 print alerts, targets and webhook deliveries (for failures)
"""
import argparse
import glob
import json
import os
import random
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

AGENTS = ["a", "b", "c"]
# The agent that is heated; b and c only see the power loss.
HOT = "a"
# The shortened `for:` of every alert rule in the test copy.
FOR = "2s"
CRITICAL_C = 60.0
MAX_C = 45.0
NORMAL_C = 25.0


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- setup


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n):
    """n consecutive free TCP ports on 127.0.0.1, for processes that are
    told their port in a config file and bind it later. Below the ephemeral
    range: a port picked with bind(0) comes from that range, where any
    outgoing connection (an agent's probe, a scrape) or port-0 listener can
    take it before its process binds it (or while the power target is
    switched off); below it, only a program that names the port can. The
    window is spread by process id and time, so parallel runs differ."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    lo = 10000 if low - n > 11000 else 1024
    rnd = random.Random(os.getpid() * 1000003 + time.time_ns())
    for _ in range(500):
        start = rnd.randrange(lo, low - n)
        ports = list(range(start, start + n))
        if all(port_free(p) for p in ports):
            return ports
    sys.exit(f"no {n} free ports below the ephemeral range ({low})")


def toml_str(s):
    return json.dumps(str(s))


def toml_list(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def readings_json(celsius):
    return json.dumps([{
        "chip": "inlet", "sensor": "t", "label": "Inlet", "celsius": celsius,
        "max_celsius": MAX_C, "critical_celsius": CRITICAL_C,
    }]) + "\n"


# The room-wide power loss (setup --room): the agents are not in dry-run and
# run this command at their deadline; it appends a line to the "powered-off"
# file of the agent, which the test then kills (the server powers off).
ROOM_GRACE = "20s"


def shutdown_settings(d, room):
    if room:
        marker = os.path.join(d, "powered-off")
        return f"""# Not in dry-run: at the deadline the agent runs this command (it only
# appends a line to a file: never a real power-off), then the test kills
# the agent, as a server that powers off would.
grace = {toml_str(ROOM_GRACE)}
recovery_probes = 2
command = {toml_list(['sh', '-c', 'date +%s.%N >> "$1"', 'sh', marker])}"""
    return f"""# Long enough that CoolmeshShutdownPending (for: {FOR} in the test) is seen
# well before any power-triggered shutdown.
grace = "60s"
recovery_probes = 2
# Never a real power-off, even if dry-run broke (the agents run with
# --dry-run): this only leaves a file behind, which the test looks for.
command = {toml_list(['touch', os.path.join(d, 'REAL-SHUTDOWN-RAN')])}
dry_run_marker = {toml_str(os.path.join(d, 'dry-run-shutdowns'))}"""


def agent_config(tmp, name, ports, env, room=False):
    d = os.path.join(tmp, f"agent-{name}")
    peers = [f"/ip4/127.0.0.1/tcp/{ports[f'p2p_{o}']}" for o in AGENTS if o != name]
    return f"""# Generated by alerts/e2e/e2e.py for the end-to-end test.
[node]
name = {toml_str('e2e-' + name)}
state_dir = {toml_str(os.path.join(d, 'state'))}

[http]
listen_address = {toml_str('127.0.0.1:%d' % ports['http_' + name])}
token_file = {toml_str(env['TOKEN_FILE'])}

[sensors]
sources = ["file"]
file = {toml_str(os.path.join(d, 'readings.json'))}
interval = "1s"
timeout = "500ms"
trend_window = "30s"

[power]
targets = [{toml_str('tcp://127.0.0.1:%d' % ports['target'])}]
policy = "any"
interval = "1s"
timeout = "500ms"

[shutdown]
{shutdown_settings(d, room)}

[overheat]
# The heated agent goes pre_fail 2 s after reaching critical and reaches its
# (dry-run) shutdown 15 s later.
sustain = "2s"
grace = "15s"

[cluster]
name = "e2e"
listen = [{toml_str('/ip4/127.0.0.1/tcp/%d' % ports['p2p_' + name])}]
peers = {toml_list(peers)}
mdns = false
psk_file = {toml_str(env['PSK_FILE'])}

[log]
format = "json"
"""


def shorten_for(doc):
    n = 0
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
                n += 1
    return n


class LiteralDumper(yaml.SafeDumper):
    pass


def _str_repr(dumper, s):
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


LiteralDumper.add_representer(str, _str_repr)


def test_rules(repo, out_dir):
    """Copies of the repository's rule files; alert `for:` durations become
    FOR, everything else (expressions, labels, annotations) stays as is."""
    out = []
    for path in sorted(glob.glob(os.path.join(repo, "alerts", "*.yml"))):
        doc = yaml.safe_load(open(path, encoding="utf-8"))
        if not isinstance(doc, dict) or "groups" not in doc:
            continue  # e.g. alertmanager.example.yml
        original = [(r.get("alert") or r.get("record"), r["expr"]) for g in doc["groups"] for r in g["rules"]]
        shorten_for(doc)
        dst = os.path.join(out_dir, os.path.basename(path))
        write(dst, f"# Test copy of {os.path.relpath(path, repo)} with every `for:` set to {FOR}.\n"
              + yaml.dump(doc, Dumper=LiteralDumper, sort_keys=False, width=1000))
        again = yaml.safe_load(open(dst, encoding="utf-8"))
        copied = [(r.get("alert") or r.get("record"), r["expr"]) for g in again["groups"] for r in g["rules"]]
        if copied != original:
            sys.exit(f"{dst}: expressions differ from {path} after the transform")
        out.append(dst)
    if not out:
        sys.exit(f"no rule files found in {repo}/alerts")
    return out


def alertmanager_config(repo, webhook_port, room=False):
    """alerts/alertmanager.example.yml with its webhook URLs pointed at the
    test's receiver (same paths) and its timers shortened; routes, receivers
    and inhibitions stay as they are. With `room`, the timers stay too
    (group_wait, group_interval, repeat_interval of production): what reaches
    the webhook is what a pager would get."""
    doc = yaml.safe_load(open(os.path.join(repo, "alerts", "alertmanager.example.yml"), encoding="utf-8"))

    def routes(r):
        yield r
        for sub in r.get("routes") or []:
            yield from routes(sub)

    for r in routes(doc["route"]) if not room else ():
        for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1m")):
            if key in r or r is doc["route"]:
                r[key] = value
    for recv in doc.get("receivers") or []:
        for wh in recv.get("webhook_configs") or []:
            path = urllib.parse.urlsplit(wh["url"]).path or "/"
            wh["url"] = f"http://127.0.0.1:{webhook_port}{path}"
    what = "production timers" if room else "short timers"
    return f"# Test copy of alerts/alertmanager.example.yml: local webhook, {what}.\n" + \
        yaml.safe_dump(doc, sort_keys=False, width=1000)


def cmd_setup(a):
    tmp, repo = os.path.abspath(a.tmp), os.path.abspath(a.repo)
    names = ["prom", "am", "webhook", "target"] + [f"http_{n}" for n in AGENTS] + [f"p2p_{n}" for n in AGENTS]
    ports = dict(zip(names, free_ports(len(names))))
    env = {
        "PROM_PORT": ports["prom"],
        "AM_PORT": ports["am"],
        "WEBHOOK_PORT": ports["webhook"],
        "TARGET_PORT": ports["target"],
        "PROM_URL": f"http://127.0.0.1:{ports['prom']}",
        "AM_URL": f"http://127.0.0.1:{ports['am']}",
        "WEBHOOK_FILE": os.path.join(tmp, "webhook.jsonl"),
        "TOKEN_FILE": os.path.join(tmp, "token"),
        "PSK_FILE": os.path.join(tmp, "swarm.key"),
        "POWER_TARGET": f"tcp://127.0.0.1:{ports['target']}",
        "AGENTS": " ".join(AGENTS),
        "HOT": HOT,
        "ROOM": "1" if a.room else "0",
    }
    for n in AGENTS:
        env[f"AGENT_{n}_ADDR"] = f"127.0.0.1:{ports['http_' + n]}"
        env[f"AGENT_{n}_DIR"] = os.path.join(tmp, f"agent-{n}")
    write(env["TOKEN_FILE"], os.urandom(32).hex() + "\n")
    os.chmod(env["TOKEN_FILE"], 0o600)
    # The cluster refuses to start without a pre-shared key (the format is
    # the one `coolmesh keygen --psk` writes).
    write(env["PSK_FILE"], "/key/swarm/psk/1.0.0/\n/base16/\n" + os.urandom(32).hex() + "\n")
    os.chmod(env["PSK_FILE"], 0o600)
    for n in AGENTS:
        d = env[f"AGENT_{n}_DIR"]
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        write(os.path.join(d, "coolmesh.toml"), agent_config(tmp, n, ports, env, a.room))
        write(os.path.join(d, "readings.json"), readings_json(NORMAL_C))

    rule_files = test_rules(repo, os.path.join(tmp, "rules"))
    prom = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "800ms", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['am']}"]}]}]},
        "scrape_configs": [{
            # Matches the rules' job=~"coolmesh.*".
            "job_name": "coolmesh",
            "static_configs": [{"targets": [env[f"AGENT_{n}_ADDR"] for n in AGENTS]}],
        }],
    }
    write(os.path.join(tmp, "prometheus.yml"), yaml.safe_dump(prom, sort_keys=False))
    write(os.path.join(tmp, "alertmanager.yml"), alertmanager_config(repo, ports["webhook"], a.room))
    write(os.path.join(tmp, "env.sh"), "".join(f"{k}={json.dumps(str(v))}\n" for k, v in env.items()))
    write(os.path.join(tmp, "env.json"), json.dumps(env))


def load_env(tmp):
    return json.load(open(os.path.join(tmp, "env.json"), encoding="utf-8"))


def cmd_readings(a):
    env = load_env(a.tmp)
    write(os.path.join(env[f"AGENT_{a.agent}_DIR"], "readings.json"), readings_json(a.celsius))


# ---------------------------------------------------------------- queries


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def prom_query(env, expr):
    """(result type, result list) of an instant query; raises on errors."""
    url = env["PROM_URL"] + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        doc = http_json(url)
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        raise RuntimeError(f"HTTP {e.code}: {body}") from None
    if doc.get("status") != "success":
        raise RuntimeError(f"query failed: {doc}")
    data = doc["data"]
    result = data["result"]
    if data["resultType"] in ("scalar", "string"):
        result = [{"metric": {}, "value": result}]
    return data["resultType"], result


def prom_alerts(env):
    return http_json(env["PROM_URL"] + "/api/v1/alerts")["data"]["alerts"]


def webhook_alerts(env):
    """(path, alert) for every alert of every delivery so far."""
    out = []
    try:
        lines = open(env["WEBHOOK_FILE"], encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        for al in (rec.get("body") or {}).get("alerts") or []:
            out.append((rec.get("path"), al))
    return out


def parse_matchers(items):
    out = {}
    for m in items or []:
        k, _, v = m.partition("=")
        out[k] = v
    return out


def matches(labels, want):
    return all(labels.get(k) == v for k, v in want.items())


def instance_of(env, value):
    """`@b` stands for agent b's instance label."""
    if value.startswith("@"):
        return env[f"AGENT_{value[1:]}_ADDR"]
    return value


def annotation_problems(alert):
    """What is wrong with the annotations of a delivered alert: every rule
    has a summary, a description and a runbook_url, and a template that
    refers to a missing label renders as "<no value>"."""
    ann = alert.get("annotations") or {}
    out = [f"{k} missing" for k in ("summary", "description", "runbook_url") if not ann.get(k)]
    out += [f"{k} has <no value>" for k, v in ann.items() if "<no value>" in str(v)]
    return out


def cmd_wait_alert(a):
    env = load_env(a.tmp)
    want = {k: instance_of(env, v) for k, v in parse_matchers(a.match).items()}
    want["alertname"] = a.name
    desc = ",".join(f'{k}="{v}"' for k, v in want.items())
    start = time.monotonic()
    last_err = None
    while True:
        try:
            if a.source == "prometheus":
                hits = [x for x in prom_alerts(env) if x.get("state") == "firing" and matches(x["labels"], want)]
            else:
                hits = [al for path, al in webhook_alerts(env)
                        if al.get("status") == a.status and matches(al.get("labels") or {}, want)
                        and (a.path is None or path == a.path)]
                problems = annotation_problems(hits[0]) if hits else []
                if problems:
                    log(f"    webhook: {{{desc}}} arrived with bad annotations: {'; '.join(problems)}")
                    log(f"    annotations: {json.dumps(hits[0].get('annotations'))}")
                    return 1
            if hits:
                log(f"    {a.source}: {{{desc}}} {a.status} after {time.monotonic() - start:.1f}s"
                    + (f" (receiver path {a.path})" if a.path else ""))
                return 0
        except (OSError, ValueError, KeyError) as e:
            last_err = e
        if time.monotonic() - start > a.timeout:
            log(f"    TIMEOUT after {a.timeout:.0f}s: no {a.status} alert {{{desc}}} in {a.source}"
                + (f" at path {a.path}" if a.path else "") + (f" (last error: {last_err})" if last_err else ""))
            return 1
        time.sleep(0.5)


def cmd_wait_query(a):
    env = load_env(a.tmp)
    expr = a.expr
    for n in AGENTS:
        expr = expr.replace("@" + n, env[f"AGENT_{n}_ADDR"])
    start = time.monotonic()
    last = None
    while True:
        try:
            _, res = prom_query(env, expr)
            last = res
            if len(res) >= a.min_series:
                log(f"    {len(res)} series after {time.monotonic() - start:.1f}s: {expr}")
                return 0
        except (OSError, ValueError, RuntimeError) as e:
            last = e
        if time.monotonic() - start > a.timeout:
            log(f"    TIMEOUT after {a.timeout:.0f}s waiting for >= {a.min_series} series of: {expr}")
            log(f"    last result: {last}")
            return 1
        time.sleep(0.5)


# ---------------------------------------------------------------- room event


def am_alerts(env):
    return http_json(env["AM_URL"] + "/api/v2/alerts")


def cmd_wait_am(a):
    """Until Alertmanager holds every alert NAME matching --match (at least
    --min of them) back, inhibited by an active alert named --by: what the
    pager does not get, the operator still finds in Alertmanager."""
    env = load_env(a.tmp)
    want = {k: instance_of(env, v) for k, v in parse_matchers(a.match).items()}
    start = time.monotonic()
    last = None
    while True:
        try:
            alerts = am_alerts(env)
            by = {x["fingerprint"] for x in alerts
                  if x["labels"].get("alertname") == a.by and x["status"]["state"] == "active"}
            hits = [x for x in alerts if matches(x["labels"], want)
                    and re.fullmatch(a.name, x["labels"].get("alertname", ""))]
            held = [x for x in hits if x["status"]["state"] == "suppressed"
                    and by & set(x["status"].get("inhibitedBy") or [])]
            last = [(x["labels"].get("instance", ""), x["status"]["state"]) for x in hits]
            if len(held) >= a.min and len(held) == len(hits):
                log(f"    Alertmanager: {len(held)} {a.name} held back, inhibited by {a.by}: "
                    + ", ".join(sorted(x["labels"].get("instance", "") for x in held))
                    + f" (after {time.monotonic() - start:.1f}s)")
                return 0
        except (OSError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() - start > a.timeout:
            log(f"    TIMEOUT after {a.timeout:.0f}s: want >= {a.min} {a.name} {want} inhibited by {a.by}; "
                f"last seen: {last}")
            return 1
        time.sleep(0.5)


def webhook_records(env, since=0.0, until=None):
    """Every delivery received in [since, until): (received, path, body)."""
    out = []
    try:
        lines = open(env["WEBHOOK_FILE"], encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        t = rec.get("received") or 0.0
        if t >= since and (until is None or t < until):
            out.append((t, rec.get("path"), rec.get("body") or {}))
    return out


def describe(t0, rec):
    t, path, body = rec
    alerts = body.get("alerts") or []
    who = ", ".join(sorted(f"{(x.get('labels') or {}).get('instance') or (x.get('labels') or {}).get('target', '-')}"
                           f"={x.get('status')}" for x in alerts))
    return (f"+{t - t0:5.1f}s {path} {body.get('status')} "
            f"{(body.get('groupLabels') or {}).get('alertname')} [{who}]")


# Receivers whose notifications count (the dead man's switch gets the
# watchdog all the time, and never a resolution).
NOTIFY_PATHS = ("/coolmesh/pager", "/coolmesh/chat")


def early_resolved(recs):
    """Deliveries to the pager or chat with an alert marked resolved."""
    return [r for r in recs if r[1] in NOTIFY_PATHS
            and any(x.get("status") == "resolved" for x in r[2].get("alerts") or [])]


def firing_in_prometheus(env, want):
    return [x for x in prom_alerts(env) if x.get("state") == "firing" and matches(x["labels"], want)]


def cmd_hold(a):
    """For SECONDS: the alert keeps firing in Prometheus, and no
    notification since --since says anything is resolved."""
    env = load_env(a.tmp)
    want = {k: instance_of(env, v) for k, v in parse_matchers(a.match).items()}
    want["alertname"] = a.name
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < a.seconds:
        try:
            if not firing_in_prometheus(env, want):
                log(f"    {a.name} {want} stopped firing in Prometheus after {time.monotonic() - start:.1f}s")
                return 1
        except (OSError, ValueError, KeyError) as e:
            log(f"    Prometheus: {e}")
            return 1
        bad = early_resolved(webhook_records(env, a.since))
        if bad:
            log("    a notification said RESOLVED while power is out:")
            for r in bad:
                log("      " + describe(a.since, r))
            return 1
        n += 1
        time.sleep(1)
    log(f"    {a.name} firing in Prometheus for {a.seconds:.0f}s more ({n} checks), no RESOLVED notification")
    return 0


def cmd_pages(a):
    """What reached the webhook in [--since, --until): every delivery is
    listed; the pager's, in order, must be exactly --expect (alertname=status
    of each notification), and before --resolved-after no pager or chat
    notification may carry a resolved alert."""
    env = load_env(a.tmp)

    def pager_of(recs):
        return [f"{(b.get('groupLabels') or {}).get('alertname')}={b.get('status')}"
                for _, path, b in recs if path == "/coolmesh/pager"]

    # --watch: keep looking for that long, in case something else is on its
    # way (a group held back until the room page resolved flushes at its next
    # group_interval).
    end = time.monotonic() + (a.watch or 0)
    while time.monotonic() < end and pager_of(webhook_records(env, a.since, a.until)) == a.expect:
        time.sleep(1)
    if a.watch:
        log(f"    watched the pager for {a.watch:.0f}s more")
    recs = webhook_records(env, a.since, a.until)
    log(f"    {len(recs)} deliveries since the power loss:")
    for r in recs:
        log("      " + describe(a.since, r))
    pager = pager_of(recs)
    bad = 0
    if pager != a.expect:
        log(f"    the pager got {pager}, want {a.expect}")
        bad += 1
    else:
        log(f"    the pager got exactly {pager}")
    early = early_resolved([r for r in recs if a.resolved_after is None or r[0] < a.resolved_after])
    if early:
        log("    RESOLVED before power was back:")
        for r in early:
            log("      " + describe(a.since, r))
        bad += 1
    elif a.resolved_after is not None:
        log("    no RESOLVED before power was back")
    return 1 if bad else 0



# ---------------------------------------------------------------- dashboards

# Expressions that may legitimately return nothing after the scenario, keyed
# by "<dashboard file>: <where>" as printed below, with the reason. Keep it
# short; everything else must return data.
ALLOWED_EMPTY = {
    # Lists of peers that are not alive: every peer stays alive in the
    # scenario (the room-wide stage, where agents stop, has no dashboard check).
    "coolmesh-room.json: panel 33 'Peers reported not alive' A": "no peer is suspect or dead in the scenario",
    "coolmesh-node.json: panel 39 'Peers this node sees suspect or dead' A": "no peer is suspect or dead in the scenario",
}

VARS = ("job", "cluster", "instance")
VAR_RE = re.compile(r"\$\{?(%s)(?::[a-z]+)?\}?" % "|".join(VARS))


def to_promql(expr):
    """Grafana template variables -> PromQL, as .ci/check-observability.sh does."""
    e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "1m", expr)
    e = VAR_RE.sub(".*", e)
    left = re.search(r"\$\{?[A-Za-z_]\w*", e)
    if left:
        raise ValueError(f"unknown template variable {left.group(0)}")
    return e


def variable_query(query):
    """(PromQL, label) of a Grafana Prometheus variable query, or None."""
    q = (query.get("query", "") if isinstance(query, dict) else (query or "")).strip()
    m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]\w*)\s*\)", q, re.S)
    if m:
        return m.group(1), m.group(2)
    if re.fullmatch(r"label_values\(\s*[A-Za-z_]\w*\s*\)", q) or q.startswith(("label_names(", "metrics(")):
        return None
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return m.group(1), None
    return (q, None) if q else None


def walk(node, path):
    if isinstance(node, dict):
        yield node, path
        for k, v in node.items():
            yield from walk(v, path + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + [i])


def panels(items):
    for p in items or []:
        yield p
        yield from panels(p.get("panels"))


def dashboard_exprs(path):
    """(where, raw expression, label or None) for every PromQL expression:
    panel targets, annotations, any other `expr`, and variable queries."""
    d = json.load(open(path, encoding="utf-8"))
    out, seen = [], set()
    for p in panels(d.get("panels")):
        for t in p.get("targets") or []:
            if isinstance(t.get("expr"), str):
                seen.add(id(t))
                out.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"], None))
    for a in d.get("annotations", {}).get("list", []):
        if isinstance(a.get("expr"), str):
            seen.add(id(a))
            out.append((f"annotation '{a.get('name')}'", a["expr"], None))
    for node, where in walk(d, []):
        if isinstance(node.get("expr"), str) and id(node) not in seen:
            out.append(("/".join(map(str, where)), node["expr"], None))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = variable_query(v.get("query"))
            if q:
                out.append((f"variable {v['name']}", q[0], q[1]))
    return out


def cmd_dashboards(a):
    env = load_env(a.tmp)
    files = sorted(glob.glob(os.path.join(a.repo, "dashboards", "*.json")))
    if a.file:
        files = [f for f in files if os.path.basename(f) == a.file]
    if not files:
        log("    no dashboards found")
        return 1
    ok = empty = allowed = 0
    for path in files:
        name = os.path.basename(path)
        for where, raw, label in dashboard_exprs(path):
            key = f"{name}: {where}"
            expr = raw
            try:
                expr = to_promql(raw)
                _, res = prom_query(env, expr)
                err = None
            except (ValueError, RuntimeError, OSError) as e:
                res, err = [], str(e)
            values = None
            if label is not None:
                values = sorted({r["metric"].get(label, "") for r in res} - {""})
                have = bool(values)
                detail = f"{label} = {values}"
            else:
                # A series whose value is NaN (0/0, a quantile of nothing)
                # shows as "no data" in Grafana too.
                numbers = [r["value"][1] for r in res if r["value"][1] not in ("NaN", "+Inf", "-Inf")]
                have = bool(numbers)
                detail = f"{len(res)} series" + (f", {len(res) - len(numbers)} NaN/Inf" if len(numbers) < len(res) else "")
                if numbers:
                    detail += f", e.g. {numbers[0]}"
            if err:
                empty += 1
                log(f"    ERROR {key}: {err}\n          {' '.join(expr.split())}")
            elif have:
                ok += 1
                if a.verbose:
                    log(f"    ok    {key}: {detail}")
            elif key in ALLOWED_EMPTY:
                allowed += 1
                log(f"    empty (allowed: {ALLOWED_EMPTY[key]}) {key}")
            else:
                empty += 1
                log(f"    EMPTY {key}: {detail}\n          {' '.join(expr.split())}")
    log(f"    {ok} returned data, {empty} empty or failed, {allowed} allowed empty")
    return 1 if empty else 0


# ---------------------------------------------------------------- loopback


def socket_inodes(pid):
    out = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m:
            out.add(m.group(1))
    return out


def decode_addr(hex_addr):
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    # /proc stores IPv6 as four host-order 32-bit words.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def is_loopback(ip):
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith("::ffff:127.")


def cmd_listeners(a):
    """Every listening TCP socket and every bound UDP socket of the given
    processes must be on a loopback address."""
    by_inode = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = open(f"/proc/net/{proto}", encoding="ascii").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], f[9]
            if proto.startswith("tcp") and state != "0A":  # LISTEN
                continue
            by_inode[inode] = (proto, *decode_addr(local))
    bad = n = 0
    for spec in a.procs:
        name, _, pid = spec.partition("=")
        try:
            inodes = socket_inodes(pid)
        except OSError as e:
            log(f"    {name} (pid {pid}): cannot inspect: {e}")
            bad += 1
            continue
        socks = sorted(by_inode[i] for i in inodes if i in by_inode)
        for proto, ip, port in socks:
            n += 1
            ok = is_loopback(ip)
            bad += not ok
            log(f"    {'ok ' if ok else 'NOT LOOPBACK'} {name}: {proto} {ip}:{port}")
    log(f"    {n} listening sockets, {bad} problems")
    return 1 if bad or n == 0 else 0


# ---------------------------------------------------------------- diagnostics


def cmd_diag(a):
    env = load_env(a.tmp)
    try:
        targets = http_json(env["PROM_URL"] + "/api/v1/targets")["data"]["activeTargets"]
        log("  Prometheus targets:")
        for t in targets:
            log(f"    {t['labels'].get('instance')}: {t['health']} {t.get('lastError') or ''}")
    except (OSError, ValueError, KeyError) as e:
        log(f"  Prometheus targets: {e}")
    try:
        log("  Prometheus alerts:")
        for al in prom_alerts(env):
            labels = {k: v for k, v in al["labels"].items() if k not in ("job", "severity")}
            log(f"    {al['state']:8} {labels} value={al.get('value')}")
    except (OSError, ValueError, KeyError) as e:
        log(f"    {e}")
    try:
        _, res = prom_query(env, 'coolmesh_fsm_state == 1 or coolmesh_power_up or coolmesh_thermal_hottest_celsius')
        log("  agent state seen by Prometheus:")
        for r in sorted(res, key=lambda r: (r["metric"].get("instance", ""), r["metric"].get("__name__", ""))):
            m = r["metric"]
            log(f"    {m.get('instance')} {m.get('__name__')} {m.get('state', '')} = {r['value'][1]}")
    except (OSError, ValueError, RuntimeError) as e:
        log(f"    {e}")
    try:
        ams = http_json(env["AM_URL"] + "/api/v2/alerts")
        log("  Alertmanager alerts:")
        for al in ams:
            log(f"    {al['status']['state']:10} {al['labels'].get('alertname')} {al['labels'].get('instance', '')}"
                f" receivers={[r['name'] for r in al.get('receivers', [])]}")
    except (OSError, ValueError, KeyError) as e:
        log(f"  Alertmanager alerts: {e}")
    hooks = webhook_alerts(env)
    log(f"  webhook deliveries: {len(hooks)} alerts")
    seen = {}
    for path, al in hooks:
        seen[(path, al.get("status"), (al.get("labels") or {}).get("alertname"),
              (al.get("labels") or {}).get("instance", ""))] = True
    for k in seen:
        log(f"    {k[0]} {k[1]} {k[2]} {k[3]}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("tmp")
    s.add_argument("repo")
    s.add_argument("--room", action="store_true", help="the room-wide power loss: no dry-run, production Alertmanager timers")
    s = sub.add_parser("readings")
    s.add_argument("tmp")
    s.add_argument("agent", choices=AGENTS)
    s.add_argument("celsius", type=float)
    s = sub.add_parser("wait-alert")
    s.add_argument("tmp")
    s.add_argument("name")
    s.add_argument("--source", choices=["prometheus", "webhook"], required=True)
    s.add_argument("--match", action="append", help="label=value; value @b means agent b's instance")
    s.add_argument("--path", help="webhook: only deliveries to this receiver path")
    s.add_argument("--status", choices=["firing", "resolved"], default="firing",
                   help="webhook: the alert's status in the delivery (Prometheus: always firing)")
    s.add_argument("--timeout", type=float, default=90)
    s = sub.add_parser("wait-query")
    s.add_argument("tmp")
    s.add_argument("expr", help="PromQL; @a, @b, @c stand for the agents' instance labels")
    s.add_argument("--min-series", type=int, default=1)
    s.add_argument("--timeout", type=float, default=90)
    s = sub.add_parser("wait-am")
    s.add_argument("tmp")
    s.add_argument("name", help="alert name (a regular expression)")
    s.add_argument("--by", required=True, help="the inhibiting alert's name")
    s.add_argument("--match", action="append", help="label=value; value @b means agent b's instance")
    s.add_argument("--min", type=int, default=1)
    s.add_argument("--timeout", type=float, default=90)
    s = sub.add_parser("hold")
    s.add_argument("tmp")
    s.add_argument("seconds", type=float)
    s.add_argument("--name", required=True, help="the alert that must keep firing")
    s.add_argument("--match", action="append", help="label=value")
    s.add_argument("--since", type=float, required=True, help="unix time: notifications from then on")
    s = sub.add_parser("pages")
    s.add_argument("tmp")
    s.add_argument("--since", type=float, required=True, help="unix time of the power loss")
    s.add_argument("--until", type=float, help="unix time: deliveries before it")
    s.add_argument("--resolved-after", type=float, help="unix time power came back: no RESOLVED before")
    s.add_argument("--expect", action="append", default=[], help="alertname=status of each pager notification, in order")
    s.add_argument("--watch", type=float, help="seconds to keep watching the pager while it got exactly --expect")
    s = sub.add_parser("dashboards")
    s.add_argument("tmp")
    s.add_argument("repo")
    s.add_argument("--file", help="only this dashboard (file name)")
    s.add_argument("-v", "--verbose", action="store_true")
    s = sub.add_parser("listeners")
    s.add_argument("procs", nargs="+", help="NAME=PID")
    s = sub.add_parser("diag")
    s.add_argument("tmp")
    a = p.parse_args()
    fn = {
        "setup": cmd_setup, "readings": cmd_readings, "wait-alert": cmd_wait_alert,
        "wait-query": cmd_wait_query, "wait-am": cmd_wait_am, "hold": cmd_hold, "pages": cmd_pages,
        "dashboards": cmd_dashboards, "listeners": cmd_listeners, "diag": cmd_diag,
    }[a.cmd]
    sys.exit(fn(a) or 0)


if __name__ == "__main__":
    main()
