#!/usr/bin/env bash
# The rule files of alerts/ and the dashboards of dashboards/ are generated
# from mixin/ (jsonnet): regenerates them into a temporary directory and
# fails if the committed ones differ. Needs jsonnet (Debian: jsonnet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GENERATED=(alerts/coolmesh.rules.yml alerts/coolmesh.recording.yml
  dashboards/coolmesh-room.json dashboards/coolmesh-node.json)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The sources as jsonnetfmt formats them (make -C mixin fmt).
mapfile -t sources < <(find mixin -name '*.jsonnet' -o -name '*.libsonnet' | sort)
if ! jsonnetfmt --test "${sources[@]}"; then
  echo "mixin: not formatted as jsonnetfmt does; run: make -C mixin fmt" >&2
  exit 1
fi

bash mixin/generate.sh "$tmp"

# Every file the mixin writes is committed, and nothing else claims to be.
(cd "$tmp" && find alerts dashboards -type f | sort) > "$tmp/.written"
printf '%s\n' "${GENERATED[@]}" | sort > "$tmp/.expected"
if ! diff -u "$tmp/.expected" "$tmp/.written"; then
  echo "mixin: it writes other files than .ci/mixin.sh expects (GENERATED above)" >&2
  exit 1
fi

rc=0
for f in "${GENERATED[@]}"; do
  if ! diff -u "$f" "$tmp/$f" > "$tmp/.diff"; then
    head -n 40 "$tmp/.diff"
    echo "mixin: $f differs from what mixin/ generates" >&2
    rc=1
  fi
done
if [ "$rc" -ne 0 ]; then
  echo "mixin: the generated files are out of date. Edit mixin/, not the files, then regenerate with" >&2
  echo "    mixin/generate.sh          (or: make -C mixin)" >&2
  echo "and commit the result." >&2
  exit 1
fi
echo "mixin: ${#GENERATED[@]} generated files match mixin/"

# Other settings generate valid files that use them (mixin/README.md, "Your
# own settings"): nothing of the defaults left where a setting replaces it.
cat > "$tmp/custom.libsonnet" <<'JSONNET'
{
  coolmeshSelector: 'job="coolmesh-dc2", env="prod"',
  groupLabels: ['cluster', 'job'],
  roomLabel: 'room',
  nodeLabel: 'server',
  severities+: { critical: 'page' },
  runbookURLPattern: 'https://wiki.example.org/coolmesh#%s',
  thresholds+: { agentsDownFraction: 0.25, timeToCriticalSeconds: 600 },
  alertFor+: { CoolmeshTemperatureHigh: '10m' },
}
JSONNET
bash mixin/generate.sh "$tmp/custom" "$tmp/custom.libsonnet"
python3 - "$tmp/custom" <<'PY'
import json, re, sys
out = sys.argv[1]
rules = open(f"{out}/alerts/coolmesh.rules.yml").read() + open(f"{out}/alerts/coolmesh.recording.yml").read()
dash = "".join(open(f"{out}/dashboards/{d}").read() for d in ("coolmesh-room.json", "coolmesh-node.json"))
for d in ("coolmesh-room.json", "coolmesh-node.json"):
    json.load(open(f"{out}/dashboards/{d}"))
errors = []
for what, text, bad in (
    ("rules", rules, [r'job=~\\?"coolmesh\.\*', r"\bcoolmesh_cluster\b", r"\bcoolmesh_node\b", r"severity: \"critical\"",
                      r"example\.invalid", r"on \(job, instance\)"]),
    ("dashboards", dash, [r'job=~\\"coolmesh\.\*', r"\bcoolmesh_cluster\b", r"\bcoolmesh_node\b"]),
):
    for b in bad:
        if re.search(b, text):
            errors.append(f"{what}: still has {b}")
for want in ('severity: "page"', 'env="prod"', "on (cluster, job, instance) group_left (room, server)",
             "https://wiki.example.org/coolmesh#coolmeshagentdown", "0.25 * count", "< 600)", 'for: "10m"'):
    if want not in rules:
        errors.append(f"rules: no {want!r}")
for e in errors:
    print("mixin: custom settings:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
if command -v promtool >/dev/null; then
  promtool check rules "$tmp/custom/alerts/coolmesh.rules.yml" "$tmp/custom/alerts/coolmesh.recording.yml" >/dev/null
fi
echo "mixin: other settings (selector, label names, severities, runbooks, thresholds) generate valid files that use them"
