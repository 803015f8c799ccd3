#!/usr/bin/env bash
# Bounded under attack (issue 8): a hostile but authenticated peer floods a
# real agent of a three-agent cluster at 10,000 frames/s for 60 s
# (agent/tests/flood.rs, `flood_60s`). Asserts the target's RSS stays under
# 64 MiB, honest gossip converges, no state machine moves, and the flood is
# counted; prints the figures (frames/s achieved, RSS, CPU, latencies,
# rejections by reason). Release build: the attacker runs in the test
# process, and an unoptimised one cannot get near the rate.
# COOLMESH_FLOOD_SECS changes the length.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --release --locked -p coolmesh --test flood -- --ignored --nocapture flood_60s
