#!/usr/bin/env bash
# CI: the failure matrix (testbed/run.sh) with the release binary. Needs root
# (network namespaces), iproute2 (ip, tc) and python3; nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
  echo "testbed: needs root (network namespaces)" >&2
  exit 2
fi
for tool in ip tc python3; do
  command -v "$tool" >/dev/null || { echo "testbed: $tool not found (Debian: apt-get install iproute2 python3)" >&2; exit 2; }
done

if [ -z "${COOLMESH_BIN:-}" ]; then
  # A no-op when the release build is already fresh.
  cargo build --release --locked -q -p coolmesh
  target="${CARGO_TARGET_DIR:-target}"
  COOLMESH_BIN="$(cd "$target" && pwd)/release/coolmesh"
fi
export COOLMESH_BIN
exec bash testbed/run.sh --results "${TESTBED_RESULTS:-${TMPDIR:-/tmp}/coolmesh-testbed-results.md}" "$@"
