#!/usr/bin/env bash
# Run one fuzz target for SECONDS (default 600) on the stable toolchain.
#   bash fuzz/run.sh wire_decode 600
# The seed corpus lives in agent/tests/fixtures/corpus/<target>/ (read
# only here); what the fuzzer finds goes to fuzz/corpus/<target>/ and
# crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${1:?target: wire_decode, lm_sensors_json, lm_sensors_text or config_parse}
seconds=${2:-600}
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs -Z flags; see fuzz/README.md
seeds=(agent/tests/fixtures/corpus/"$target")
case "$target" in
  lm_sensors_json | lm_sensors_text) seeds+=(agent/tests/fixtures/lm_sensors) ;;
  config_parse)
    mkdir -p fuzz/seeds/config_parse
    cp deploy/coolmesh.example.toml fuzz/seeds/config_parse/
    seeds+=(fuzz/seeds/config_parse)
    ;;
esac
mkdir -p fuzz/corpus/"$target"
exec cargo fuzz run --sanitizer none --debug-assertions "$target" \
  fuzz/corpus/"$target" "${seeds[@]}" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1
