#!/usr/bin/env bash
# Checks coolmesh's observability assets: Prometheus rules and their unit
# tests, the example Alertmanager configuration, and the Grafana dashboards.
#
# The rule files and dashboards are generated from mixin/; the first check
# is that they are up to date (.ci/mixin.sh).
#
# Needs promtool and amtool on PATH (Debian: apt-get install prometheus
# prometheus-alertmanager), jsonnet (Debian: jsonnet) and python3 with PyYAML
# (Debian: python3-yaml).
# Usage: .ci/check-observability.sh        (from anywhere in the repository)
# Ends with "observability: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RULE_FILES=(alerts/coolmesh.rules.yml alerts/coolmesh.recording.yml)
TEST_FILES=(alerts/tests/*.yml)
AM_CONFIG=alerts/alertmanager.example.yml
DASHBOARDS=(dashboards/coolmesh-room.json dashboards/coolmesh-node.json)
PROVISIONING=dashboards/provisioning.yml
CONTRACT=docs/metrics.md

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
failed_names=()

# check NAME FUNCTION: runs FUNCTION, shows its output indented, counts it.
# Inside FUNCTION `set -e` does not apply (it runs as an `if` condition), so
# every step ends with `|| return 1`.
check() {
  local name="$1" fn="$2"
  echo "==> ${name}"
  if "$fn" >"$tmp/out" 2>&1; then
    sed 's/^/    /' "$tmp/out"
    echo "    ok"
    passed=$((passed + 1))
  else
    sed 's/^/    /' "$tmp/out"
    echo "    FAILED: ${name}"
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
}

PY=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' >/dev/null 2>&1; then
    PY="$candidate"
    break
  fi
done

check_tools() {
  local missing=0
  for tool in promtool amtool jsonnet; do
    if command -v "$tool" >/dev/null 2>&1; then
      echo "$tool: $("$tool" --version 2>&1 | head -n1)"
    else
      echo "$tool not found on PATH (Debian: apt-get install -y prometheus prometheus-alertmanager jsonnet)"
      missing=1
    fi
  done
  if [ -z "$PY" ]; then
    echo "python3 with PyYAML not found (Debian: apt-get install -y python3-yaml)"
    missing=1
  fi
  return "$missing"
}

check_generated() {
  bash .ci/mixin.sh || return 1
}

check_rules() {
  promtool check rules --lint=all --lint-fatal "${RULE_FILES[@]}" || return 1
}

check_rule_tests() {
  promtool test rules "${TEST_FILES[@]}" || return 1
}

# route_test RECEIVER LABEL=VALUE...: the alert must be routed to RECEIVER.
route_test() {
  local want="$1" got
  shift
  got="$(amtool config routes test --config.file="$AM_CONFIG" --verify.receivers="$want" "$@" 2>&1)" || {
    echo "$*: routed to '${got//$'\n'/ }', expected $want"
    return 1
  }
  echo "$* -> $want"
}

check_alertmanager() {
  amtool check-config "$AM_CONFIG" || return 1
  # Critical alerts go to the pager, warnings and info (and anything else)
  # to chat, the watchdog to the dead man's switch.
  route_test pager severity=critical alertname=CoolmeshPowerLost coolmesh_cluster=room-1 || return 1
  route_test pager severity=critical alertname=CoolmeshShutdownPending coolmesh_cluster=room-1 instance=a:9876 || return 1
  route_test chat severity=warning alertname=CoolmeshAgentDown instance=a:9876 || return 1
  route_test chat severity=info alertname=CoolmeshShutdownDryRun coolmesh_cluster=room-1 instance=a:9876 || return 1
  route_test deadman severity=none alertname=CoolmeshWatchdog job=coolmesh || return 1
  route_test chat alertname=SomethingElse || return 1
  "$PY" - "$AM_CONFIG" <<'PY' || return 1
import re, sys, yaml

doc = yaml.safe_load(open(sys.argv[1]))
errors = []

def seconds(d):
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in re.findall(r"(\d+)([smhd])", d))

def matches(route, labels):
    for m in route.get("matchers") or []:
        k, op, v = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', m).groups()
        got = labels.get(k, "")
        ok = {"=": got == v, "!=": got != v, "=~": re.fullmatch(v, got) is not None,
              "!~": re.fullmatch(v, got) is None}[op]
        if not ok:
            return False
    return True

def route_for(labels):
    # First matching child wins (no `continue` in this file); settings inherit.
    route, settings = doc["route"], dict(doc["route"])
    while True:
        child = next((r for r in route.get("routes") or [] if matches(r, labels)), None)
        if child is None:
            return settings
        settings.update({k: v for k, v in child.items() if k != "routes"})
        route = child

# Grouping: one notification per alert and room, whatever the route.
for name in ("CoolmeshShutdownPending", "CoolmeshAgentDown", "CoolmeshPowerLost"):
    got = route_for({"alertname": name, "severity": "critical", "coolmesh_cluster": "room-1", "instance": "a:9876"})
    if sorted(got.get("group_by") or []) != ["alertname", "coolmesh_cluster"]:
        errors.append(f"{name}: group_by {got.get('group_by')}, want [alertname, coolmesh_cluster]")
# Pages that stay firing while servers are off page once a day at most.
for name in ("CoolmeshPowerLost", "CoolmeshCoolingFailure", "CoolmeshAgentsDown",
             "CoolmeshShutdownExecuted", "CoolmeshShutdownUnconfirmed"):
    got = route_for({"alertname": name, "severity": "critical", "coolmesh_cluster": "room-1"})
    if got.get("receiver") != "pager" or seconds(got.get("repeat_interval", "0s")) < 86400:
        errors.append(f"{name}: routed to {got.get('receiver')} with repeat_interval {got.get('repeat_interval')}, want pager and >= 24h")
    else:
        print(f"{name} -> pager, repeat_interval {got['repeat_interval']}")
# A server that shut itself down is reported by CoolmeshAgentDown after an
# hour (the rule waits); the shutdown pages, which may fire for a day, must not
# inhibit it for that day.
def matcher_hits(matchers, labels):
    return matches({"matchers": matchers}, labels)
for source in ("CoolmeshShutdownExecuted", "CoolmeshShutdownUnconfirmed"):
    if any(matcher_hits(rule.get("source_matchers"), {"alertname": source, "severity": "critical"})
           and matcher_hits(rule.get("target_matchers"), {"alertname": "CoolmeshAgentDown", "severity": "warning"})
           for rule in doc.get("inhibit_rules") or []):
        errors.append(f"{source} inhibits CoolmeshAgentDown (for as long as it fires, up to a day)")
    else:
        print(f"{source} does not inhibit CoolmeshAgentDown")
for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
PY
  # The notification template lists every instance of a group.
  local out
  out=$(amtool template render --template.glob=alerts/coolmesh.tmpl --template.data=alerts/tests/notification.json \
    --template.text='{{ template "coolmesh.title" . }}|{{ template "coolmesh.instances" . }}' 2>&1) || { echo "$out"; return 1; }
  echo "template: ${out//$'\n'/ / }"
  [ "$out" = $'[FIRING:2] CoolmeshShutdownPending room-1: A coolmesh agent will shut its server down.|firing: a:9876 (a)\nfiring: b:9876 (b)\nresolved: c:9876 (c)' ] || {
    echo "coolmesh.tmpl rendered something else"
    return 1
  }
}

# Structure of the alert rules: labels, annotations, runbooks, tests, and that
# rules only use metrics from the contract.
check_rule_lint() {
  "$PY" - "${RULE_FILES[@]}" <<'PY' || return 1
import glob, os, re, sys, yaml

rule_files = sys.argv[1:]
errors = []

def slugs(markdown):
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            s = m.group(1).strip().lower()
            s = re.sub(r"[^\w\- ]", "", s).replace(" ", "-")
            out.add(s)
    out.update(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    return out

readme = open("alerts/README.md").read() if os.path.exists("alerts/README.md") else ""
anchors = slugs(readme)
if not readme:
    errors.append("alerts/README.md is missing")

# What the unit tests cover.
fired, quiet, instance_scoped, tested_exprs = set(), set(), {}, []
for path in sorted(glob.glob("alerts/tests/*.yml")):
    doc = yaml.safe_load(open(path))
    for group in doc.get("tests", []):
        for t in group.get("alert_rule_test", []) or []:
            name = t["alertname"]
            exp = t.get("exp_alerts") or []
            if exp:
                fired.add(name)
                for a in exp:
                    if "instance" in (a.get("exp_labels") or {}):
                        instance_scoped[name] = True
                    else:
                        instance_scoped.setdefault(name, False)
            else:
                quiet.add(name)
        for t in group.get("promql_expr_test", []) or []:
            tested_exprs.append(t["expr"])

contract = None
if os.path.exists("docs/metrics.md"):
    contract = set(re.findall(r"^\|\s*`(coolmesh_[a-z0-9_]+)`", open("docs/metrics.md").read(), re.M))
else:
    print("note: docs/metrics.md not found, metric names not checked against the contract")

def without_labels(promql):
    """PromQL without strings, label lists (by, on, ...) and matcher names:
    what is left of coolmesh_* are metric names (labels such as
    coolmesh_cluster are not)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r"\1 ()", bare)
    return re.sub(r"[A-Za-z_]\w*\s*(=~|!~|!=|=)\s*\"\"", "", bare)

def metric_names(expr):
    return set(re.findall(r"(?<![\w:])(coolmesh_[a-z0-9_]+)(?![\w:])", without_labels(expr)))

alerts, records = [], []
for path in rule_files:
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            (alerts if "alert" in rule else records).append((path, rule))

for path, rule in alerts + records:
    if contract is not None:
        for name in metric_names(rule["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in contract and base not in contract:
                errors.append(f"{path}: {rule.get('alert') or rule.get('record')}: {name} is not in docs/metrics.md")

names = set()
for path, rule in alerts:
    name = rule["alert"]
    names.add(name)
    where = f"{path}: {name}"
    if not re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))):
        errors.append(f"{where}: missing or malformed 'for'")
    severity = (rule.get("labels") or {}).get("severity")
    # "none": the watchdog only, which always fires (a dead man's switch).
    watchdog = name == "CoolmeshWatchdog"
    if (severity not in ("critical", "warning", "info") or watchdog) and not (watchdog and severity == "none"):
        errors.append(f"{where}: label severity must be critical, warning or info (none for CoolmeshWatchdog only)")
    ann = rule.get("annotations") or {}
    if not ann.get("summary"):
        errors.append(f"{where}: missing summary")
    desc = ann.get("description", "")
    if "$value" not in desc:
        errors.append(f"{where}: description does not show {{{{ $value }}}}")
    scope = "instance" if instance_scoped.get(name, True) else "coolmesh_cluster"
    if not watchdog and f"$labels.{scope}" not in desc:
        errors.append(f"{where}: description does not name {{{{ $labels.{scope} }}}}")
    # Absolute (mixin: runbookURLPattern), to the alert's section.
    url = ann.get("runbook_url") or ""
    if not re.fullmatch(rf"https?://[^\s#]+/alerts/README\.md#{name.lower()}", url):
        errors.append(f"{where}: runbook_url must be an absolute URL ending in alerts/README.md#{name.lower()}, not {url!r}")
    if name.lower() not in anchors:
        errors.append(f"{where}: alerts/README.md has no section '{name}'")
    if name not in fired:
        errors.append(f"{where}: no unit test where it fires")
    if name not in quiet:
        errors.append(f"{where}: no unit test where it stays quiet (exp_alerts: [])")

for path, rule in records:
    name = rule["record"]
    if not re.fullmatch(r"[a-z]+:coolmesh_[a-z0-9_]+:[a-z0-9_]+", name):
        errors.append(f"{path}: {name}: recording rules are named level:coolmesh_metric:operations")
    if not any(re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", e) for e in tested_exprs):
        errors.append(f"{path}: {name}: no promql_expr_test")

for e in errors:
    print("error:", e)
print(f"{len(alerts)} alert rules ({len(names)} alerts), {len(records)} recording rules checked")
sys.exit(1 if errors else 0)
PY
}

# Dashboards: JSON, datasource variable, template variables, units, no
# hard-coded datasource, and every PromQL expression written into a rule file
# for promtool to parse.
check_dashboards() {
  local rc=0
  rm -f "$tmp/dashboard-exprs.yml"
  "$PY" - "$tmp/dashboard-exprs.yml" "${RULE_FILES[@]}" -- "${DASHBOARDS[@]}" <<'PY' || rc=1
import json, os, re, sys, yaml

args = sys.argv[1:]
out_path = args[0]
sep = args.index("--")
rule_files, dashboards = args[1:sep], args[sep + 1:]
errors = []

records = set()
for path in rule_files:
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                records.add(rule["record"])
contract = None
if os.path.exists("docs/metrics.md"):
    contract = set(re.findall(r"^\|\s*`(coolmesh_[a-z0-9_]+)`", open("docs/metrics.md").read(), re.M))

DS_REFS = ("${datasource}", "$datasource")
VARS = ("job", "cluster", "instance")
var_re = re.compile(r"\$\{?(%s)(?::[a-z]+)?\}?" % "|".join(VARS))

def to_promql(expr, where):
    """Checks template variable use, then substitutes the variables."""
    outside_regex = re.sub(r'[=!]~\s*"(?:[^"\\]|\\.)*"', "", expr)
    if var_re.search(outside_regex):
        errors.append(f"{where}: $job/$cluster/$instance used outside a =~ or !~ matcher: {expr}")
    e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "1m", expr)
    e = var_re.sub(".*", e)
    left = re.search(r"\$\{?[A-Za-z_]\w*", e)
    if left:
        errors.append(f"{where}: unknown template variable {left.group(0)}: {expr}")
    return e

def variable_promql(query):
    """The PromQL inside a Grafana Prometheus variable query, or None."""
    q = query.get("query", "") if isinstance(query, dict) else (query or "")
    q = q.strip()
    m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_]\w*\s*\)", q, re.S)
    if m:
        return m.group(1)
    if re.fullmatch(r"label_values\(\s*[A-Za-z_]\w*\s*\)", q) or q.startswith(("label_names(", "metrics(")):
        return None
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return m.group(1)
    return q or None

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

groups = []
n_exprs = 0
for path in dashboards:
    try:
        d = json.load(open(path))
    except (OSError, ValueError) as e:
        errors.append(f"{path}: not valid JSON: {e}")
        continue
    name = os.path.basename(path)
    for key in ("uid", "title"):
        if not d.get(key):
            errors.append(f"{name}: {key} not set")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 39:
        errors.append(f"{name}: schemaVersion must be 39 or newer")

    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append(f"{name}: needs a variable 'datasource' of type datasource (query prometheus)")
    for v in VARS:
        if v not in variables:
            errors.append(f"{name}: template variable {v} missing")

    # No datasource may be referenced other than through ${datasource}.
    for node, where in walk(d, []):
        if "datasource" not in node:
            continue
        ref = node["datasource"]
        uid = ref.get("uid") if isinstance(ref, dict) else ref
        if uid not in DS_REFS:
            errors.append(f"{name}: hard-coded datasource {ref!r} at {'/'.join(map(str, where))}")

    ids = set()
    for p in panels(d.get("panels")):
        title = p.get("title", "?")
        where = f"{name}: panel {p.get('id')} '{title}'"
        if p.get("id") in ids:
            errors.append(f"{where}: duplicate panel id")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        if not ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit"):
            errors.append(f"{where}: fieldConfig.defaults.unit not set")
        if (p.get("datasource") or {}).get("uid") not in DS_REFS:
            errors.append(f"{where}: panel datasource must be ${{datasource}}")
        if not p.get("targets"):
            errors.append(f"{where}: no targets")
        for t in p.get("targets") or []:
            if (t.get("datasource") or {}).get("uid") not in DS_REFS:
                errors.append(f"{where}: target {t.get('refId')} datasource must be ${{datasource}}")

    rules = []
    def add(expr, where, label):
        e = to_promql(expr, where)
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
        for rec in re.findall(r"(?<![\w:])([A-Za-z_]\w*:[\w:]*)", bare):
            if rec not in records:
                errors.append(f"{where}: recording rule {rec} is not defined in {', '.join(rule_files)}")
        if contract is not None:
            bare_metrics = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r"\1 ()", bare)
            bare_metrics = re.sub(r"[A-Za-z_]\w*\s*(=~|!~|!=|=)\s*\"\"", "", bare_metrics)
            for m in set(re.findall(r"(?<![\w:])(coolmesh_[a-z0-9_]+)(?![\w:])", bare_metrics)):
                if m not in contract and re.sub(r"_(bucket|sum|count)$", "", m) not in contract:
                    errors.append(f"{where}: {m} is not in docs/metrics.md")
        rules.append({"record": "dashboard_check:" + re.sub(r"\W", "_", f"{d.get('uid', name)}_{label}"),
                      "expr": e})

    seen = set()
    for p in panels(d.get("panels")):
        for t in p.get("targets") or []:
            if isinstance(t.get("expr"), str):
                seen.add(id(t))
                add(t["expr"], f"{name}: panel {p.get('id')} '{p.get('title')}' target {t.get('refId')}",
                    f"panel_{p.get('id')}_{t.get('refId')}")
    for i, a in enumerate(d.get("annotations", {}).get("list", [])):
        if isinstance(a.get("expr"), str):
            seen.add(id(a))
            add(a["expr"], f"{name}: annotation '{a.get('name')}'", f"annotation_{i}")
    for node, where in walk(d, []):
        if isinstance(node.get("expr"), str) and id(node) not in seen:
            add(node["expr"], f"{name}: {'/'.join(map(str, where))}", "_".join(map(str, where)))
    for v in variables.values():
        if v.get("type") == "query":
            q = variable_promql(v.get("query"))
            if q:
                add(q, f"{name}: variable {v['name']}", f"var_{v['name']}")
    n_exprs += len(rules)
    groups.append({"name": d.get("uid", name), "rules": rules})

# JSON is valid YAML, so the rule file is written as JSON.
with open(out_path, "w") as f:
    json.dump({"groups": groups}, f, indent=2)
for e in errors:
    print("error:", e)
print(f"{len(dashboards)} dashboards, {n_exprs} PromQL expressions extracted to {os.path.basename(out_path)}")
sys.exit(1 if errors else 0)
PY
  if [ -s "$tmp/dashboard-exprs.yml" ]; then
    promtool check rules "$tmp/dashboard-exprs.yml" || rc=1
  else
    rc=1
  fi
  return "$rc"
}

check_provisioning() {
  "$PY" - "$PROVISIONING" <<'PY' || return 1
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
providers = doc.get("providers") or []
ok = doc.get("apiVersion") == 1 and providers and all((p.get("options") or {}).get("path") for p in providers)
print(f"{sys.argv[1]}: {len(providers)} provider(s)" if ok else f"{sys.argv[1]}: needs apiVersion 1 and providers with options.path")
sys.exit(0 if ok else 1)
PY
}

check "tools" check_tools
if [ -z "$PY" ] || ! command -v promtool >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1; then
  echo "observability: ${passed} passed, ${failed} failed"
  exit 1
fi
check "generated files up to date with mixin/ (.ci/mixin.sh)" check_generated
check "promtool check rules" check_rules
check "promtool test rules" check_rule_tests
check "alert rule lint (labels, annotations, runbooks, tests, metric contract)" check_rule_lint
check "amtool check-config and routing" check_alertmanager
check "dashboards (JSON, variables, units, datasources, PromQL)" check_dashboards
check "dashboard provisioning example" check_provisioning

if [ "$failed" -gt 0 ]; then
  printf 'failed: %s\n' "${failed_names[@]}"
fi
echo "observability: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
