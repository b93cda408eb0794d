#!/usr/bin/env bash
# The demo, from a fresh clone, without root, everything on 127.0.0.1: two pods, "sleep" (A) and
# "httpbin" (B), each with our agent started exactly as an injected istio-proxy container (`agent proxy
# sidecar` with the injector's args and env, in a pod-like working directory) and the real Envoy. Each pod
# has its own in-repo control plane standing in for istiod (ADS + Istio CA, TLS, bearer token, ClusterID);
# both sign with one CA (--ca-dir), so both pods trust the same root. Workload certificates reach Envoy
# from the agent's SDS server. The data path is mTLS:
#   curl -> A's Envoy 127.0.0.1:18080 (plaintext) -> mTLS (SAN must be B's SPIFFE ID)
#        -> B's Envoy 127.0.0.1:18443 (client certificate required) -> the app, which echoes the
#           x-forwarded-client-cert header B's Envoy set (By=B, URI=A)
# Then: what each Envoy holds (admin /certs), the agent's identity status, a hot restart of A (the
# request again), and SIGTERM to both agents as the kubelet would (each exits 0).
#   DEMO_KEEP=1 npm run demo     keeps everything running until Ctrl-C
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/peers.sh node
eval "$(bash scripts/peers.sh env | sed -n 's/^PATH=/export PATH=/p')"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
bash scripts/peers.sh envoy
ENVOY_BIN=$(bash scripts/peers.sh env | sed -n 's/^ENVOY_BIN=//p')
npx tsc -p tsconfig.json && node scripts/bundle.mjs
T0=$(date +%s%N)

TD=cluster.local
SA_A=sleep SA_B=httpbin
ID_A=spiffe://$TD/ns/default/sa/$SA_A ID_B=spiffe://$TD/ns/default/sa/$SA_B
# pod A keeps the standard ports; pod B gets its own set (admin, status, Envoy's readiness and Prometheus listeners)
XDS_A=15012 ADMIN_A=15000 STATUS_A=15020 READY_A=15021 PROM_A=15090
XDS_B=15112 ADMIN_B=15100 STATUS_B=15120 READY_B=15121 PROM_B=15190
LISTEN_A=18080 LISTEN_B=18443

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshagent-demo.XXXXXX")
pids=()
failed=""
interrupted=""
tails() {
  for f in "$WORK"/*.log; do
    [ -f "$f" ] || continue
    echo "---- last lines of $(basename "$f")"
    tail -n 25 "$f" | cut -c1-400
  done
}
cleanup() {
  local rc=$?
  if [ -n "$interrupted" ]; then echo "== interrupted: stopping the agents and control planes"
  elif [ "$rc" -ne 0 ] && [ -z "$failed" ]; then echo "demo failed (exit $rc)"; tails; fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT TERM
fail() {
  failed=1
  echo "FAILED: $*"
  tails
  exit 1
}
# json EXPRESSION: parses JSON from stdin as `j`, evaluates the JS expression, prints the result (node: no jq needed)
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const r=eval(process.argv[1]);process.stdout.write(typeof r==="string"?r:JSON.stringify(r,null,2));process.stdout.write("\n")})' "$1"; }

# pod DIR APP: the istio-proxy container's working directory (downward-API files, token; the root cert comes from the control plane)
pod() {
  local dir=$1 app=$2
  mkdir -p "$dir"/etc/istio/proxy "$dir"/etc/istio/pod "$dir"/var/run/secrets/istio "$dir"/var/run/secrets/tokens \
    "$dir"/var/run/secrets/workload-spiffe-uds "$dir"/var/lib/istio/data
  printf 'app="%s"\nsecurity.istio.io/tlsMode="istio"\nservice.istio.io/canonical-name="%s"\n' "$app" "$app" > "$dir/etc/istio/pod/labels"
  printf 'kubectl.kubernetes.io/default-container="%s"\n' "$app" > "$dir/etc/istio/pod/annotations"
  printf 'demo-token-%s-%s' "$app" "$RANDOM" > "$dir/var/run/secrets/tokens/istio-token"
  chmod 600 "$dir/var/run/secrets/tokens/istio-token"
}
POD_A=$WORK/sleep POD_B=$WORK/httpbin
pod "$POD_A" "$SA_A"
pod "$POD_B" "$SA_B"

echo "== control planes (ADS + Istio CA, TLS, one shared CA in $WORK/ca):"
echo "   sleep:   127.0.0.1:$XDS_A  listener 127.0.0.1:$LISTEN_A -> cluster 127.0.0.1:$LISTEN_B over mTLS (peer must be $ID_B)"
echo "   httpbin: 127.0.0.1:$XDS_B  listener 127.0.0.1:$LISTEN_B (mTLS, client certificate required) -> the app"
node build/test/controlplane/main.js --xds-address "127.0.0.1:$XDS_A" --tls --ca-dir "$WORK/ca" \
  --root-cert-out "$POD_A/var/run/secrets/istio/root-cert.pem" --require-token "$(cat "$POD_A/var/run/secrets/tokens/istio-token")" \
  --listener-port "$LISTEN_A" --upstream-port "$LISTEN_B" --upstream-mtls --upstream-san "$ID_B" \
  --upstream-sni "outbound_.8000_._.httpbin.default.svc.cluster.local" > "$WORK/controlplane-sleep.log" 2>&1 &
CP_A=$!
pids+=($CP_A)
node build/test/controlplane/main.js --xds-address "127.0.0.1:$XDS_B" --tls --ca-dir "$WORK/ca" \
  --root-cert-out "$POD_B/var/run/secrets/istio/root-cert.pem" --require-token "$(cat "$POD_B/var/run/secrets/tokens/istio-token")" \
  --listener-port "$LISTEN_B" --listener-mtls --start-upstream --served-by httpbin --echo-header x-forwarded-client-cert \
  > "$WORK/controlplane-httpbin.log" 2>&1 &
CP_B=$!
pids+=($CP_B)
for _ in $(seq 1 150); do
  grep -qs '"event":"ready"' "$WORK/controlplane-sleep.log" && grep -qs '"event":"ready"' "$WORK/controlplane-httpbin.log" && break
  kill -0 "$CP_A" 2>/dev/null && kill -0 "$CP_B" 2>/dev/null || break
  sleep 0.1
done
for p in sleep httpbin; do grep -qs '"event":"ready"' "$WORK/controlplane-$p.log" || fail "control plane for $p did not start"; done
cmp -s "$POD_A/var/run/secrets/istio/root-cert.pem" "$POD_B/var/run/secrets/istio/root-cert.pem" || fail "the two control planes have different roots"

# agent POD-DIR APP LOG ADMIN STATUS READY PROM XDS: `agent proxy sidecar` with the injector's args and env
agent() {
  local dir=$1 app=$2 log=$3 admin=$4 status=$5 ready=$6 prom=$7 xds=$8
  (
    cd "$dir"
    exec env -i PATH="$PATH" HOME="$dir" CLOUD_PLATFORM=none PILOT_CERT_PROVIDER=istiod CA_ADDR="localhost:$xds" \
      POD_NAME="$app-7f8d9" POD_NAMESPACE=default INSTANCE_IP=127.0.0.1 SERVICE_ACCOUNT="$app" HOST_IP=127.0.0.1 ISTIO_CPU_LIMIT=2 \
      PROXY_CONFIG="{\"binaryPath\":\"$ENVOY_BIN\",\"discoveryAddress\":\"localhost:$xds\",\"proxyAdminPort\":$admin,\"statusPort\":$status,\"drainDuration\":\"2s\",\"terminationDrainDuration\":\"2s\"}" \
      ENVOY_STATUS_PORT="$ready" ENVOY_PROMETHEUS_PORT="$prom" \
      ISTIO_META_APP_CONTAINERS="$app" ISTIO_META_CLUSTER_ID=Kubernetes ISTIO_META_INTERCEPTION_MODE=REDIRECT ISTIO_META_WORKLOAD_NAME="$app" \
      ISTIO_META_MESH_ID=cluster.local TRUST_DOMAIN=$TD \
      "$ROOT/build/agent" proxy sidecar --domain default.svc.cluster.local --proxyLogLevel=warning \
        --proxyComponentLogLevel=misc:error --log_output_level=default:info
  ) > "$log" 2>&1 &
}
echo "== agent proxy sidecar in each pod (injector args and env; CA_ADDR = discoveryAddress = localhost:<its control plane>)"
agent "$POD_A" "$SA_A" "$WORK/agent-sleep.log" $ADMIN_A $STATUS_A $READY_A $PROM_A $XDS_A
AGENT_A=$!
pids+=($AGENT_A)
agent "$POD_B" "$SA_B" "$WORK/agent-httpbin.log" $ADMIN_B $STATUS_B $READY_B $PROM_B $XDS_B
AGENT_B=$!
pids+=($AGENT_B)

code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }
ready_a="" ready_b=""
for _ in $(seq 1 300); do
  [ -n "$ready_a" ] || { [ "$(code "http://127.0.0.1:$READY_A/healthz/ready")" = 200 ] && ready_a=1; }
  [ -n "$ready_b" ] || { [ "$(code "http://127.0.0.1:$READY_B/healthz/ready")" = 200 ] && ready_b=1; }
  [ -n "$ready_a" ] && [ -n "$ready_b" ] && break
  kill -0 "$AGENT_A" 2>/dev/null || fail "the sleep agent exited"
  kill -0 "$AGENT_B" 2>/dev/null || fail "the httpbin agent exited"
  sleep 0.1
done
[ -n "$ready_a" ] || fail "the sleep pod did not become ready on :$READY_A"
[ -n "$ready_b" ] || fail "the httpbin pod did not become ready on :$READY_B"
echo "sleep:   GET :$READY_A/healthz/ready -> 200"
echo "httpbin: GET :$READY_B/healthz/ready -> 200"
for p in sleep httpbin; do
  ! grep -q '"kind":"nack"' "$WORK/controlplane-$p.log" || fail "Envoy in $p rejected configuration: $(grep '"kind":"nack"' "$WORK/controlplane-$p.log" | head -1)"
done

echo "== a request: curl -> sleep's Envoy :$LISTEN_A -> mTLS -> httpbin's Envoy :$LISTEN_B -> app"
resp=""
for _ in $(seq 1 50); do
  resp=$(curl -sS -i --max-time 5 "http://127.0.0.1:$LISTEN_A/headers" 2>&1 || true)
  printf '%s' "$resp" | grep -q '^x-forwarded-client-cert' && break
  sleep 0.1
done
printf '%s\n' "$resp" | tr -d '\r' | sed -n '1p;/^x-served-by/p;/^hello/p;/^x-forwarded-client-cert/p' \
  | sed 's/^x-forwarded-client-cert: /x-forwarded-client-cert (as the app received it):\n    /; s/;\([A-Za-z]*=\)/\n    \1/g'
xfcc=$(printf '%s\n' "$resp" | tr -d '\r' | sed -n 's/^x-forwarded-client-cert: //p')
case "$xfcc" in
  "By=$ID_B;"*";URI=$ID_A") ;;
  *) fail "expected x-forwarded-client-cert By=$ID_B;...;URI=$ID_A, got: ${resp:-nothing}" ;;
esac
plain=$(code "http://127.0.0.1:$LISTEN_B/headers")
echo "plaintext straight to httpbin's Envoy :$LISTEN_B -> ${plain/000/refused (no TLS, no client certificate)}"

echo "== certificates each Envoy holds (admin /certs) and what the CA issued"
certs() {
  curl -sS --max-time 2 "http://127.0.0.1:$1/certs" | json '
    [...new Map(j.certificates.flatMap(c => [
      ...(c.cert_chain || []).map(x => ["cert " + x.serial_number, `certificate ${x.subject_alt_names.map(s => s.uri).join(",")}  serial ${x.serial_number}  expires ${x.expiration_time}`]),
      ...(c.ca_cert || []).map(x => ["ca " + x.serial_number, `trusted root  serial ${x.serial_number}  expires ${x.expiration_time}`]),
    ])).values()].map(s => "    " + s).join("\n")'
}
echo "  sleep's Envoy (:$ADMIN_A):"; certs $ADMIN_A
echo "  httpbin's Envoy (:$ADMIN_B):"; certs $ADMIN_B
for p in sleep httpbin; do
  grep '"event":"csr"' "$WORK/controlplane-$p.log" | tail -1 | json '`  the CA (control plane of '"$p"') issued ${j.uris.join(",")}  serial ${j.serial.toLowerCase()}  notAfter ${j.notAfter}`'
done

echo "== the sleep agent's identity (GET :$STATUS_A/debug/status, .identity)"
curl -sS --max-time 2 "http://127.0.0.1:$STATUS_A/debug/status" | json '(({ mode, spiffeId, state, certificate, roots, caEndpoint, consecutiveFailures, lastError, sds }) => ({
    mode, spiffeId, state, certificate, roots, caEndpoint, consecutiveFailures, lastError,
    sds: sds && { listening: sds.listening, streams: sds.streams.map((s) => `${s.resources.join(",")}: ${s.responses} response(s), ${s.nonceAcked === s.nonceSent ? "ACKed" : "not ACKed"}`) },
  }))(j.identity)'

echo "== hot restart of sleep's Envoy (POST :$STATUS_A/restart) and the request again"
curl -sS -X POST "http://127.0.0.1:$STATUS_A/restart"; echo
again=""
for _ in $(seq 1 100); do
  epoch=$(curl -s --max-time 1 "http://127.0.0.1:$ADMIN_A/server_info" | json 'String(j.command_line_options.restart_epoch) + "/" + j.state' 2>/dev/null || true)
  if [ "$epoch" = "1/LIVE" ]; then
    again=$(curl -sS --max-time 5 "http://127.0.0.1:$LISTEN_A/headers" 2>&1 | sed -n 's/^x-forwarded-client-cert: //p')
    [ -n "$again" ] && break
  fi
  sleep 0.1
done
[ -n "$again" ] || fail "no mTLS response after the hot restart (Envoy epoch/state: ${epoch:-unknown})"
echo "epoch 1 LIVE; x-forwarded-client-cert: $again"

if [ -n "${DEMO_KEEP:-}" ]; then
  echo "== running; Ctrl-C to stop. Logs in $WORK:"
  ls "$WORK"/*.log
  echo "   try: curl -s http://127.0.0.1:$LISTEN_A/headers   curl -s http://127.0.0.1:$STATUS_B/debug/status"
  wait "$AGENT_A" "$AGENT_B" || true
  exit 0
fi
echo "== SIGTERM to both agents (drain, then exit)"
kill -TERM "$AGENT_A" "$AGENT_B"
rc_a=0; wait "$AGENT_A" || rc_a=$?
rc_b=0; wait "$AGENT_B" || rc_b=$?
echo "agent exit codes: sleep $rc_a, httpbin $rc_b"
grep -hE 'Envoy command|Readiness succeeded|hot-restarting|Graceful termination|successfully terminated' "$WORK/agent-sleep.log" | cut -c1-200 | sed 's/^/  sleep:   /'
grep -hE 'Readiness succeeded|successfully terminated' "$WORK/agent-httpbin.log" | cut -c1-200 | sed 's/^/  httpbin: /'
[ "$rc_a" = 0 ] && [ "$rc_b" = 0 ] || fail "an agent exited with a non-zero code"
echo "== done in $(( ($(date +%s%N) - T0) / 1000000 )) ms after the build (2 s of it: the agents' termination drain)"
exit 0
