#!/usr/bin/env bash
# The coolmesh failure matrix: real agents, each in its own network namespace.
#
#   sudo testbed/run.sh            # every scenario (a..p)
#   sudo testbed/run.sh c          # one scenario
#   sudo testbed/run.sh --list     # what each scenario does
#
# Uses $COOLMESH_BIN, else ${CARGO_TARGET_DIR:-target}/release/coolmesh.
# Other options (--hosts N, --results FILE, --keep, --impair auto|netem|relay, --up,
# --cleanup): see testbed/testbed.py --help. Needs root, iproute2, python3.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [ -z "${COOLMESH_BIN:-}" ]; then
  case "${CARGO_TARGET_DIR:-}" in
    "") COOLMESH_BIN="$root/target/release/coolmesh" ;;
    /*) COOLMESH_BIN="$CARGO_TARGET_DIR/release/coolmesh" ;;
    *) COOLMESH_BIN="$root/$CARGO_TARGET_DIR/release/coolmesh" ;;
  esac
fi
export COOLMESH_BIN

# Whatever happens to the driver (failure, Ctrl-C, SIGTERM, even SIGKILL),
# the namespaces go: the driver's children die with it (PDEATHSIG) and this
# removes every cmtb-* namespace.
cleanup() { python3 "$here/testbed.py" --cleanup >/dev/null 2>&1 || true; }
trap cleanup EXIT

python3 "$here/testbed.py" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 130' INT TERM
wait "$pid"
