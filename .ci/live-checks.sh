#!/usr/bin/env bash
# Runs the release binary on the fixture tree next to the real node_exporter
# on the same tree, then: `curl /metrics | promtool check metrics`, and every
# temperature/max/critical value must be equal in both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sysfs=agent/tests/fixtures/sysfs
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

cargo build --release --locked -q
./target/release/coolmesh agent --path.sysfs "$sysfs" --web.listen-address 127.0.0.1:19876 \
  --state-dir "$tmp/state" --sensors.interval 1s >"$tmp/agent.log" 2>&1 &
pids+=($!)
prometheus-node-exporter --path.sysfs="$sysfs" --collector.disable-defaults \
  --collector.hwmon --collector.thermal_zone --web.listen-address=127.0.0.1:19100 >"$tmp/ne.log" 2>&1 &
pids+=($!)

for i in $(seq 1 100); do
  curl -sf http://127.0.0.1:19876/-/ready >/dev/null && curl -sf http://127.0.0.1:19100/metrics >/dev/null && break
  sleep 0.1
done
curl -sf http://127.0.0.1:19876/metrics > "$tmp/coolmesh.prom"
curl -sf http://127.0.0.1:19100/metrics > "$tmp/ne.prom"
promtool check metrics < "$tmp/coolmesh.prom"
echo "promtool: coolmesh /metrics clean ($(grep -vc '^#' "$tmp/coolmesh.prom") series)"

python3 - "$tmp/ne.prom" "$tmp/coolmesh.prom" <<'PY'
import re, sys
def parse(path):
    out = []
    for line in open(path):
        m = re.match(r'^(\w+)\{(.*)\} (\S+)$', line.strip())
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out.append((m.group(1), labels, float(m.group(3))))
    return out
ne, cm = parse(sys.argv[1]), parse(sys.argv[2])
pairs = {"node_hwmon_temp_celsius": "coolmesh_temperature_celsius",
         "node_hwmon_temp_max_celsius": "coolmesh_temperature_max_celsius",
         "node_hwmon_temp_crit_celsius": "coolmesh_temperature_critical_celsius"}
checked = bad = 0
for name, l, v in ne:
    if name in pairs:
        ours = [cv for cn, cl, cv in cm if cn == pairs[name] and cl["sensor"] == l["sensor"]
                and (cl["chip"] == l["chip"] or cl["chip"].startswith(l["chip"] + "_"))]
    elif name == "node_thermal_zone_temp":
        ours = [cv for cn, cl, cv in cm if cn == "coolmesh_temperature_celsius"
                and cl["chip"] == "thermal_zone" + l["zone"] and cl["sensor"] == l["type"]]
    else:
        continue
    checked += 1
    if v not in ours:
        bad += 1
        print(f"MISMATCH {name}{l}: node_exporter {v}, coolmesh {ours}")
print(f"node_exporter agreement: {checked - bad} passed, {bad} failed")
sys.exit(1 if bad or checked == 0 else 0)
PY
