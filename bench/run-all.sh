#!/usr/bin/env bash
# Build and run every benchmark of BENCHMARKS.md, in order. Needs root (network
# namespaces, iptables, chrt), a Debian-like system and the tools below.
#
#   sudo bash bench/run-all.sh            # everything (about 25 minutes)
#   sudo bash bench/run-all.sh scrape     # one of: build encode scrape gossip detect footprint rules
#
# Results: markdown tables on stdout, raw JSON (and wrk output) in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
steps=("${@:-build encode scrape gossip detect footprint}")
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
    encode)
        cargo bench --locked -p coolmesh-exporter --bench encode 2>&1 | tee bench/out/encode.txt
        cargo bench --locked -p coolmesh-exporter --bench encode_cpu 2>&1 | tee bench/out/encode_cpu.txt
        ;;
    scrape) python3 bench/scrape.py | tee bench/out/scrape.txt ;;
    gossip)
        python3 bench/gossip.py | tee bench/out/gossip.txt
        python3 bench/gossip_model.py | tee bench/out/gossip_model.txt
        ;;
    detect) python3 bench/detect.py | tee bench/out/detect.txt ;;
    # RSS and idle CPU of 100 real agents (no client load).
    footprint)
        python3 bench/gossip.py --nodes 100 --rate 0 --seconds 0 --idle 30 --label footprint |
            tee bench/out/footprint.txt
        ;;
    # Prometheus rules and dashboard queries at 1,000 synthetic agents,
    # main's against the work tree's (about 20 minutes; not in "all").
    rules)
        need prometheus prometheus
        python3 bench/rules.py | tee bench/out/rules.txt
        ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
