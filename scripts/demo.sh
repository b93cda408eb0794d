#!/usr/bin/env bash
# The demo, from a fresh clone: our agent started exactly as an injected istio-proxy container
# (`agent proxy sidecar` with the injector's args and env, in a pod-like working directory), the real
# Envoy, and the in-repo control plane standing in for istiod (TLS on 15012, bearer token, ClusterID).
# It waits for readiness on :15021, sends a request through Envoy to an app behind it, shows the
# agent's status view, then stops the agent with SIGTERM as the kubelet would.
#   DEMO_KEEP=1 npm run demo     keeps everything running until Ctrl-C
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
bash scripts/peers.sh envoy
ENVOY_BIN=$(bash scripts/peers.sh env | sed -n 's/^ENVOY_BIN=//p')
npx tsc -p tsconfig.json && chmod +x build/src/main.js

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshagent-demo.XXXXXX")
POD=$WORK/pod
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$POD"/etc/istio/proxy "$POD"/etc/istio/pod "$POD"/var/run/secrets/istio "$POD"/var/run/secrets/tokens "$POD"/var/lib/istio/data
printf 'app="sleep"\nservice.istio.io/canonical-name="sleep"\n' > "$POD/etc/istio/pod/labels"
printf 'kubectl.kubernetes.io/default-container="sleep"\n' > "$POD/etc/istio/pod/annotations"
TOKEN=demo-token-$RANDOM
printf '%s' "$TOKEN" > "$POD/var/run/secrets/tokens/istio-token"; chmod 600 "$POD/var/run/secrets/tokens/istio-token"

echo "== control plane: ADS (Delta and SotW) + Istio CA on 127.0.0.1:15012 (TLS), app upstream, Envoy listener 127.0.0.1:18080"
node build/test/controlplane/main.js --xds-address 127.0.0.1:15012 --tls --root-cert-out "$POD/var/run/secrets/istio/root-cert.pem" \
  --require-token "$TOKEN" --listener-port 18080 --start-upstream > "$WORK/controlplane.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q '"event":"ready"' "$WORK/controlplane.log" && break; sleep 0.1; done
grep -q '"event":"ready"' "$WORK/controlplane.log" || { cat "$WORK/controlplane.log"; exit 1; }

echo "== agent proxy sidecar (injector args and env; log: $WORK/agent.log)"
(
  cd "$POD"
  exec env -i PATH="$PATH" HOME="$POD" CLOUD_PLATFORM=none PILOT_CERT_PROVIDER=istiod CA_ADDR=istiod.istio-system.svc:15012 \
    POD_NAME=sleep-7f8d9 POD_NAMESPACE=default INSTANCE_IP=127.0.0.1 SERVICE_ACCOUNT=sleep HOST_IP=127.0.0.1 ISTIO_CPU_LIMIT=2 \
    PROXY_CONFIG="{\"binaryPath\":\"$ENVOY_BIN\",\"discoveryAddress\":\"localhost:15012\",\"drainDuration\":\"2s\",\"terminationDrainDuration\":\"2s\"}" \
    ISTIO_META_APP_CONTAINERS=sleep ISTIO_META_CLUSTER_ID=Kubernetes ISTIO_META_INTERCEPTION_MODE=REDIRECT ISTIO_META_WORKLOAD_NAME=sleep \
    ISTIO_META_MESH_ID=cluster.local TRUST_DOMAIN=cluster.local \
    node "$ROOT/build/src/main.js" proxy sidecar --domain default.svc.cluster.local --proxyLogLevel=warning \
      --proxyComponentLogLevel=misc:error --log_output_level=default:info
) > "$WORK/agent.log" 2>&1 &
AGENT=$!
pids+=($AGENT)

ready=""
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15021/healthz/ready)" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "agent did not become ready:"; tail -30 "$WORK/agent.log"; exit 1; }
echo "GET :15021/healthz/ready -> 200"
echo "== a request through Envoy's listener to the app"
curl -sS -i http://127.0.0.1:18080/hello | sed -n '1p;/^x-served-by/p;/^hello/p'
echo "== the agent's status view (GET :15020/debug/status, loopback only)"
curl -sS http://127.0.0.1:15020/debug/status | head -40
echo "== hot restart (POST :15020/restart) and the request again"
curl -sS -X POST http://127.0.0.1:15020/restart; echo
sleep 1
curl -sS http://127.0.0.1:18080/hello
if [ -n "${DEMO_KEEP:-}" ]; then
  echo "== running; Ctrl-C to stop (agent log: $WORK/agent.log)"
  wait "$AGENT"
  exit 0
fi
echo "== SIGTERM to the agent (drain, then exit)"
kill -TERM "$AGENT"
rc=0; wait "$AGENT" || rc=$?
echo "agent exit code: $rc"
grep -E 'Envoy command|Readiness succeeded|hot-restarting|Graceful termination|successfully terminated' "$WORK/agent.log" | cut -c1-220
exit "$rc"
