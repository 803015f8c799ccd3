#!/usr/bin/env bash
# The ipmi thermal source against a simulated BMC: ipmi_sim (Debian
# openipmi) serving agent/tests/fixtures/ipmi/sim/coolmesh.emu over IPMI
# 2.0 (lanplus) on 127.0.0.1, no init system:
#
# - a temp dir holding lan.conf (from sim/lan.conf.in: the LAN channel and
#   the emulator console on two free loopback ports), the password file
#   for ipmitool (-f) and a freeipmi config file holding the same password,
#   the simulator's state directory and inlet.val (the "Inlet Temp" value
#   the simulator polls);
# - ipmi_sim started in that directory (-n: no console on stdin);
# - `cargo test -p coolmesh --test ipmi_sim` with COOLMESH_IPMI_SIM* set: the
#   test reads the sensors with ipmitool -I lanplus and with ipmi-sensors
#   through the real source, checks values, thresholds and roles, changes
#   "Inlet Temp" (the file) and "Exhaust Temp" (a console command), then
#   stops the simulator (console `quit`) and checks the source goes down.
#
# Everything listens on 127.0.0.1 only and is stopped on exit; the temp dir
# is removed.
#
# Usage: bash .ci/ipmi.sh   (root; installs openipmi ipmitool freeipmi-tools when missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v ipmi_sim >/dev/null || ! command -v ipmitool >/dev/null || ! command -v ipmi-sensors >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends openipmi ipmitool freeipmi-tools
fi

sim=agent/tests/fixtures/ipmi/sim
dir=$(mktemp -d /tmp/coolmesh-ipmi.XXXXXX)
[ -n "$dir" ] && [ -d "$dir" ] || { echo "ipmi: no temp dir" >&2; exit 1; }
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$dir/state"
mkdir -m 0700 "$dir/sdrcache"

# Two free UDP/TCP ports: bind 0, read back, release (ipmi_sim binds right after).
free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); t=socket.socket(); t.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])'
}
port=$(free_port)
console=$(free_port)
sed -e "s/@PORT@/$port/" -e "s/@CONSOLE@/$console/" "$sim/lan.conf.in" > "$dir/lan.conf"
echo 23 > "$dir/inlet.val"
(umask 077; printf 'sim-password\n' > "$dir/password"; printf 'username coolmesh\npassword sim-password\n' > "$dir/freeipmi.conf")

emu="$PWD/$sim/coolmesh.emu"
(cd "$dir" && exec ipmi_sim -c "$dir/lan.conf" -f "$emu" -s "$dir/state" -n) > "$dir/sim.log" 2>&1 &
pid=$!
# Ready once "Inlet Temp" reads the polled file (23): before its first poll
# (500 ms) the simulator answers 0 for it.
ok=
for _ in $(seq 50); do
  if ipmitool -I lanplus -H 127.0.0.1 -p "$port" -U coolmesh -f "$dir/password" -C 3 sdr type Temperature 2>/dev/null | grep -Eq '^Inlet Temp .*\| 23 degrees C$'; then
    ok=1
    break
  fi
  sleep 0.2
done
if [ -z "$ok" ]; then
  echo "ipmi: the simulator does not answer on 127.0.0.1:$port" >&2
  cat "$dir/sim.log" >&2
  exit 1
fi
echo "ipmi: ipmi_sim answers on 127.0.0.1:$port (console $console)"

export COOLMESH_IPMI_SIM="127.0.0.1:$port"
export COOLMESH_IPMI_SIM_CONSOLE="127.0.0.1:$console"
export COOLMESH_IPMI_SIM_DIR="$dir"
cargo test -p coolmesh --locked --test ipmi_sim -- --nocapture --test-threads=1
