#!/usr/bin/env bash
# Build kube-apiserver 1.20.2 from Debian's `kubernetes` source package, for the operator's
# end-to-end test against a real API server. No kube-apiserver binary is packaged anywhere reachable;
# Debian's source package ships its vendor tree, so the build runs offline (GOPROXY=off).
#
# Idempotent: the binary is cached in ${NEWBANK_CACHE:-~/.cache/newbank}/bin/kube-apiserver and the
# script exits at once if it is there. Takes about 4-5 minutes on 2 cores the first time.
# Needs root for apt-get (golang-go, golang-github-modern-go-reflect2-dev); the system's apt config is
# left alone (deb-src comes from a private source list).
set -euo pipefail

CACHE="${NEWBANK_CACHE:-$HOME/.cache/newbank}"
BIN="$CACHE/bin/kube-apiserver"
WORK="$CACHE/kubernetes-src"
TIMEOUT_S="${BUILD_TIMEOUT_S:-1500}"

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
    echo "kube-apiserver: cached at $BIN ($("$BIN" --version))"
    exit 0
fi
mkdir -p "$CACHE/bin" "$WORK"
started=$(date +%s)

log() { echo "[build-kube-apiserver +$(( $(date +%s) - started ))s] $*"; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

if ! command -v go >/dev/null 2>&1 || ! command -v rsync >/dev/null 2>&1 || [[ ! -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]]; then
    log "installing golang-go, golang-github-modern-go-reflect2-dev, rsync"
    $SUDO apt-get install -y -q golang-go golang-github-modern-go-reflect2-dev rsync >/dev/null
fi

# A private apt configuration with deb-src, made from the system's own sources.
APTDIR="$CACHE/apt-src"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/sources.list.d"
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > "$APTDIR/sources.list.d/debian-src.sources"
APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
          -o "Dir::State::Lists=$APTDIR/lists")

cd "$WORK"
if ! ls -d kubernetes-1.20*/ >/dev/null 2>&1; then
    log "fetching the kubernetes source package (deb-src)"
    apt-get "${APT_OPTS[@]}" update -q >/dev/null
    apt-get "${APT_OPTS[@]}" source --download-only kubernetes >/dev/null
    dsc=$(ls kubernetes_*.dsc | head -1)
    dpkg-source --no-check -x "$dsc" >/dev/null
fi
SRC=$(ls -d "$WORK"/kubernetes-1.20*/ | head -1)
cd "$SRC"

# The vendored reflect2 1.0.1 crashes under Go >= 1.18 on the first custom-resource write.
log "replacing vendored modern-go/reflect2 by Debian's 1.0.2"
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
sed -i 's#^\(github.com/modern-go/reflect2\) v1.0.1$#\1 v1.0.2#; s#^\(\# github.com/modern-go/reflect2\) v1.0.1$#\1 v1.0.2#' \
    vendor/modules.txt || true

rm -rf _output .make  # a half-finished earlier run leaves stale stamps behind
log "building cmd/kube-apiserver (timeout ${TIMEOUT_S}s)"
export CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor GOCACHE="$CACHE/go-build"
timeout "$TIMEOUT_S" nice make WHAT=cmd/kube-apiserver >"$CACHE/kube-apiserver-build.log" 2>&1 || {
    log "build failed; see $CACHE/kube-apiserver-build.log"; tail -20 "$CACHE/kube-apiserver-build.log"; exit 1; }
out=$(find _output -type f -name kube-apiserver -perm -u+x | head -1)
install -m 0755 "$out" "$BIN"
log "done: $BIN ($("$BIN" --version))"
