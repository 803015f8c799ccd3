#!/usr/bin/env bash
# End-to-end test of the alerting path with the real programs: three coolmesh
# agents (--dry-run, short timers), Prometheus scraping them every second and
# evaluating alerts/*.yml (alert `for:` shortened to 2s), Alertmanager with
# alerts/alertmanager.example.yml pointed at a local webhook receiver.
#
# Scenario: heat agent a through its file source; close the power target
# (a TCP listener the test owns); a reaches its dry-run shutdown; power
# flaps; c goes into maintenance (twice); a CRDT counter is incremented; then
# every dashboard query must return data.
# Then a room-wide power loss with a fresh stack: the agents are not in
# dry-run, run their (harmless) shutdown command at the deadline and are
# killed right after, as servers that power off; Alertmanager keeps its
# production timers. What reaches the webhook: one page (CoolmeshPowerLost),
# no RESOLVED while power is out, and its RESOLVED once power is back.
# alerts/e2e/README.md lists the checks.
# Everything listens on 127.0.0.1; every process is stopped and the temp dir
# removed on exit, also on failure or Ctrl-C.
#
# Needs: prometheus, promtool, alertmanager (Debian: prometheus-alertmanager),
# amtool, python3 with PyYAML, curl. Builds the agent only if the release
# binary is missing.
#
# Usage: bash .ci/e2e-alerts.sh
#   COOLMESH_BIN=path      agent binary (default $CARGO_TARGET_DIR/release/coolmesh or target/release/coolmesh)
#   E2E_TIMEOUT=90         bound of every wait, in seconds
#   E2E_KEEP=1             keep the temp dir (configs, logs, webhook deliveries)
#   E2E_VERBOSE=1          list every dashboard query's result, not only the failures
# Ends with "e2e-alerts: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
E2E=$REPO/alerts/e2e
TIMEOUT=${E2E_TIMEOUT:-90}
T0=$SECONDS

passed=0
failed=0
failed_names=()

say() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*"; }

# ------------------------------------------------------------------ tools
missing=()
PROMETHEUS=$(command -v prometheus || true)
ALERTMANAGER=$(command -v alertmanager || command -v prometheus-alertmanager || true)
[ -n "$PROMETHEUS" ] || missing+=(prometheus)
[ -n "$ALERTMANAGER" ] || missing+=("alertmanager (prometheus-alertmanager)")
for tool in promtool amtool curl python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -c 'import yaml' 2>/dev/null || missing+=("python3 PyYAML (python3-yaml)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (Debian: apt-get install -y prometheus prometheus-alertmanager python3-yaml curl)"
  echo "e2e-alerts: 0 passed, 1 failed"
  exit 1
fi

BIN=${COOLMESH_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/coolmesh}
if [ ! -x "$BIN" ]; then
  say "building $BIN"
  cargo build --release --locked -p coolmesh
fi
[ -x "$BIN" ] || { echo "no agent binary at $BIN"; exit 1; }

# ------------------------------------------------------------------ processes
TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/coolmesh-e2e.XXXXXX")
# The current stage's directory: the first stage uses the root, the room-wide
# power loss its own subdirectory (fresh configs, data and webhook file).
tmp=$TMP_ROOT
mkdir -p "$tmp/logs"
declare -A PID=()

# start NAME CMD...: run CMD in the background, output to logs/NAME.log.
start() {
  local name=$1
  shift
  "$@" >>"$tmp/logs/$name.log" 2>&1 &
  PID[$name]=$!
}

# stop NAME: SIGTERM, up to 5 s to exit, then SIGKILL. Returns the exit
# status of the process (or 137 if it had to be killed).
stop() {
  local name=$1 pid=${PID[$1]:-} rc=0 i
  [ -n "$pid" ] || return 0
  unset "PID[$name]"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 137
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

cleanup() {
  local name
  trap - EXIT INT TERM
  for name in "${!PID[@]}"; do
    stop "$name" || true
  done
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "kept $TMP_ROOT"
  else
    rm -rf "$TMP_ROOT"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

py() { python3 "$E2E/e2e.py" "$@"; }

diagnose() {
  echo "  --- diagnostics ---"
  py diag "$tmp" 2>&1 || true
  local n
  for n in $AGENTS; do
    echo "  --- agent $n (${PID[agent-$n]:+pid ${PID[agent-$n]}}) log, last 15 lines ---"
    tail -n 15 "$tmp/logs/agent-$n.log" 2>/dev/null | cut -c1-400 | sed 's/^/    /' || true
  done
  for n in prometheus alertmanager webhook; do
    if [ -n "${PID[$n]:-}" ] && ! kill -0 "${PID[$n]}" 2>/dev/null; then
      echo "  --- $n exited; log ---"
      tail -n 15 "$tmp/logs/$n.log" | sed 's/^/    /'
    fi
  done
  echo "  -------------------"
}

# check NAME CMD...: CMD's output indented; counts; diagnostics on failure.
check() {
  local name=$1
  shift
  say "==> $name"
  if "$@" >"$tmp/out" 2>&1; then
    sed 's/^/    /' "$tmp/out"
    passed=$((passed + 1))
    return 0
  fi
  sed 's/^/    /' "$tmp/out"
  say "    FAILED: $name"
  failed=$((failed + 1))
  failed_names+=("$name")
  diagnose
  return 1
}

finish() {
  echo
  if [ "$failed" -gt 0 ]; then
    printf 'failed: %s\n' "${failed_names[@]}"
  fi
  say "done"
  echo "e2e-alerts: ${passed} passed, ${failed} failed"
  if [ "$failed" -eq 0 ]; then exit 0; fi
  exit 1
}

# ------------------------------------------------------------------ setup
# The first stage's agents run with --dry-run; the room-wide power loss's
# do not (their shutdown command only appends a line to a file).
DRY_RUN=(--dry-run)
py setup "$tmp" "$REPO"
# shellcheck disable=SC1091
. "$tmp/env.sh"
printf 'Authorization: Bearer %s\n' "$(cat "$TOKEN_FILE")" >"$tmp/auth-header"
say "temp dir $tmp; Prometheus $PROM_URL, Alertmanager $AM_URL, webhook :$WEBHOOK_PORT, power target $POWER_TARGET"
say "agents: $(for n in $AGENTS; do v=AGENT_${n}_ADDR; printf '%s=%s ' "$n" "${!v}"; done)(hot: $HOT)"

agent_addr() { local v=AGENT_${1}_ADDR; echo "${!v}"; }
agent_dir() { local v=AGENT_${1}_DIR; echo "${!v}"; }

configs_valid() {
  local n
  for n in $AGENTS; do
    # The agents run as this user, with their files in the temp dir.
    "$BIN" check-config --user "$(id -un)" "$(agent_dir "$n")/coolmesh.toml" || return 1
  done
  promtool check config "$tmp/prometheus.yml" || return 1
  amtool check-config "$tmp/alertmanager.yml" || return 1
}

# wait_url URL: until it answers 2xx (bounded).
wait_url() {
  local i
  for i in $(seq 1 $((TIMEOUT * 5))); do
    curl -sf -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.2
  done
  echo "no answer from $1 within ${TIMEOUT}s"
  return 1
}

# wait_tcp PORT: until 127.0.0.1:PORT accepts connections (bounded).
wait_tcp() {
  local i
  for i in $(seq 1 $((TIMEOUT * 5))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1 after ${TIMEOUT}s"
  return 1
}

start_stack() {
  local n
  start webhook python3 "$E2E/webhook.py" "$WEBHOOK_PORT" "$WEBHOOK_FILE"
  start target python3 "$E2E/tcp_target.py" "$TARGET_PORT"
  # The power target must be up before the agents' first probe, or they
  # start with a power loss.
  wait_tcp "$TARGET_PORT" || return 1
  wait_url "http://127.0.0.1:$WEBHOOK_PORT/" || return 1
  for n in $AGENTS; do
    start "agent-$n" "$BIN" agent -c "$(agent_dir "$n")/coolmesh.toml" "${DRY_RUN[@]}" --log.format json
  done
  start alertmanager "$ALERTMANAGER" --config.file="$tmp/alertmanager.yml" \
    --storage.path="$tmp/alertmanager-data" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address=
  start prometheus "$PROMETHEUS" --config.file="$tmp/prometheus.yml" \
    --storage.tsdb.path="$tmp/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT"
  for n in $AGENTS; do
    wait_url "http://$(agent_addr "$n")/-/ready" || return 1
  done
  wait_url "$AM_URL/-/ready" || return 1
  wait_url "$PROM_URL/-/ready" || return 1
  echo "all processes answer"
  # Every agent scraped, power seen up, state normal.
  py wait-query "$tmp" 'up{job="coolmesh"} == 1' --min-series 3 --timeout "$TIMEOUT" || return 1
  py wait-query "$tmp" 'coolmesh_power_up == 1' --min-series 3 --timeout "$TIMEOUT" || return 1
  py wait-query "$tmp" 'coolmesh_fsm_state{state="normal"} == 1' --min-series 3 --timeout "$TIMEOUT" || return 1
  # ...and none of them left normal on the way (a transition counter exists
  # only once a transition happened).
  if py wait-query "$tmp" 'coolmesh_fsm_transitions_total' --timeout 0 >"$tmp/transitions.out" 2>&1; then
    echo "agents changed state during startup:"
    cat "$tmp/transitions.out"
    return 1
  fi
  echo "no state transitions during startup"
}

loopback_only() {
  local args=() name
  for name in "${!PID[@]}"; do
    args+=("$name=${PID[$name]}")
  done
  py listeners "${args[@]}"
}

cluster_formed() {
  # Each agent sees the two others alive.
  py wait-query "$tmp" 'coolmesh_cluster_peers{state="alive"} == 2' --min-series 3 --timeout "$TIMEOUT"
}

# alert_fires NAME PATH MATCH...: in Prometheus, then at the webhook path.
alert_fires() {
  local name=$1 path=$2
  shift 2
  local m=() x
  for x in "$@"; do m+=(--match "$x"); done
  py wait-alert "$tmp" "$name" --source prometheus "${m[@]}" --timeout "$TIMEOUT" || return 1
  py wait-alert "$tmp" "$name" --source webhook --path "$path" "${m[@]}" --timeout "$TIMEOUT" || return 1
}

power_off() { stop target || true; echo "power target closed"; }

# During a room-wide power loss the room page says it: the servers' pending
# shutdowns fire in Prometheus, and Alertmanager holds them back.
pending_held_back() {
  local n
  for n in b c; do
    py wait-alert "$tmp" CoolmeshShutdownPending --source prometheus --match instance=@$n --match coolmesh_node=e2e-$n \
      --timeout "$TIMEOUT" || return 1
    py wait-am "$tmp" CoolmeshShutdownPending --by CoolmeshPowerLost --match instance=@$n --timeout "$TIMEOUT" || return 1
  done
}
power_on() { start target python3 "$E2E/tcp_target.py" "$TARGET_PORT"; echo "power target open again"; }

pre_fail_for_power() {
  py wait-query "$tmp" \
    'coolmesh_fsm_state{state="pre_fail", instance=~"@b|@c"} == 1 and on (instance) coolmesh_fsm_reason{reason="power"} == 1' \
    --min-series 2 --timeout "$TIMEOUT"
}

dry_run_shutdown() {
  local d
  d=$(agent_dir "$HOT")
  py wait-query "$tmp" 'coolmesh_fsm_state{state="shutdown", instance="@a"} == 1 and on (instance) coolmesh_shutdown_executed == 1 and on (instance) coolmesh_shutdown_dry_run == 1' \
    --timeout "$TIMEOUT" || return 1
  if [ -s "$d/dry-run-shutdowns" ]; then
    echo "dry-run marker: $(head -c 300 "$d/dry-run-shutdowns")"
  else
    echo "no dry-run marker line in $d/dry-run-shutdowns"
    return 1
  fi
  no_real_shutdown || return 1
  alert_fires CoolmeshShutdownDryRun /coolmesh/chat instance="@$HOT" || return 1
}

no_real_shutdown() {
  local n bad=0
  for n in $AGENTS; do
    if [ -e "$(agent_dir "$n")/REAL-SHUTDOWN-RAN" ]; then
      echo "agent $n ran its shutdown command despite --dry-run"
      bad=1
    fi
  done
  [ "$bad" = 0 ] && echo "no agent ran its shutdown command"
  [ "$bad" = 0 ]
}

power_flap() {
  power_on
  wait_tcp "$TARGET_PORT" || return 1
  py wait-query "$tmp" 'coolmesh_fsm_state{state="normal", instance=~"@b|@c"} == 1' \
    --min-series 2 --timeout "$TIMEOUT" || return 1
  power_off
  pre_fail_for_power || return 1
  # Twice into pre_fail for power (directly from normal, or via a short
  # local_fault when this node probed before its peers reported).
  py wait-query "$tmp" 'sum by (instance) (coolmesh_fsm_transitions_total{to="pre_fail", reason="power", instance=~"@b|@c"}) >= 2' \
    --min-series 2 --timeout "$TIMEOUT" || return 1
}

# post AGENT PATH [AUTH]: prints "HTTP <code> <body>", returns 0 on 2xx.
post() {
  local code
  if [ "${3:-auth}" = auth ]; then
    code=$(curl -s -o "$tmp/post.out" -w '%{http_code}' --max-time 5 -X POST -H @"$tmp/auth-header" "http://$(agent_addr "$1")$2")
  else
    code=$(curl -s -o "$tmp/post.out" -w '%{http_code}' --max-time 5 -X POST "http://$(agent_addr "$1")$2")
  fi
  echo "POST $2 on $1: HTTP $code $(head -c 300 "$tmp/post.out")"
  [ "${code:0:1}" = 2 ]
}

in_maintenance() {
  py wait-query "$tmp" 'coolmesh_fsm_state{state="maintenance", instance="@c"} == 1 and on (instance) coolmesh_maintenance_until_timestamp_seconds - time() > 60' \
    --timeout "$TIMEOUT"
}

# c (pre_fail, power still off): maintenance, end it, back to pre_fail,
# maintenance again. The second pre_fail -> maintenance makes that
# transition counter go from 1 to 2, which the dashboards' "increase(...) > 0"
# queries need (a counter that appears at 1 has increased by 0).
maintenance() {
  if post c '/v1/maintenance?for=10m' noauth; then
    echo "accepted without a token"
    return 1
  fi
  post c '/v1/maintenance?for=10m' || return 1
  in_maintenance || return 1
  post c '/v1/maintenance?for=0s' || return 1
  py wait-query "$tmp" 'coolmesh_fsm_state{state="pre_fail", instance="@c"} == 1 and on (instance) coolmesh_fsm_reason{reason="power"} == 1' \
    --timeout "$TIMEOUT" || return 1
  post c '/v1/maintenance?for=10m' || return 1
  in_maintenance || return 1
  py wait-query "$tmp" 'coolmesh_fsm_transitions_total{from="pre_fail", to="maintenance", reason="operator", instance="@c"} >= 2' \
    --timeout "$TIMEOUT" || return 1
}

counters() {
  post a '/v1/counters/e2e/inc?amount=3' || return 1
  # Converged on every agent.
  py wait-query "$tmp" 'coolmesh_crdt_value{name="e2e"} == 3' --min-series 3 --timeout "$TIMEOUT" || return 1
}

lint_live_metrics() {
  # A clustered agent's page (peers, votes, CRDT counters, gossip metrics)
  # passes promtool's lint too, not only the single-node page live-checks.sh sees.
  curl -sf --max-time 5 "http://$(agent_addr a)/metrics" > "$tmp/a.prom" || return 1
  promtool check metrics < "$tmp/a.prom" || return 1
  echo "promtool: clean ($(grep -vc '^#' "$tmp/a.prom") series)"
}

no_executed_page() {
  # a reached shutdown only in dry-run: CoolmeshShutdownExecuted must not fire.
  py wait-query "$tmp" 'ALERTS{alertname="CoolmeshShutdownDryRun", alertstate="firing"}' --timeout 5 || return 1
  if py wait-query "$tmp" 'ALERTS{alertname="CoolmeshShutdownExecuted"}' --timeout 0 >/dev/null 2>&1; then
    echo "CoolmeshShutdownExecuted is pending or firing for a dry-run agent"
    return 1
  fi
  echo "CoolmeshShutdownExecuted not raised"
  no_real_shutdown
}

stop_all() {
  local name rc bad=0
  for name in prometheus alertmanager agent-a agent-b agent-c webhook target; do
    [ -n "${PID[$name]:-}" ] || continue
    rc=0
    stop "$name" || rc=$?
    echo "$name stopped (exit status $rc)"
    # Every process must stop cleanly on SIGTERM within 5 s.
    [ "$rc" = 0 ] || bad=1
  done
  [ "$bad" = 0 ]
}

# ------------------------------------------------------------------ scenario
check "configs are valid (coolmesh check-config, promtool, amtool)" configs_valid || finish
check "start webhook, power target, 3 agents, Alertmanager, Prometheus" start_stack || finish
check "every process listens on 127.0.0.1 only" loopback_only || true

check "cluster: each agent sees the two others alive" cluster_formed || true

say "--- heat agent $HOT: inlet 62 C (critical 60 C)"
py readings "$tmp" "$HOT" 62
check "CoolmeshTemperatureCritical fires for agent $HOT and reaches the pager webhook" \
  alert_fires CoolmeshTemperatureCritical /coolmesh/pager \
    instance=@$HOT coolmesh_node=e2e-$HOT coolmesh_cluster=e2e trigger=threshold chip=inlet sensor=t || true

say "--- close the power target"
power_off
check "agents b and c enter pre_fail for power" pre_fail_for_power || true
check "CoolmeshPowerLost fires and reaches the pager webhook" \
  alert_fires CoolmeshPowerLost /coolmesh/pager coolmesh_cluster=e2e target="$POWER_TARGET" || true
check "CoolmeshShutdownPending fires for agents b and c; Alertmanager holds it back, inhibited by CoolmeshPowerLost" \
  pending_held_back || true
check "agent $HOT reaches its dry-run shutdown (marker, no command, CoolmeshShutdownDryRun to chat)" \
  dry_run_shutdown || true

say "--- power flaps: open, wait for recovery, close again"
check "b and c recover when power returns and go pre_fail again when it is lost again" power_flap || true

say "--- operator: maintenance on agent c"
check "maintenance on c: refused without token; on, off (back to pre_fail), on again; exported" maintenance || true

say "--- operator: counter e2e += 3 on agent a"
check "CRDT counter incremented on a converges on every agent" counters || true
check "a clustered agent's /metrics passes promtool check metrics" lint_live_metrics || true

check "CoolmeshShutdownExecuted not raised for the dry-run shutdown; no real shutdown ran" no_executed_page || true

for f in "$REPO"/dashboards/*.json; do
  check "every query of dashboards/$(basename "$f") returns data" \
    py dashboards "$tmp" "$REPO" --file "$(basename "$f")" ${E2E_VERBOSE:+--verbose} || true
done

check "every process stops on SIGTERM with exit status 0" stop_all || true

# ------------------------------------------------------------------ room-wide power loss
# A fresh stack: new ports, configs, Prometheus and Alertmanager data, webhook
# file. The agents are not in dry-run, and Alertmanager runs with the
# production timers of alertmanager.example.yml (Prometheus still evaluates
# every second with every `for:` at 2s).
say "--- room-wide power loss: the agents run their shutdown command and stop"
tmp=$TMP_ROOT/room
mkdir -p "$tmp/logs"
DRY_RUN=()
py setup "$tmp" "$REPO" --room
# shellcheck disable=SC1091
. "$tmp/env.sh"
printf 'Authorization: Bearer %s\n' "$(cat "$TOKEN_FILE")" >"$tmp/auth-header"
say "temp dir $tmp; Prometheus $PROM_URL, Alertmanager $AM_URL, webhook :$WEBHOOK_PORT, power target $POWER_TARGET"

# As each agent runs its shutdown command (a line in its powered-off file),
# its server powers off: the agent is killed at once (SIGKILL, no goodbye),
# whether or not a scrape saw the command run.
servers_power_off() {
  local n left=" $AGENTS " pid at i
  for i in $(seq 1 $((TIMEOUT * 10))); do
    for n in $left; do
      [ -s "$(agent_dir "$n")/powered-off" ] || continue
      pid=${PID[agent-$n]}
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      unset "PID[agent-$n]"
      left=${left/ $n / }
      at=$(head -n1 "$(agent_dir "$n")/powered-off")
      echo "agent $n ran its shutdown command $(python3 -c "print(f'{$at - $T_OFF:.1f}')")s after the power loss; killed (pid $pid)"
    done
    [ -z "${left// /}" ] && break
    sleep 0.1
  done
  if [ -n "${left// /}" ]; then
    echo "agents${left% } did not run their shutdown command within ${TIMEOUT}s"
    return 1
  fi
  for n in $AGENTS; do
    [ "$(wc -l <"$(agent_dir "$n")/powered-off")" = 1 ] || { echo "agent $n ran its command more than once"; return 1; }
  done
  # The grace was honoured: no command before ROOM_GRACE (20 s) after the loss.
  python3 - "$T_OFF" "$(for n in $AGENTS; do head -n1 "$(agent_dir "$n")/powered-off"; done)" <<'PY' || return 1
import sys
t_off, ats = float(sys.argv[1]), [float(x) for x in sys.argv[2].split()]
early = [a - t_off for a in ats if a - t_off < 20]
if early:
    sys.exit(f"shutdown command ran {min(early):.1f}s after the loss, before the 20s grace")
print(f"every command ran after the grace: {min(ats) - t_off:.1f}s to {max(ats) - t_off:.1f}s after the loss")
PY
}

# The agents are gone: Prometheus scrapes nothing; each server's shutdown is
# a page in Prometheus (CoolmeshShutdownExecuted if a scrape saw the command
# run, else CoolmeshShutdownUnconfirmed) that Alertmanager holds back, as it
# does their pending shutdowns; no CoolmeshAgentDown or CoolmeshAgentsDown
# (they shut down on purpose).
servers_gone() {
  py wait-query "$tmp" 'up{job="coolmesh"} == 0' --min-series 3 --timeout "$TIMEOUT" || return 1
  py wait-query "$tmp" 'ALERTS{alertname=~"CoolmeshShutdownExecuted|CoolmeshShutdownUnconfirmed", alertstate="firing"}' \
    --min-series 3 --timeout "$TIMEOUT" || return 1
  py wait-am "$tmp" 'CoolmeshShutdownExecuted|CoolmeshShutdownUnconfirmed' --by CoolmeshPowerLost --min 3 --timeout "$TIMEOUT" || return 1
  # The pending shutdowns of agents whose last scrape showed them pending
  # still fire (those seen executed resolved): all held back.
  py wait-am "$tmp" CoolmeshShutdownPending --by CoolmeshPowerLost --min 1 --timeout "$TIMEOUT" || return 1
  if py wait-query "$tmp" 'ALERTS{alertname=~"CoolmeshAgentDown|CoolmeshAgentsDown"}' --timeout 0 >"$tmp/agentdown.out" 2>&1; then
    echo "CoolmeshAgentDown or CoolmeshAgentsDown for servers that shut themselves down:"
    cat "$tmp/agentdown.out"
    return 1
  fi
  echo "no CoolmeshAgentDown, no CoolmeshAgentsDown"
}

# Power is back: the servers boot again (a new boot starts the state machine
# in normal: its saved state is dropped) and their agents start.
servers_boot() {
  local n
  power_on
  wait_tcp "$TARGET_PORT" || return 1
  for n in $AGENTS; do
    rm -f "$(agent_dir "$n")/state/fsm.json"
    start "agent-$n" "$BIN" agent -c "$(agent_dir "$n")/coolmesh.toml" --log.format json
  done
  for n in $AGENTS; do
    wait_url "http://$(agent_addr "$n")/-/ready" || return 1
  done
  py wait-query "$tmp" 'coolmesh_fsm_state{state="normal"} == 1' --min-series 3 --timeout "$TIMEOUT" || return 1
}

check "room: configs are valid" configs_valid || finish
check "room: start webhook, power target, 3 agents (not in dry-run), Alertmanager (production timers), Prometheus" start_stack || finish
check "room: each agent sees the two others alive" cluster_formed || finish
T_OFF=$(date +%s.%N)
say "--- room: mains power lost (the power target closes)"
power_off
check "room: CoolmeshPowerLost fires and reaches the pager webhook" \
  alert_fires CoolmeshPowerLost /coolmesh/pager coolmesh_cluster=e2e target="$POWER_TARGET" || true
check "room: every agent runs its shutdown command after the grace, and its server powers off (agent killed)" \
  servers_power_off || true
check "room: the agents are gone; their shutdown pages fire and are held back by CoolmeshPowerLost; no AgentDown" \
  servers_gone || true
check "room: with every agent off, CoolmeshPowerLost keeps firing for 30s and nothing says RESOLVED" \
  py hold "$tmp" 30 --name CoolmeshPowerLost --match coolmesh_cluster=e2e --since "$T_OFF" || true
T_ON=$(date +%s.%N)
check "room: while power was out the pager got one page, CoolmeshPowerLost, and no notification said RESOLVED" \
  py pages "$tmp" --since "$T_OFF" --resolved-after "$T_ON" --expect CoolmeshPowerLost=firing || true
say "--- room: power is back, the servers boot"
check "room: power back; the agents start again in normal" servers_boot || true
check "room: CoolmeshPowerLost resolves and its RESOLVED reaches the pager" \
  py wait-alert "$tmp" CoolmeshPowerLost --source webhook --path /coolmesh/pager --status resolved \
    --match coolmesh_cluster=e2e --timeout 150 || true
# For a pager group_interval (1m) more: the servers' shutdown pages, held
# back while the room page fired, resolved when the agents came back and
# were never sent, so nothing follows once the room page's inhibition ends.
check "room: the whole event was one page and its resolution on the pager (watched 65s more); nothing RESOLVED before power was back" \
  py pages "$tmp" --since "$T_OFF" --resolved-after "$T_ON" --watch 65 \
    --expect CoolmeshPowerLost=firing --expect CoolmeshPowerLost=resolved || true
check "room: every process stops on SIGTERM with exit status 0" stop_all || true
finish
