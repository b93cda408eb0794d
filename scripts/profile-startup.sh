#!/usr/bin/env bash
# `npm run profile:startup`: where the agent's start-up time and memory go. Runs the benchmark's start-up
# trial for our agent only (its own network namespace, the in-repo control plane, the real Envoy), with
# Node.js's CPU profiler on, and a heap snapshot taken once the agent is ready. Writes to profiles/ (or
# $1): one .cpuprofile per start (open in Chrome DevTools > Performance, or VS Code), one .heapsnapshot
# (DevTools > Memory), and summary.txt (scripts/profile-summary.mjs: where the milliseconds go, by
# phase and by package). Needs root, as `npm run bench` does. See docs/performance.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=$(realpath -m "${1:-profiles}")
if [ "$(id -u)" -ne 0 ]; then
  echo "profile:startup: needs root (network namespaces); run: sudo npm run profile:startup" >&2
  exit 2
fi
bash scripts/peers.sh node
eval "$(bash scripts/peers.sh env | sed 's/^/export /')"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
bash scripts/peers.sh all
eval "$(bash scripts/peers.sh env | sed 's/^/export /')"
npx tsc -p tsconfig.json && node scripts/bundle.mjs
rm -rf "$OUT"; mkdir -p "$OUT"
# the sampling interval is 250 us: fine enough to see each phase, coarse enough not to slow it much
BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=$OUT --cpu-prof-interval=250 --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=$OUT" \
BENCH_HEAP_SNAPSHOT=$OUT \
  node bench/run.mjs --quick --only startup --agents ours --out "$OUT/startup.md"
node scripts/profile-summary.mjs "$OUT" | tee "$OUT/summary.txt"
