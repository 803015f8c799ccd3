#!/usr/bin/env bash
# Supply chain: licenses of every dependency, banned/duplicate crates and
# wildcard versions, and crate sources (deny.toml). Offline: the advisory
# database is not fetched here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DENY_VERSION=0.20.2
if ! command -v cargo-deny >/dev/null; then
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi
cargo deny --version
cargo deny --all-features check licenses bans sources
