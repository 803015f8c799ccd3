#!/usr/bin/env bash
# Flakiness check (issue 21), not part of .ci/run: the README's test command
# must pass every time.
#
# 1. runs the whole `cargo test --workspace --locked` N times in a row;
# 2. runs each test binary that starts processes or sockets M times on its
#    own (the binaries `cargo test --no-run` built, run directly, from their
#    package directory, as cargo does);
# and prints a summary: runs, failures, and every failing test with the
# first line of its panic. The output of every failed run is kept under
# $CARGO_TARGET_DIR/flaky/ (default target/flaky/).
#
# Usage: bash .ci/flaky.sh [options]
#   --full N      full-suite runs (default 20; 0 skips them)
#   --each M      runs of each binary (default 50; 0 skips them)
#   --load        a CPU hog in the background meanwhile (stress-ng --cpu 2
#                 when installed, else two shell busy loops)
#   --bins "a b"  only these binaries (names as below)
#   --timeout S   a run that takes longer is killed and counted as failed
#                 (default 900 s for a binary, 4x that for the full suite)
# The binaries: the agent's library unit tests (coolmesh_agent: probes,
# commands, sockets), and agent/tests: agent_binary cluster_binary
# cluster_net counters_binary decision_binary demo_smoke flood (flood_short;
# flood_60s stays ignored) fsm_supervisor power_end_to_end safety
# shutdown_binary sybil; exporter/tests: http http_limits tls.
# Exits non-zero when any run failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

full=20
each=50
load=0
bins="coolmesh_agent agent_binary cluster_binary cluster_net counters_binary decision_binary demo_smoke flood fsm_supervisor power_end_to_end safety shutdown_binary sybil http http_limits tls"
limit=900
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=$2; shift 2 ;;
    --each) each=$2; shift 2 ;;
    --load) load=1; shift ;;
    --bins) bins=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "flaky: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$REPO/$target" ;; esac
export CARGO_TARGET_DIR=$target
out=$target/flaky/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
say() { echo "flaky: $*" | tee -a "$summary"; }

# ------------------------------------------------------------------ load
hogs=()
stop_load() {
  local p
  for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${hogs[@]}"; do wait "$p" 2>/dev/null || true; done
  hogs=()
}
trap stop_load EXIT
if [ "$load" = 1 ]; then
  if command -v stress-ng >/dev/null; then
    stress-ng --cpu 2 --quiet >/dev/null 2>&1 &
    hogs+=($!)
    say "load: stress-ng --cpu 2 (pid ${hogs[0]})"
  else
    for _ in 1 2; do
      bash -c 'while :; do :; done' &
      hogs+=($!)
    done
    say "load: two shell busy loops (pids ${hogs[*]})"
  fi
fi

# ------------------------------------------------------------------ failures
# Failing tests of a libtest log, one line each: "test: first panic line".
failures_of() { # LOG
  python3 - "$1" <<'PY'
import re, sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
binary = ""
seen = set()
for i, l in enumerate(lines):
    m = re.match(r"\s*Running (\S+)", l)
    if m:
        binary = m.group(1)
    m = re.match(r"---- (\S+) stdout ----", l)
    if not m:
        continue
    name = m.group(1)
    first = ""
    for j in range(i + 1, min(i + 400, len(lines))):
        if lines[j].startswith("---- ") or lines[j].startswith("failures:"):
            break
        if " panicked at " in lines[j]:
            where = lines[j].split(" panicked at ", 1)[1].rstrip(":")
            msg = lines[j + 1] if j + 1 < len(lines) else ""
            first = f"panicked at {where}: {msg}"
            break
    key = (binary, name)
    if key not in seen:
        seen.add(key)
        print(f"{binary + ' ' if binary else ''}{name}: {first or '(no panic line)'}")
# A binary killed by a signal or the timeout says so only at the end.
for l in lines[-5:]:
    if "signal:" in l or "TIMEOUT" in l:
        print(l.strip())
PY
}

fails_total=0
record_failure() { # LABEL LOG
  fails_total=$((fails_total + 1))
  local list
  list=$(failures_of "$2")
  [ -n "$list" ] || list="(no failing test found in the log; see it)"
  say "FAILED $1 (log: $2)"
  printf '%s\n' "$list" | sed 's/^/    /' | tee -a "$summary"
  { echo "$1 (log: $2)"; printf '%s\n' "$list" | sed 's/^/    /'; } >>"$out/failures.txt"
}

# ------------------------------------------------------------------ build
say "building: cargo test --workspace --locked --no-run"
cargo test --workspace --locked --no-run --message-format=json >"$out/build.json" 2>"$out/build.err" || {
  cat "$out/build.err" >&2
  exit 1
}
# name <TAB> executable <TAB> package directory
python3 - "$out/build.json" >"$out/binaries.tsv" <<'PY'
import json, os, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    t = m["target"]
    print(f'{t["name"]}\t{m["executable"]}\t{os.path.dirname(m["manifest_path"])}')
PY

# ------------------------------------------------------------------ full suite
full_fail=0
for i in $(seq 1 "$full"); do
  log=$out/full-$i.log
  start=$(date +%s)
  if timeout $((limit * 4)) cargo test --workspace --locked >"$log" 2>&1; then
    echo "flaky: full suite run $i/$full ok ($(($(date +%s) - start)) s)"
    rm -f "$log"
  else
    rc=$?
    [ "$rc" = 124 ] && echo "TIMEOUT after $((limit * 4)) s" >>"$log"
    full_fail=$((full_fail + 1))
    record_failure "full suite run $i/$full (exit $rc, $(($(date +%s) - start)) s)" "$log"
  fi
done
[ "$full" -gt 0 ] && say "full suite: $full runs, $full_fail failed"

# ------------------------------------------------------------------ binaries
declare -A runs fails
for b in $bins; do
  row=$(awk -F'\t' -v n="$b" '$1 == n { print; exit }' "$out/binaries.tsv")
  if [ -z "$row" ]; then
    say "no test binary named $b"
    fails_total=$((fails_total + 1))
    continue
  fi
  exe=$(cut -f2 <<<"$row")
  dir=$(cut -f3 <<<"$row")
  runs[$b]=0
  fails[$b]=0
  for i in $(seq 1 "$each"); do
    log=$out/$b-$i.log
    start=$(date +%s)
    if (cd "$dir" && CARGO_MANIFEST_DIR=$dir timeout "$limit" "$exe") >"$log" 2>&1; then
      rm -f "$log"
    else
      rc=$?
      [ "$rc" = 124 ] && echo "TIMEOUT after $limit s" >>"$log"
      fails[$b]=$((fails[$b] + 1))
      record_failure "$b run $i/$each (exit $rc, $(($(date +%s) - start)) s)" "$log"
    fi
    runs[$b]=$i
  done
  say "$b: ${runs[$b]} runs, ${fails[$b]} failed"
done

# ------------------------------------------------------------------ summary
echo
echo "=== flaky summary ($([ "$load" = 1 ] && echo "under load" || echo "no load")) ==="
[ "$full" -gt 0 ] && echo "full suite (cargo test --workspace --locked): $full runs, $full_fail failed"
for b in $bins; do
  [ -n "${runs[$b]:-}" ] && echo "$b: ${runs[$b]} runs, ${fails[$b]} failed"
done
if [ "$fails_total" -gt 0 ]; then
  echo "failures (logs under $out):"
  cat "$out/failures.txt" 2>/dev/null || true
fi
echo "summary: $summary"
[ "$fails_total" -eq 0 ]
