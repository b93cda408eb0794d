#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (the Node.js we ship when the machine's
# is older, npm packages, real Envoy, iptables, the Go pilot-agent and istiod built from the Go module
# proxy; peers are cached outside the clone), then typecheck + lint + build (tsc, then the bundle the
# image runs), the container image (podman, scripts/image.sh), then every test (unit, component,
# integration against real peers, the image run as a pod's containers, conformance against Istio's
# goldens). Tests run one file at a time: several share the pod ports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/peers.sh node
eval "$(bash scripts/peers.sh env | sed 's/^/export /')"
echo "== node $(node --version)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/peers.sh all
# headless Chromium renders the status page in test/status/status-page.test.ts
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  echo "== installing chromium from Debian (status page test)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
eval "$(bash scripts/peers.sh env | sed 's/^/export /')"

echo "== typecheck and build"
rm -rf build
npx tsc -p tsconfig.json
node scripts/bundle.mjs
echo "== lint"
npx eslint .

echo "== container image"
# podman (daemonless; runc: crun refuses hybrid cgroup mounts) and debootstrap for the local base images
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
# built once here (cached layers: seconds when nothing changed); test/image/*.test.js run it
export MESHAGENT_IMAGE=localhost/meshagent:latest
bash scripts/image.sh --tag "$MESHAGENT_IMAGE"

echo "== tests"
# unit and component tests live next to the code (build/src), integration tests under build/test
mapfile -t files < <(find build/src build/test -name '*.test.js' | sort)
node --enable-source-maps --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
