#!/usr/bin/env bash
# Runs the release binary on the fixture tree next to the real node_exporter
# on the same tree, then: `curl /metrics | promtool check metrics`, and every
# temperature/max/critical value must be equal in both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sysfs=agent/tests/fixtures/sysfs
target=${CARGO_TARGET_DIR:-target}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

cargo build --release --locked -q
# Both bind port 0 and say where they listen: no port is picked here and
# released for them to bind later.
"$target/release/coolmesh" agent --path.sysfs "$sysfs" --web.listen-address 127.0.0.1:0 \
  --cluster.listen /ip4/127.0.0.1/tcp/0 --cluster.no-mdns --cluster.insecure-no-psk --log.format json \
  --state-dir "$tmp/state" --sensors.interval 1s >"$tmp/agent.log" 2>&1 &
pids+=($!)
prometheus-node-exporter --path.sysfs="$sysfs" --collector.disable-defaults \
  --collector.hwmon --collector.thermal_zone --web.listen-address=127.0.0.1:0 >"$tmp/ne.log" 2>&1 &
pids+=($!)

# logged_addr LOG: the HOST:PORT in the agent's "serving HTTP" line or
# node_exporter's "Listening on" line, waiting up to 30 s.
logged_addr() {
  python3 - "$1" <<'PY'
import json, re, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    for line in open(sys.argv[1], errors="replace").read().splitlines():
        try:
            f = json.loads(line)
            if f.get("msg") == "serving HTTP":
                print(f["address"])
                sys.exit(0)
        except (ValueError, KeyError, TypeError):
            m = re.search(r'msg="Listening on" address=(\S+)', line)
            if m:
                print(m.group(1))
                sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
}
agent=$(logged_addr "$tmp/agent.log") || { echo "the agent never said where it listens:"; tail -n 20 "$tmp/agent.log"; exit 1; }
ne=$(logged_addr "$tmp/ne.log") || { echo "node_exporter never said where it listens:"; tail -n 20 "$tmp/ne.log"; exit 1; }

ready=0
for _ in $(seq 1 300); do
  if curl -sf "http://$agent/-/ready" >/dev/null && curl -sf "http://$ne/metrics" >/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "not ready within 30 s (agent $agent, node_exporter $ne)"
  tail -n 20 "$tmp/agent.log" "$tmp/ne.log"
  exit 1
fi
curl -sf --max-time 10 "http://$agent/metrics" > "$tmp/coolmesh.prom"
curl -sf --max-time 10 "http://$ne/metrics" > "$tmp/ne.prom"
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
