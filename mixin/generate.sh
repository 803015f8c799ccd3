#!/usr/bin/env bash
# Generates the rule files of alerts/ and the dashboards of dashboards/ from
# the mixin (needs the `jsonnet` tool; Debian: apt-get install jsonnet).
#
#   mixin/generate.sh                       regenerate the committed files
#   mixin/generate.sh OUT                   write them into OUT/alerts, OUT/dashboards
#   mixin/generate.sh OUT myroom.libsonnet  ... with your settings: a file
#                                           holding an object of _config fields,
#                                           e.g. { coolmeshSelector: 'job="coolmesh"' }
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/..}"
config=()
if [ $# -ge 2 ]; then
  config=(--tla-code-file "config=$2")
fi
command -v jsonnet >/dev/null || { echo "generate.sh: jsonnet not found (Debian: apt-get install jsonnet)" >&2; exit 1; }
mkdir -p "$out/alerts" "$out/dashboards"
jsonnet -J "$here" -S -m "$out/alerts" "${config[@]}" "$here/alerts.jsonnet" >/dev/null
jsonnet -J "$here" -S -m "$out/dashboards" "${config[@]}" "$here/dashboards.jsonnet" >/dev/null
