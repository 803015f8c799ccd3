#!/usr/bin/env bash
# Build and run every benchmark of BENCHMARKS.md, in order. Needs root (network
# namespaces, iptables, chrt), a Debian-like system and the tools below.
#
#   sudo bash bench/run-all.sh            # everything (about 25 minutes)
#   sudo bash bench/run-all.sh scrape     # one of: build encode scrape gossip detect
#
# Results: markdown tables on stdout, raw JSON (and wrk output) in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
steps=("${@:-build encode scrape gossip detect}")
steps=(${steps[*]})
mkdir -p bench/out

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "installing $2" >&2
        apt-get install -y "$2" >/dev/null
    }
}

for step in "${steps[@]}"; do
    case "$step" in
    build)
        need wrk wrk
        need prometheus-node-exporter prometheus-node-exporter
        need iptables iptables
        cargo build --release --locked -p coolmesh
        cargo build --release --locked --manifest-path bench/scrape-server/Cargo.toml
        ;;
    encode) cargo bench --locked -p coolmesh-exporter --bench encode 2>&1 | tee bench/out/encode.txt ;;
    scrape) python3 bench/scrape.py | tee bench/out/scrape.txt ;;
    gossip) python3 bench/gossip.py | tee bench/out/gossip.txt ;;
    detect) python3 bench/detect.py | tee bench/out/detect.txt ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
