#!/usr/bin/env bash
# The nut:// power target against a real upsd (Debian nut-server) with the
# dummy-ups driver, no init system:
#
# - a private NUT config in a temp dir (ups.conf: one UPS "ups" on dummy-ups
#   in dummy-loop mode reading a status file; upsd.conf: LISTEN 127.0.0.1 on
#   a free port, MAXAGE 5; an empty upsd.users: reading needs no login),
#   the state directory beside it;
# - the driver and upsd started as root with NUT_CONFPATH / NUT_STATEPATH
#   pointing there (upsd from /lib/nut: Debian's /usr/sbin/upsd is a wrapper
#   that reads /etc/nut/nut.conf and does nothing unless MODE is set there);
# - `cargo test -p coolmesh --test nut_upsd` with COOLMESH_NUT_* set: the
#   test switches the status file between OL, OB and OB LB and checks that
#   the probe reads up / down / down-urgent with the runtime, and that the
#   runner hands the state machine an urgent battery; then an unknown UPS,
#   a hung driver (DATA-STALE), no driver and a stopped upsd must all read
#   *unknown*, never down (the test stops them through the pid files);
# - TLS: a CA and a certificate for 127.0.0.1 made with openssl, imported
#   into an NSS database (Debian's upsd does TLS with NSS: CERTPATH is the
#   database, CERTIDENT the certificate's nickname and the database
#   password); the test reads the UPS over STARTTLS (nuts://...?ca=) and
#   checks that a certificate from another CA is refused.
#
# Everything listens on 127.0.0.1 only and is stopped on exit; the temp dir
# is removed.
#
# Usage: bash .ci/nut.sh   (root; installs nut-server nut-client when missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DRIVER=/lib/nut/dummy-ups
UPSD=/lib/nut/upsd
if ! [ -x "$DRIVER" ] || ! [ -x "$UPSD" ] || ! command -v upsc >/dev/null \
   || ! command -v certutil >/dev/null || ! command -v pk12util >/dev/null || ! command -v openssl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends nut-server nut-client libnss3-tools openssl
  rm -f /usr/sbin/policy-rc.d
fi

dir=$(mktemp -d /tmp/coolmesh-nut.XXXXXX)
[ -n "$dir" ] && [ -d "$dir" ] || { echo "nut: no temp dir" >&2; exit 1; }
cleanup() {
  local p
  for p in "$dir"/run/*.pid; do
    if [ -f "$p" ]; then kill -CONT "$(cat "$p")" 2>/dev/null || true; kill "$(cat "$p")" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$dir/etc" "$dir/run"
chmod 0700 "$dir/run"

# A free port: bind 0, read it back, release it (upsd binds it right after).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

printf 'ups.status: OL\nbattery.runtime: 1800\nbattery.charge: 100\n' > "$dir/status.seq"
printf '[ups]\n  driver = dummy-ups\n  port = %s\n  mode = dummy-loop\n  desc = "coolmesh CI"\n' \
  "$dir/status.seq" > "$dir/etc/ups.conf"
# TLS material: a CA, upsd's certificate for 127.0.0.1, an unrelated CA.
tls="$dir/tls"
mkdir -p "$tls/certdb"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 2 \
  -subj "/CN=coolmesh CI NUT CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$tls/upsd.key" -out "$tls/upsd.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$tls/ext.cnf"
openssl x509 -req -in "$tls/upsd.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
  -out "$tls/upsd.pem" -days 2 -extfile "$tls/ext.cnf" 2>/dev/null
openssl pkcs12 -export -in "$tls/upsd.pem" -inkey "$tls/upsd.key" -certfile "$tls/ca.pem" \
  -name upsd -out "$tls/upsd.p12" -passout pass:
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/other.key" -out "$tls/other.pem" -days 2 \
  -subj "/CN=another CA" 2>/dev/null
printf 'ci-db-pass\n' > "$tls/dbpw"
certutil -N -d "sql:$tls/certdb" -f "$tls/dbpw"
pk12util -i "$tls/upsd.p12" -d "sql:$tls/certdb" -k "$tls/dbpw" -W '' >/dev/null

printf 'LISTEN 127.0.0.1 %s\nMAXAGE 5\nCERTPATH %s\nCERTIDENT "upsd" "ci-db-pass"\n' \
  "$port" "$tls/certdb" > "$dir/etc/upsd.conf"
: > "$dir/etc/upsd.users"
chmod 0600 "$dir/etc/ups.conf" "$dir/etc/upsd.conf" "$dir/etc/upsd.users"

export NUT_CONFPATH="$dir/etc" NUT_STATEPATH="$dir/run" NUT_ALTPIDPATH="$dir/run"
"$DRIVER" -a ups -u root
"$UPSD" -u root

for _ in $(seq 50); do
  if upsc "ups@127.0.0.1:$port" ups.status 2>/dev/null | grep -qx OL; then
    break
  fi
  sleep 0.2
done
echo "nut: upsd on 127.0.0.1:$port says ups.status $(upsc "ups@127.0.0.1:$port" ups.status)"

export COOLMESH_NUT_ADDR="127.0.0.1:$port"
export COOLMESH_NUT_STATUS_FILE="$dir/status.seq"
export COOLMESH_NUT_RUN_DIR="$dir/run"
export COOLMESH_NUT_CA="$tls/ca.pem"
export COOLMESH_NUT_OTHER_CA="$tls/other.pem"
cargo test -p coolmesh --locked --test nut_upsd -- --nocapture --test-threads=1
