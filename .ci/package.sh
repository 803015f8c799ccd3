#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg -i on this
# machine, checks what it installed, upgrades over it, removes and purges it.
# Needs root (CI runs as root on Debian). Installs cargo-deb if missing
# (a few minutes of compiling, once per machine). Prints the .deb's path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}

fail() { echo "package: FAILED: $*" >&2; exit 1; }
passed=0
ok() { echo "package: ok: $*"; passed=$((passed + 1)); }

export DEBIAN_FRONTEND=noninteractive
need=()
dpkg -s adduser >/dev/null 2>&1 || need+=(adduser)
command -v lintian >/dev/null || need+=(lintian)
command -v man >/dev/null || need+=(man-db)
if [ ${#need[@]} -gt 0 ]; then apt-get update -q; apt-get install -y -q --no-install-recommends "${need[@]}"; fi
if dpkg -s coolmesh >/dev/null 2>&1; then
  fail "a coolmesh package is already installed here; remove it first (dpkg -P coolmesh)"
fi

# Release binary, generated man pages, completions and changelog, cargo deb.
deb=$(bash .ci/build-deb.sh)
echo "package: built $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'

contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/coolmesh ./usr/lib/systemd/system/coolmesh.service ./etc/coolmesh/coolmesh.toml \
  ./usr/share/polkit-1/rules.d/50-coolmesh.rules ./usr/share/doc/coolmesh/operator-guide.md \
  ./usr/share/doc/coolmesh/changelog.Debian.gz ./usr/share/doc/coolmesh/changelog.gz ./usr/share/lintian/overrides/coolmesh \
  ./usr/share/man/man1/coolmesh.1.gz ./usr/share/man/man1/coolmesh-agent.1.gz ./usr/share/man/man1/coolmesh-room-cancel.1.gz \
  ./usr/share/bash-completion/completions/coolmesh ./usr/share/zsh/vendor-completions/_coolmesh \
  ./usr/share/fish/vendor_completions.d/coolmesh.fish \
  ./usr/share/doc/coolmesh/examples/prometheus/prometheus.yml ./usr/share/doc/coolmesh/examples/dashboards/coolmesh-room.json; do
  grep -q " $f\$" <<<"$contents" || fail "$f missing from the package"
done
grep -q ' ./lib/systemd/' <<<"$contents" && fail "a file under /lib/systemd (units belong in /usr/lib/systemd)"
ok "package contents (unit in /usr/lib/systemd, man pages, completions, changelog)"

# lintian, Debian's package checker: every tag it still reports is either
# fixed or overridden with its reason in deploy/debian/lintian-overrides
# (shipped as /usr/share/lintian/overrides/coolmesh, where lintian reads it).
# Errors, warnings and info tags alike fail CI (pedantic and experimental
# tags are not run).
out=$(lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb" 2>&1) \
  || fail "lintian reports errors or warnings; fix them or override them with a reason:
$out"
grep -E '^[EWI]: ' <<<"$out" && fail "lintian reports the info tags above; fix them or override them with a reason"
ok "lintian: no error, warning or info tag left; $(grep -c '^coolmesh: ' deploy/debian/lintian-overrides) overridden with their reasons (deploy/debian/lintian-overrides)"

# This machine's own /etc/coolmesh and /var/lib/coolmesh (a developer's
# keygen, another test) are set aside and put back afterwards: the purge at
# the end deletes both.
saved=$(mktemp -d)
for d in /etc/coolmesh /var/lib/coolmesh; do
  if [ -e "$d" ]; then mkdir -p "$saved$(dirname "$d")" && mv "$d" "$saved$d"; fi
done
cleanup() {
  dpkg -P coolmesh >/dev/null 2>&1 || true
  for d in /etc/coolmesh /var/lib/coolmesh; do
    if [ -e "$saved$d" ]; then rm -rf "$d" && mv "$saved$d" "$d"; fi
  done
  rm -rf "$saved"
}
trap cleanup EXIT

# An operator who ran `coolmesh keygen` as root before installing: the
# package must hand that identity to the coolmesh user.
"$target/release/coolmesh" keygen --state-dir /var/lib/coolmesh > "$saved/peer-before"

echo "package: dpkg -i"
dpkg -i "$deb"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ "$(coolmesh -V)" = "coolmesh $version" ] || fail "coolmesh -V says '$(coolmesh -V)', want 'coolmesh $version'"
coolmesh --version | head -n 1 | grep -q "^coolmesh $version (branch: .*, revision: .*)$" \
  || fail "coolmesh --version's first line is '$(coolmesh --version | head -n 1)'"
ok "coolmesh --version: $(coolmesh --version | head -n 1)"
# The man pages and completions, installed where man and the shells look.
page=$(MANPAGER=cat MANWIDTH=100 man coolmesh-agent 2>/dev/null) || fail "man coolmesh-agent finds no page"
grep -q -- '--web.listen-address' <<<"$page" || fail "man coolmesh-agent does not list --web.listen-address"
MANPAGER=cat man coolmesh 2>/dev/null | grep -q 'coolmesh-room(1)' || fail "man coolmesh does not point to coolmesh-room(1)"
# bash-completion loads /usr/share/bash-completion/completions/coolmesh on
# demand; sourcing it must register the function, which completes commands.
words=$(bash -c 'source /usr/share/bash-completion/completions/coolmesh
  COMP_WORDS=(coolmesh ro); COMP_CWORD=1; COMP_LINE="coolmesh ro"; COMP_POINT=${#COMP_LINE}
  f=$(complete -p coolmesh | sed -n "s/.*-F \([^ ]*\) .*/\1/p"); "$f" coolmesh ro coolmesh; echo "${COMPREPLY[*]}"') \
  || fail "the bash completion does not load"
grep -qw room <<<"$words" && grep -qw roster <<<"$words" || fail "bash completes 'coolmesh ro' to '$words', want room and roster"
ok "man coolmesh, man coolmesh-agent; bash completes 'coolmesh ro' to: $words"
# The fresh install's preflight, as root, for the service user coolmesh:
# config, token, cluster key, programs, power-off permission. Exit 0
# (warnings only: the dry run, no power targets yet, no roster).
coolmesh check-config --config /etc/coolmesh/coolmesh.toml
ok "preflight (check-config --config) passes on the fresh install"
# Following the old advice (chmod 600 the key) locks the service user out:
# the preflight must say so, naming the key and its line.
chmod 0600 /etc/coolmesh/swarm.key
if out=$(coolmesh preflight --config /etc/coolmesh/coolmesh.toml 2>&1); then
  fail "preflight passed with swarm.key 0600 root: $out"
fi
grep -q 'cluster.psk_file: /etc/coolmesh/swarm.key: the service user coolmesh cannot read it' <<<"$out" \
  || fail "preflight did not name the unreadable key: $out"
chmod 0640 /etc/coolmesh/swarm.key
coolmesh preflight >/dev/null 2>&1 || fail "preflight (default config path) fails after restoring the key"
ok "preflight fails on a key the service user cannot read, and names it"

dpkg-query -W -f='${Conffiles}\n' coolmesh | grep -q '/etc/coolmesh/coolmesh.toml' || fail "config is not a conffile"
ok "/etc/coolmesh/coolmesh.toml is a conffile"
getent passwd coolmesh >/dev/null || fail "no coolmesh user"
[ "$(getent passwd coolmesh | cut -d: -f7)" = /usr/sbin/nologin ] || fail "coolmesh user has a login shell"
ok "system user: $(getent passwd coolmesh)"
[ "$(stat -c '%a %U:%G' /var/lib/coolmesh)" = "700 coolmesh:coolmesh" ] || fail "/var/lib/coolmesh is $(stat -c '%a %U:%G' /var/lib/coolmesh)"
ok "/var/lib/coolmesh 700 coolmesh:coolmesh"
[ "$(stat -c '%a %U:%G' /etc/coolmesh/token)" = "640 root:coolmesh" ] || fail "/etc/coolmesh/token is $(stat -c '%a %U:%G' /etc/coolmesh/token)"
[ "$(tr -d '\n' < /etc/coolmesh/token | wc -c)" -eq 64 ] || fail "token is not 64 hex digits"
ok "/etc/coolmesh/token 640 root:coolmesh"
[ "$(stat -c '%a %U:%G' /etc/coolmesh/swarm.key)" = "640 root:coolmesh" ] || fail "/etc/coolmesh/swarm.key is $(stat -c '%a %U:%G' /etc/coolmesh/swarm.key)"
head -n1 /etc/coolmesh/swarm.key | grep -qx '/key/swarm/psk/1.0.0/' || fail "swarm.key is not a swarm key file"
runuser -u coolmesh -- cat /etc/coolmesh/swarm.key >/dev/null || fail "the service user cannot read swarm.key"
ok "/etc/coolmesh/swarm.key 640 root:coolmesh, readable by the service user"
grep -qx 'dry_run = true' /etc/coolmesh/coolmesh.toml || fail "the installed config is not a dry run"
grep -qx 'psk_file = "/etc/coolmesh/swarm.key"' /etc/coolmesh/coolmesh.toml || fail "the installed config does not use the cluster key"
grep -qx 'token_file = "/etc/coolmesh/token"' /etc/coolmesh/coolmesh.toml || fail "the installed config does not use the token"
runuser -u coolmesh -- cat /etc/coolmesh/token >/dev/null || fail "the service user cannot read the token"
ok "the installed config is a dry run with the cluster key and the token"
# The service user can create its identity in its state directory and read
# the sensors (as the unit would run it).
peer=$(runuser -u coolmesh -- coolmesh keygen --state-dir /var/lib/coolmesh)
[ "$peer" = "$(cat "$saved/peer-before")" ] || fail "the identity created before the install was replaced"
ok "coolmesh user owns its identity (created by root before the install): $peer"
sysfs=$(mktemp -d)
cp -a agent/tests/fixtures/sysfs "$sysfs/" && chmod -R a+rX "$sysfs"
runuser -u coolmesh -- coolmesh sensors --path.sysfs "$sysfs/sysfs" >/dev/null
rm -rf "$sysfs"
ok "coolmesh user reads sensors"

if command -v systemd-analyze >/dev/null; then
  # Without a running systemd, verify still parses the unit and checks its
  # directives, the ExecStart binary and the Documentation= file.
  systemd-analyze verify --man=no /usr/lib/systemd/system/coolmesh.service
  ok "systemd-analyze verify coolmesh.service"
else
  echo "package: systemd-analyze not available; unit not verified"
fi

echo "package: upgrade (dpkg -i over itself)"
# A decision journal entry, as the agent writes it (CRC-32 of the JSON,
# then the JSON), must survive the upgrade and be read back by explain.
python3 - <<'PY'
import json, time, zlib, os, pwd
e = {"seq": 1, "at_ms": int(time.time() * 1000), "kind": "trigger", "trigger": "power", "active": True}
j = json.dumps(e, separators=(",", ":")).encode()
path = "/var/lib/coolmesh/journal.log"
with open(path, "wb") as f:
    f.write(b"%08x " % zlib.crc32(j) + j + b"\n")
u = pwd.getpwnam("coolmesh")
os.chown(path, u.pw_uid, u.pw_gid)
PY
sum=$(sha256sum < /etc/coolmesh/token)
psksum=$(sha256sum < /etc/coolmesh/swarm.key)
echo "# local edit" >> /etc/coolmesh/coolmesh.toml
dpkg -i --force-confold "$deb" >/dev/null
[ "$(sha256sum < /etc/coolmesh/token)" = "$sum" ] || fail "the upgrade replaced the token"
[ "$(sha256sum < /etc/coolmesh/swarm.key)" = "$psksum" ] || fail "the upgrade replaced the cluster key"
tail -n1 /etc/coolmesh/coolmesh.toml | grep -q '# local edit' || fail "the upgrade replaced the edited config"
[ "$(runuser -u coolmesh -- coolmesh keygen --state-dir /var/lib/coolmesh)" = "$peer" ] || fail "the upgrade changed the identity"
runuser -u coolmesh -- coolmesh explain --state-dir /var/lib/coolmesh --since 1h | grep -q "power trigger active" \
  || fail "the upgrade lost the decision journal (coolmesh explain --state-dir)"
ok "upgrade keeps config, token, cluster key, identity, decision journal"

echo "package: dpkg -r"
dpkg -r coolmesh >/dev/null
[ ! -e /usr/bin/coolmesh ] || fail "/usr/bin/coolmesh left after dpkg -r"
[ -e /var/lib/coolmesh/identity.key ] || fail "dpkg -r removed the state directory"
[ -e /var/lib/coolmesh/journal.log ] || fail "dpkg -r removed the decision journal"
ok "dpkg -r removes the program, keeps the state"
dpkg -P coolmesh >/dev/null
[ ! -e /var/lib/coolmesh ] || fail "dpkg -P left /var/lib/coolmesh"
[ ! -e /etc/coolmesh/token ] || fail "dpkg -P left the token"
[ ! -e /etc/coolmesh/swarm.key ] || fail "dpkg -P left the cluster key"
ok "dpkg -P removes state, token and cluster key"
echo "package: all checks passed: $deb"
echo "package: $passed passed, 0 failed"
