#!/usr/bin/env bash
# The Kubernetes layer's CI: fetch helm, build (or reuse) kube-apiserver, run the operator/chart tests.
# Usage: k8s/tools/ci-k8s.sh [pytest args...]   (from the repository root; needs .venv and root for apt)
# First run about 5-6 min (the apiserver build); later runs use ~/.cache/newbank and take ~3 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)
step() { echo "== [ci-k8s +$(( $(date +%s) - started ))s] $*"; }

step "helm"
k8s/tools/get-helm.sh
step "kube-apiserver (bounded by BUILD_TIMEOUT_S, default 1500 s)"
if ! k8s/tools/build-kube-apiserver.sh; then
    echo "kube-apiserver build failed: the real-API-server tests will be skipped" >&2
fi
step "ruff"
.venv/bin/ruff check operator tests/unit/operator tests/k8s tests/integration/operator
step "pytest"
.venv/bin/python -m pytest -p no:cacheprovider tests/unit/operator tests/k8s tests/integration/operator "$@"
step "done"
