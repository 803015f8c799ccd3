#!/usr/bin/env bash
# Checks the deployment examples in deploy/: every YAML parses (Kubernetes
# manifests have apiVersion, kind, metadata.name), the configs they carry pass
# `coolmesh check-config`, Prometheus's config passes `promtool check config`
# with a file_sd file that `coolmesh state --cluster --format file_sd` wrote
# from a live agent, and refresh-file-sd.sh writes, keeps and refuses as
# documented. Needs promtool and python3 with PyYAML (.ci/run installs both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac

cargo build --locked -q -p coolmesh --bin coolmesh
bin="$target/debug/coolmesh"
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
passed=0
pass() { echo "deploy: ok: $*"; passed=$((passed + 1)); }

python3 - "$tmp" deploy <<'PY'
import pathlib, sys, yaml
tmp, root = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in sorted(list(root.rglob("*.yml")) + list(root.rglob("*.yaml"))):
    if "helm" in f.parts and "templates" in f.parts:
        continue  # Go templates, not YAML: .ci/check-helm.sh renders them
    docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    assert docs, f"{f}: empty"
    for d in docs:
        if "kubernetes" in f.parts:
            for k in ("apiVersion", "kind"):
                assert k in d, f"{f}: a document without {k}"
            assert d.get("metadata", {}).get("name"), f"{f}: {d['kind']} without metadata.name"
            if d["kind"] == "ConfigMap":
                (tmp / "configmap.toml").write_text(d["data"]["coolmesh.toml"])
            if d["kind"] == "DaemonSet":
                spec = d["spec"]["template"]["spec"]
                assert spec["hostNetwork"] is True, "DaemonSet must use hostNetwork"
                c = spec["containers"][0]
                assert c["securityContext"]["capabilities"]["add"] == ["NET_RAW"]
                mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
                assert mounts["/host/sys"].get("readOnly") is True, "/sys must be read-only"
                vols = {v["name"]: v for v in spec["volumes"]}
                assert vols["state"]["hostPath"]["path"] == "/var/lib/coolmesh"
                assert "secret" in vols and "config" in vols
    print(f"deploy: {f}: {len(docs)} document(s)")
PY
pass "YAML files parse; Kubernetes manifests complete"

# Templates: their keys, tokens and programs are on the servers, so the
# files alone (the package's install is preflighted in .ci/package.sh).
"$bin" check-config --syntax-only "$tmp/configmap.toml"
pass "the Kubernetes ConfigMap's coolmesh.toml passes check-config --syntax-only"
"$bin" check-config --syntax-only deploy/coolmesh.example.toml
pass "deploy/coolmesh.example.toml passes check-config --syntax-only"

# One live agent, alone, for file_sd. It binds port 0 and says where it
# listens (a port picked here and released could be taken meanwhile).
"$bin" agent --path.sysfs agent/tests/fixtures/sysfs --web.listen-address 127.0.0.1:0 \
  --state-dir "$tmp/state" --node.name deploy-check --cluster.name room-ci \
  --cluster.listen /ip4/127.0.0.1/tcp/0 --cluster.no-mdns --cluster.insecure-no-psk --dry-run --log.format json \
  >"$tmp/agent.log" 2>&1 &
pid=$!
port=$(python3 - "$tmp/agent.log" <<'PY'
import json, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    for line in open(sys.argv[1], errors="replace").read().splitlines():
        try:
            f = json.loads(line)
        except (ValueError, KeyError, TypeError):
            continue
        if f.get("msg") == "serving HTTP":
            print(f["address"].rsplit(":", 1)[1])
            sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
) || { echo "the agent never said where it listens:" >&2; tail -n 20 "$tmp/agent.log" >&2; exit 1; }
up=0
for _ in $(seq 1 300); do
  if "$bin" state --url "http://127.0.0.1:$port" >/dev/null 2>&1; then
    up=1
    break
  fi
  sleep 0.1
done
[ "$up" = 1 ] || { echo "the agent on port $port never answered within 30 s:" >&2; tail -n 20 "$tmp/agent.log" >&2; exit 1; }
mkdir -p "$tmp/file_sd"
"$bin" state --cluster --format file_sd --url "http://127.0.0.1:$port" > "$tmp/file_sd/coolmesh-room-ci.json"
python3 - "$tmp/file_sd/coolmesh-room-ci.json" "$port" <<'PY'
import json, sys
groups = json.load(open(sys.argv[1]))
# The target is the address the agent publishes (record key 12): its
# listen address here, not the node name.
assert groups == [{"targets": [f"127.0.0.1:{sys.argv[2]}"],
                   "labels": {"__meta_coolmesh_node": "deploy-check",
                              "__meta_coolmesh_cluster": "room-ci",
                              "__meta_coolmesh_peer_id": groups[0]["labels"]["__meta_coolmesh_peer_id"]}}], groups
assert groups[0]["labels"]["__meta_coolmesh_peer_id"].startswith("12D3")
PY
pass "coolmesh state --cluster --format file_sd"

# GET /v1/http_sd: the same room in Prometheus' HTTP SD format, this agent
# with the address it listens on (loopback: published as it is).
python3 - "$port" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/http_sd", timeout=5) as r:
    assert r.headers["Content-Type"] == "application/json", r.headers
    groups = json.load(r)
assert len(groups) == 1, groups
g = groups[0]
assert g["targets"] == [f"127.0.0.1:{port}"], groups
assert g["labels"]["__meta_coolmesh_node"] == "deploy-check", groups
assert g["labels"]["__meta_coolmesh_cluster"] == "room-ci", groups
assert g["labels"]["__meta_coolmesh_peer_id"].startswith("12D3"), groups
PY
pass "GET /v1/http_sd"

sed -e "s|/etc/prometheus/rules/|$PWD/alerts/|" -e "s|/etc/prometheus/file_sd/|$tmp/file_sd/|" \
  deploy/prometheus/prometheus.yml > "$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml"
pass "promtool check config deploy/prometheus/prometheus.yml (with the rules, the file_sd file and the http_sd job)"

export PATH="$(dirname "$bin"):$PATH"
out="$tmp/sd/coolmesh-r1.json"
COOLMESH_AGENTS="http://127.0.0.1:1 http://127.0.0.1:$port" COOLMESH_ROOM=r1 FILE_SD_DIR="$tmp/sd" \
  sh deploy/prometheus/refresh-file-sd.sh
cmp -s "$out" "$tmp/file_sd/coolmesh-room-ci.json" || { echo "refresh-file-sd wrote something else" >&2; exit 1; }
before=$(stat -c %Y.%i "$out")
COOLMESH_AGENTS="http://127.0.0.1:$port" COOLMESH_ROOM=r1 FILE_SD_DIR="$tmp/sd" sh deploy/prometheus/refresh-file-sd.sh
[ "$(stat -c %Y.%i "$out")" = "$before" ] || { echo "refresh-file-sd rewrote an unchanged file" >&2; exit 1; }
if COOLMESH_AGENTS="http://127.0.0.1:1" COOLMESH_ROOM=r1 FILE_SD_DIR="$tmp/sd" sh deploy/prometheus/refresh-file-sd.sh 2>/dev/null; then
  echo "refresh-file-sd succeeded with no agent" >&2; exit 1
fi
cmp -s "$out" "$tmp/file_sd/coolmesh-room-ci.json" || { echo "refresh-file-sd lost the file when no agent answered" >&2; exit 1; }
[ -z "$(ls -A "$tmp/sd" | grep -v '^coolmesh-r1.json$')" ] || { echo "refresh-file-sd left temporary files: $(ls -A "$tmp/sd")" >&2; exit 1; }
pass "refresh-file-sd.sh: falls over to the next agent, skips unchanged, keeps the file when no agent answers"

echo "deploy: $passed passed, 0 failed"
