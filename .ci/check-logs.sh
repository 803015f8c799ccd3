#!/usr/bin/env bash
# The agent's logs as a log pipeline reads them: a real agent (debug level:
# its own events and libp2p's, with span fields) runs with log.format logfmt
# and then json. Every logfmt line is decoded by go-logfmt, the decoder
# Loki's `| logfmt` descends from (Debian's golang-github-go-logfmt-logfmt-dev,
# built with Debian's Go: no module download), every JSON line by Python's
# json. Each line must be one record that starts time, level, source, msg
# with Prometheus' formats, and values with spaces, quotes, `=`, a tab, a
# newline and non-ASCII text (an exec power target and the stderr of its
# failing probe) must read back exactly as the agent had them.
# (The Python `logfmt` package was tried first: it drops backslashes and
# mis-reads `\n` inside quotes, so it cannot judge a correct writer.)
# Needs golang-go and golang-github-go-logfmt-logfmt-dev (.ci/run installs both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac

cargo build --locked -q -p coolmesh --bin coolmesh
bin="$target/debug/coolmesh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# An exec power target whose text and whose failure carry every character
# that needs quoting or escaping in logfmt.
cat > "$tmp/coolmesh.toml" <<TOML
[node]
state_dir = "$tmp/state"
[http]
listen_address = "127.0.0.1:0"
[sensors]
sysfs = "$PWD/agent/tests/fixtures/sysfs"
[power]
targets = ["exec:sh -c 'echo \"mains = down\" \\\\ température 25\\t°C >&2\\nexit 3'"]
interval = "1s"
timeout = "500ms"
[shutdown]
dry_run = true
[cluster]
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
insecure_no_psk = true
TOML

run() { # run FORMAT: the agent for 4 s at debug level, its stderr to FORMAT.log
  "$bin" agent --config "$tmp/coolmesh.toml" --log.level debug --log.format "$1" 2>"$tmp/$1.log" &
  local pid=$!
  sleep 4
  kill -TERM "$pid"
  wait "$pid" || { echo "logs: the agent exited $? on SIGTERM" >&2; tail -n 5 "$tmp/$1.log" >&2; exit 1; }
}
run logfmt
run json

GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$target/go-cache" \
  go run .ci/logfmt/main.go < "$tmp/logfmt.log" > "$tmp/logfmt.decoded"

python3 - "$tmp" <<'PY'
import json, re, sys
tmp = sys.argv[1]
want_target = "exec:sh -c 'echo \"mains = down\" \\ température 25\t°C >&2\nexit 3'"
want_error = 'exit status 3: mains = down température 25 °C'  # sh eats the unquoted backslash
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}

def judge(kind, records, raw):
    sources = set()
    target_lines = 0
    for n, (pairs, line) in enumerate(zip(records, raw), 1):
        keys = [k for k, _ in pairs]
        assert keys[:4] == ["time", "level", "source", "msg"], f"{kind} line {n}: keys {keys[:4]}: {line}"
        assert len(keys) == len(set(keys)), f"{kind} line {n}: a key twice: {line}"
        d = dict(pairs)
        assert TIME.match(str(d["time"])), f"{kind} line {n}: time {d['time']!r}"
        assert d["level"] in LEVELS, f"{kind} line {n}: level {d['level']!r}"
        assert re.fullmatch(r"[\w./-]+\.rs:\d+|[\w:]+", str(d["source"])), f"{kind} line {n}: source {d['source']!r}"
        sources.add(d["source"].rsplit(":", 1)[0])
        if d["msg"] == "power target down":
            assert d["power_target"] == want_target, f"{kind}: power_target {d['power_target']!r}, want {want_target!r}"
            assert d["error"] == want_error, f"{kind}: error {d['error']!r}, want {want_error!r}"
            target_lines += 1
    assert target_lines, f"{kind}: no 'power target down' line"
    # libp2p's debug lines (a dependency's source names its crate).
    deps = {s for s in sources if re.match(r"libp2p[\w-]*-\d", s)}
    assert deps, f"{kind}: no line from libp2p at debug level: {sorted(sources)}"
    return len(records), target_lines, len(sources)

raw = open(f"{tmp}/logfmt.log", encoding="utf-8").read().splitlines()
decoded = [json.loads(l) for l in open(f"{tmp}/logfmt.decoded", encoding="utf-8")]
assert len(raw) == len(decoded) and raw, f"{len(raw)} lines, {len(decoded)} decoded"
n, t, s = judge("logfmt", decoded, raw)
print(f"logs: ok: logfmt: {n} lines decoded by go-logfmt, one record each, time/level/source/msg first; "
      f"the exec target and its error read back exactly ({t} lines); {s} source files")

raw = open(f"{tmp}/json.log", encoding="utf-8").read().splitlines()
objs = [json.loads(l, object_pairs_hook=list) for l in raw]
for o, l in zip(objs, raw):
    assert all(not isinstance(v, (list, dict)) for _, v in o), f"json: a nested value: {l}"
n, t, s = judge("json", objs, raw)
print(f"logs: ok: json: {n} lines, flat objects, time/level/source/msg first, the same values read back ({t} lines)")
print("2 passed, 0 failed")
PY
