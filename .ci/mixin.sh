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
