#!/usr/bin/env bash
# `npm run bench`: our agent vs the Go pilot-agent, side by side, written to BENCHMARKS.md.
# Needs root (each trial runs in its own network namespace). Not part of `npm test`.
#   npm run bench                  # full run (about 8-10 minutes on 2 cores)
#   npm run bench -- --quick       # fewer repetitions
#   npm run bench -- --only startup,steady --agents go,ours --json results.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (network namespaces); run: sudo npm run bench" >&2
  exit 2
fi
bash scripts/peers.sh node
eval "$(bash scripts/peers.sh env | sed 's/^/export /')"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/peers.sh all
eval "$(bash scripts/peers.sh env | sed 's/^/export /')"

echo "== build" >&2
# tsc emits even when some file has type errors; the bench needs build/src and build/test
npx tsc -p tsconfig.json || echo "bench: tsc reported errors (see above); continuing with what it emitted" >&2
node scripts/bundle.mjs
for f in build/agent build/bundle/main.js build/test/controlplane/server.js build/test/helpers/pod.js build/test/helpers/istiod.js; do
  [ -f "$f" ] || { echo "bench: $f missing after the build" >&2; exit 1; }
done

echo "== bench" >&2
exec node bench/run.mjs "$@"
