#!/usr/bin/env bash
# HTTPS and basic auth against the real Prometheus (Go's TLS client), with
# deploy/web-config.example.yml itself:
#
# - `promtool check web-config` accepts the example (so it is toolkit-valid)
#   and `coolmesh check-config` does too;
# - agent A serves the example (TLS + basic auth, password "change-me");
#   agent B requires a client certificate (RequireAndVerifyClientCert);
# - Prometheus scrapes them with `scheme: https`, `tls_config` and
#   `basic_auth`; its API must show up == 1 for the right credentials and
#   up == 0 for a wrong password and for a missing client certificate;
# - curl: plain HTTP on the TLS port gets a 400, no credentials a 401.
#
# Certificates come from openssl (installed with apt when missing). Every
# process listens on 127.0.0.1 only and is stopped on exit; the temp dir is
# removed. Needs prometheus, promtool, curl, python3, openssl.
#
# Usage: bash .ci/web-tls.sh
#   COOLMESH_BIN=path   agent binary (default $CARGO_TARGET_DIR/release/coolmesh,
#                       built when missing; target/debug/coolmesh works too)
#   WEB_TLS_TIMEOUT=60  bound of every wait, in seconds
# Ends with "web-tls: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
TIMEOUT=${WEB_TLS_TIMEOUT:-60}

passed=0
failed=0
ok() { echo "web-tls: ok: $*"; passed=$((passed + 1)); }
bad() { echo "web-tls: FAILED: $*"; failed=$((failed + 1)); }
finish() {
  echo "web-tls: ${passed} passed, ${failed} failed"
  [ "$failed" -eq 0 ]
}

# ------------------------------------------------------------------ tools
if ! command -v openssl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends openssl
fi
for tool in prometheus promtool curl python3 openssl; do
  if ! command -v "$tool" >/dev/null; then
    echo "web-tls: missing $tool (Debian: apt-get install -y prometheus curl python3 openssl)"
    failed=1
    finish
  fi
done

BIN=${COOLMESH_BIN:-}
if [ -z "$BIN" ]; then
  target=${CARGO_TARGET_DIR:-target}
  case "$target" in /*) ;; *) target="$REPO/$target" ;; esac
  BIN="$target/release/coolmesh"
  [ -x "$BIN" ] || cargo build --release --locked -p coolmesh --bin coolmesh
fi
[ -x "$BIN" ] || { echo "web-tls: no agent binary at $BIN"; exit 1; }
echo "web-tls: agent is $BIN"

# ------------------------------------------------------------------ processes
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coolmesh-web-tls.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# logged_addr LOG: the HOST:PORT a process said it listens on (the agent's
# JSON "serving HTTP(S)" line, Prometheus' "Listening on" line), waiting up
# to $TIMEOUT s. Every process binds port 0 itself: no port is picked here
# and released for a process to bind later (anyone may take it meanwhile).
logged_addr() {
  python3 - "$1" "$TIMEOUT" <<'PY'
import json, re, sys, time
path, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            f = json.loads(line)
            if f.get("msg") in ("serving HTTP", "serving HTTPS"):
                print(f["address"])
                sys.exit(0)
        except (ValueError, KeyError, TypeError):
            m = re.search(r'msg="Listening on" address=(\S+)', line)
            if m:
                print(m.group(1))
                sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
}

# ------------------------------------------------------------------ certificates
# A CA, a server certificate for 127.0.0.1 (both agents), and a client
# certificate for Prometheus.
pki=$tmp/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=coolmesh CI CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  issue() { # NAME CN EXTENSIONS
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
      -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  issue server 127.0.0.1 "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
  issue client prometheus "extendedKeyUsage=clientAuth"
)

# Agent A: the shipped example, certificates where it expects them.
a=$tmp/a
mkdir -p "$a/tls"
cp deploy/web-config.example.yml "$a/web-config.yml"
cp "$pki/server.crt" "$a/tls/coolmesh.crt"
cp "$pki/server.key" "$a/tls/coolmesh.key"
# Agent B: mTLS only.
b=$tmp/b
mkdir -p "$b"
cat >"$b/web-config.yml" <<EOF
tls_server_config:
  cert_file: $pki/server.crt
  key_file: $pki/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: $pki/ca.crt
EOF

if promtool check web-config "$a/web-config.yml"; then
  ok "promtool check web-config accepts deploy/web-config.example.yml"
else
  bad "promtool check web-config rejects deploy/web-config.example.yml"
fi
if promtool check web-config "$b/web-config.yml" >/dev/null; then
  ok "promtool check web-config accepts the mTLS config"
else
  bad "promtool check web-config rejects the mTLS config"
fi
for f in "$a/web-config.yml" "$b/web-config.yml"; do
  if "$BIN" check-config "$f"; then
    ok "coolmesh check-config $(basename "$(dirname "$f")")/web-config.yml"
  else
    bad "coolmesh check-config $f"
  fi
done

for x in a b; do
  "$BIN" agent --path.sysfs agent/tests/fixtures/sysfs --web.listen-address 127.0.0.1:0 \
    --web.config.file "$tmp/$x/web-config.yml" --state-dir "$tmp/$x/state" --node.name "tls-$x" \
    --cluster.listen /ip4/127.0.0.1/tcp/0 --cluster.no-mdns --cluster.insecure-no-psk --dry-run --sensors.interval 1s \
    --log.format json >"$tmp/$x/agent.log" 2>&1 &
  pids+=($!)
done
for x in a b; do
  addr=$(logged_addr "$tmp/$x/agent.log") || {
    bad "agent $x never said where it listens"
    tail -n 20 "$tmp/$x/agent.log"
    finish
  }
  printf -v "port_$x" '%s' "${addr##*:}"
done

wait_ok() { # URL CURL-ARGS...
  local url=$1 i
  shift
  for i in $(seq 1 $((TIMEOUT * 5))); do
    curl -sf -o /dev/null --max-time 2 "$@" "$url" && return 0
    sleep 0.2
  done
  return 1
}
A=https://127.0.0.1:$port_a
B=https://127.0.0.1:$port_b
if wait_ok "$A/-/ready" --cacert "$pki/ca.crt" -u prometheus:change-me; then
  ok "agent A answers over HTTPS with basic auth"
else
  bad "agent A never became ready over HTTPS"
  tail -n 20 "$tmp/a/agent.log"
fi
if wait_ok "$B/-/ready" --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key"; then
  ok "agent B answers over HTTPS with a client certificate"
else
  bad "agent B never became ready over mTLS"
  tail -n 20 "$tmp/b/agent.log"
fi

code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
c=$(code --cacert "$pki/ca.crt" "$A/metrics")
[ "$c" = 401 ] && ok "no credentials: 401" || bad "no credentials: HTTP $c, want 401"
c=$(code --cacert "$pki/ca.crt" -u prometheus:wrong "$A/metrics")
[ "$c" = 401 ] && ok "wrong password: 401" || bad "wrong password: HTTP $c, want 401"
c=$(code "http://127.0.0.1:$port_a/metrics")
[ "$c" = 400 ] && ok "plain HTTP on the TLS port: 400" || bad "plain HTTP on the TLS port: HTTP $c, want 400"
c=$(code --cacert "$pki/ca.crt" "$B/metrics")
[ "$c" = 000 ] && ok "mTLS agent refuses a client without certificate" || bad "mTLS agent without client certificate: HTTP $c"
# The whole answer first: `| grep -q` exits at the first match, and the
# command then dies writing the rest to a closed pipe (EPIPE), which
# pipefail reports as a failure about one run in two.
if out=$("$BIN" state --url "$A" --tls.ca-file "$pki/ca.crt" --basic-auth.username prometheus \
  --basic-auth.password-file <(printf 'change-me\n') --json) && grep -q '"node": "tls-a"' <<<"$out"; then
  ok "coolmesh state over HTTPS + basic auth"
else
  bad "coolmesh state over HTTPS + basic auth"
fi

# ------------------------------------------------------------------ Prometheus
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tls-basic-auth
    scheme: https
    tls_config:
      ca_file: $pki/ca.crt
    basic_auth:
      username: prometheus
      password: change-me
    static_configs:
      - targets: ["127.0.0.1:$port_a"]
  - job_name: tls-wrong-password
    scheme: https
    tls_config:
      ca_file: $pki/ca.crt
    basic_auth:
      username: prometheus
      password: not-the-password
    static_configs:
      - targets: ["127.0.0.1:$port_a"]
  - job_name: mtls
    scheme: https
    tls_config:
      ca_file: $pki/ca.crt
      cert_file: $pki/client.crt
      key_file: $pki/client.key
    static_configs:
      - targets: ["127.0.0.1:$port_b"]
  - job_name: mtls-no-client-cert
    scheme: https
    tls_config:
      ca_file: $pki/ca.crt
    static_configs:
      - targets: ["127.0.0.1:$port_b"]
EOF
promtool check config "$tmp/prometheus.yml" >/dev/null && ok "promtool check config" || bad "promtool check config"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
  --web.listen-address=127.0.0.1:0 >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
prom_addr=$(logged_addr "$tmp/prometheus.log") || {
  bad "Prometheus never said where it listens"
  tail -n 20 "$tmp/prometheus.log"
  finish
}
PROM=http://$prom_addr
wait_ok "$PROM/-/ready" || { bad "Prometheus never became ready"; tail -n 20 "$tmp/prometheus.log"; finish; }

# Wait until every job has a verdict, then check each.
if python3 - "$PROM" "$TIMEOUT" <<'PY'
import json, sys, time, urllib.parse, urllib.request
prom, timeout = sys.argv[1], float(sys.argv[2])
want = {"tls-basic-auth": 1.0, "tls-wrong-password": 0.0, "mtls": 1.0, "mtls-no-client-cert": 0.0}
def query(q):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]
deadline = time.time() + timeout
got = {}
while time.time() < deadline:
    got = {s["metric"]["job"]: float(s["value"][1]) for s in query("up")}
    if all(j in got for j in want) and got == want:
        break
    time.sleep(0.5)
bad = 0
for job, v in want.items():
    ok = got.get(job) == v
    bad += not ok
    print(f"  up{{job=\"{job}\"}} = {got.get(job)} (want {v:g}) {'ok' if ok else 'WRONG'}")
with urllib.request.urlopen(prom + "/api/v1/targets", timeout=5) as r:
    for t in json.load(r)["data"]["activeTargets"]:
        if t["lastError"]:
            print(f"  {t['labels']['job']}: {t['lastError']}")
# Real data came through, not just a 200.
series = query('coolmesh_build_info{job=~"tls-basic-auth|mtls"}')
print(f"  coolmesh_build_info series over TLS: {len(series)}")
sys.exit(1 if bad or len(series) != 2 else 0)
PY
then
  ok "Prometheus: up == 1 with the right credentials / client certificate, up == 0 with a wrong password / none"
else
  bad "Prometheus scrape results"
  tail -n 10 "$tmp/prometheus.log"
fi

finish
