#!/usr/bin/env bash
# Builds the Debian package (no root needed) and prints its path: the
# release binary, then what the package ships beside it that is generated
# (man pages and shell completions from the command line, the Debian
# changelog from CHANGELOG.md), then `cargo deb`. A bare `cargo deb -p
# coolmesh` fails: those generated files are its assets.
# Installs cargo-deb if missing (a few minutes of compiling, once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: installing cargo-deb" >&2
  cargo install cargo-deb --locked --version 3.8.0 -q
fi

# Reuses the release build when CI made one already (live-checks).
cargo build --release -p coolmesh --locked -q
bin="$target/release/coolmesh"

# cargo-deb finds built files under the target/release/ prefix wherever the
# target directory really is (CARGO_TARGET_DIR): agent/Cargo.toml names
# these as target/release/package/.... It takes them for build products and
# does not compress them, so the man pages are gzipped here (-n: no name or
# time stamp inside, the package stays reproducible).
gen="$target/release/package"
rm -rf "$gen"
"$bin" generate man --out "$gen/man" >/dev/null
gzip -9n "$gen"/man/*.1
for shell in bash zsh fish; do
  "$bin" generate completions "$shell" --out "$gen/completions" >/dev/null
done

# The changelog is read from a fixed path (cargo-deb does not remap it),
# target/debian-changelog in the source tree (ignored by git).
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
maintainer=$(sed -n 's/^maintainer = "\(.*\)"/\1/p' agent/Cargo.toml | head -n1)
mkdir -p target
python3 .ci/debian-changelog.py CHANGELOG.md coolmesh "$version" "$maintainer" > target/debian-changelog

# --strip: release builds keep line tables (profile.release debug = 1); the
# packaged binary does not need them (11 MB installed instead of 82).
cargo deb -p coolmesh --locked -q --strip --no-build >&2
ls -t "$target"/debian/coolmesh_*.deb | head -n1
