#!/usr/bin/env bash
# The status page in headless Chromium against three real agents forming a
# cluster on loopback (tests/browser/status-page.test.mjs). Installs what it
# needs: Debian's chromium, and playwright-core from tests/browser's
# lockfile (it drives /usr/bin/chromium; no browser is downloaded).
# Leaves a screenshot at $SCREENSHOT_DIR/status-page.png (default: the
# target directory) and prints its path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "status-page: node $(node --version) is too old: playwright-core needs Node.js 20 or newer" >&2
  exit 1
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

cargo build --locked -q -p coolmesh --bin coolmesh
export COOLMESH_BIN="$PWD/$target/debug/coolmesh"
case "$target" in /*) COOLMESH_BIN="$target/debug/coolmesh" ;; esac
export SCREENSHOT_DIR=${SCREENSHOT_DIR:-$(dirname "$COOLMESH_BIN")/..}
export SCREENSHOT_DIR=$(cd "$SCREENSHOT_DIR" && pwd)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

cd tests/browser
node --test --test-reporter=spec status-page.test.mjs
echo "status page: screenshot at $SCREENSHOT_DIR/status-page.png"
