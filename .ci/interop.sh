#!/usr/bin/env bash
# Interop test (docs/protocol.md): a js-libp2p peer joins a cluster of real
# agents over TCP + pnet + noise + yamux and speaks /coolmesh/sync/1.0.0.
# Needs Node.js >= 20 and npm (on the machine image; Debian's nodejs is
# installed if they are missing). Installs the exact packages of
# interop/package-lock.json with `npm ci`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "interop: Node.js $(node --version) is too old (need >= 20)" >&2
  exit 1
fi

# The agents under test: the release build, unless COOLMESH_BIN names an
# agent binary already built (e.g. target/debug/coolmesh, which
# `cargo test` builds, to save a release build on a slow machine).
if [ -z "${COOLMESH_BIN:-}" ]; then
  target_dir=${CARGO_TARGET_DIR:-target}
  case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
  cargo build --release --locked --bin coolmesh
  export COOLMESH_BIN="$target_dir/release/coolmesh"
fi
if [ ! -x "$COOLMESH_BIN" ]; then
  echo "interop: no agent binary at $COOLMESH_BIN" >&2
  exit 1
fi
echo "interop: agents are $COOLMESH_BIN"

cd interop
npm ci --no-audit --no-fund --loglevel=error
npm test
