// Pod-to-pod mutual TLS through two sidecars, on a mesh on one machine (test/helpers/mesh.ts): the
// real istiod, four pods each in its own network namespace with its own IP, traffic capture applied
// by our `agent istio-iptables`, the real Envoy run by a sidecar agent as uid 1337: the Go pilot-agent
// in go-a and go-b, ours in ours-a and ours-b. A mesh-wide PeerAuthentication STRICT is in force.
//
// For each pair (client → server): Go → Go (the baseline that proves the harness), ours → ours,
// ours → Go, Go → ours:
//   - both proxies are ready and each Envoy holds its own workload identity (admin /certs:
//     cert_chain[0].subject_alt_names[0].uri = spiffe://cluster.local/ns/<ns>/sa/<sa>);
//   - the client's app (uid 1000, captured) GETs the server's Service VIP :80 with Host
//     <svc>.<ns>.svc.cluster.local; the server's app answers and saw x-forwarded-client-cert with
//     By=<server's SPIFFE ID> and URI=<client's SPIFFE ID>: its sidecar terminated mTLS and
//     verified the client's certificate;
//   - TLS in the stats of both Envoys: a handshake on the server's inbound listener 0.0.0.0_15006
//     and on the client's outbound cluster of the server's Service (the pods' `proxy.istio.io/config`
//     annotation includes those stats: Istio's default stats matcher keeps them out);
//   - plaintext straight to the server's pod IP (from the client pod, as uid 1337, so not captured)
//     is refused by the server's sidecar: STRICT is enforced there.
// istiod and the pods start once, in parallel; each pair waits for its own pods.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { poll, startMesh, type Mesh, type MeshPod, type MeshPodSpec } from '../helpers/mesh.js';

/** Readiness deadline, counted from each pod's start (Go agents are ready in a few seconds). */
const READY_MS = 45_000;

// Istio's default stats matcher drops listener and cluster stats; include the TLS ones
const STATS = {
  'proxy.istio.io/config': JSON.stringify({
    proxyStatsMatcher: { inclusionRegexps: ['listener\\..*\\.ssl\\..*', 'cluster\\.outbound\\|.*\\.ssl\\..*'] },
  }),
};

const PODS: MeshPodSpec[] = [
  { name: 'go-a', agent: 'go', annotations: STATS },
  { name: 'go-b', agent: 'go', annotations: STATS },
  { name: 'ours-a', agent: 'ours', annotations: STATS },
  { name: 'ours-b', agent: 'ours', annotations: STATS },
];

const CASES: Array<[client: string, server: string, title: string]> = [
  ['go-a', 'go-b', 'Go agent → Go agent'],
  ['ours-a', 'ours-b', 'our agent → our agent'],
  ['ours-a', 'go-b', 'our agent → Go agent'],
  ['go-a', 'ours-b', 'Go agent → our agent'],
];

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

void describe('mesh: pod-to-pod mTLS (STRICT) through two sidecars, real istiod and Envoy', { timeout: 300_000 }, () => {
  let mesh: Mesh | undefined;

  before(async () => {
    mesh = await startMesh({ mtls: 'STRICT', pods: PODS });
  }, { timeout: 120_000 });

  after(async () => {
    await mesh?.stop();
  }, { timeout: 60_000 });

  const diag = async (...pods: MeshPod[]): Promise<string> => {
    const parts: string[] = [];
    for (const p of pods) {
      const d = await p.diagnose();
      parts.push(`=== ${p.name} (${p.agentKind} agent): ${d.summary}\n${d.detail}`);
    }
    parts.push(`=== istiod (tail)\n${mesh!.istiod.logs().slice(-3000)}`);
    return parts.join('\n');
  };

  for (const [clientName, serverName, title] of CASES) {
    void it(`${title}: ${clientName} → ${serverName} over mTLS`, { timeout: 120_000 }, async () => {
      const m = mesh!;
      const a = m.pod(clientName);
      const b = m.pod(serverName);
      await Promise.all([a.ready(READY_MS), b.ready(READY_MS)]);

      // each Envoy holds its own identity, issued by istiod over the agent's SDS
      for (const p of [a, b]) {
        const uris = await poll(`${p.name}: a workload certificate in Envoy's /certs`, 20_000, async () => {
          const u = await p.certUris();
          return u.length ? u : undefined;
        }, () => diag(p));
        assert.deepEqual([...new Set(uris)], [p.spiffeId], `${p.name} /certs URIs: ${JSON.stringify(uris)}`);
      }

      // B serves several cases: count its inbound handshakes from here on
      const INBOUND = 'listener.0.0.0.0_15006.ssl.handshake';
      const inboundBefore = (await b.stats(`^${esc(INBOUND)}$`)).get(INBOUND) ?? 0;

      // A's app → B's Service VIP, captured by A's sidecar, mTLS to B's sidecar, to B's app
      const path = `/hello-from-${a.name}`;
      const r = await poll(`${a.name} → ${b.host} (${b.vip}:80) answered by ${b.name}'s app`, 30_000, async () => {
        const x = await m.request(a, b, { path });
        return x.status === 200 && (JSON.parse(x.body) as { app?: string }).app === b.name ? x : undefined;
      }, () => diag(a, b));
      const seen = JSON.parse(r.body) as { app: string; url: string; remoteAddress: string; headers: Record<string, string> };
      assert.equal(seen.url, path);
      assert.equal(seen.headers.host, b.host);
      assert.equal(r.headers.server, 'envoy', 'the answer came through the client sidecar');
      // Istio's inbound clusters connect to the app from 127.0.0.6 (upstream bind of the sidecar)
      assert.equal(seen.remoteAddress, '127.0.0.6', 'the request reached the app through the server sidecar');
      const xfcc = seen.headers['x-forwarded-client-cert'] ?? '';
      assert.match(xfcc, new RegExp(`(^|;)By=${esc(b.spiffeId)}(;|$)`), `XFCC at ${b.name}'s app: ${xfcc}`);
      assert.match(xfcc, new RegExp(`(^|;)URI=${esc(a.spiffeId)}(;|$)`), `XFCC at ${b.name}'s app: ${xfcc}`);
      // (the app's own record travels on another pipe than the answer: poll, briefly)
      await poll(`${b.name}'s app recording the request`, 5000, async () => (b.appRequests().some((q) => q.url === path && q.headers['x-forwarded-client-cert'] === xfcc) ? true : undefined));

      // TLS on both Envoys: B's inbound listener, A's outbound cluster for B's Service
      const inbound = await b.stats(`^${esc(INBOUND)}$`);
      assert.ok((inbound.get(INBOUND) ?? 0) > inboundBefore, `${b.name} inbound TLS handshakes, before the request ${inboundBefore}: ${JSON.stringify([...inbound])}`);
      // (the cluster's stat prefix is its observability name, `outbound|80||<host>;` in Istio 1.30)
      const outbound = await a.stats(`^cluster\\.${esc(`outbound|80||${b.host}`)};?\\.ssl\\.handshake$`);
      assert.equal(outbound.size, 1, `${a.name}: one handshake counter for ${b.host}: ${JSON.stringify([...outbound])}`);
      assert.ok([...outbound.values()][0]! >= 1, `${a.name} outbound TLS handshakes to ${b.host}: ${JSON.stringify([...outbound])}`);

      // STRICT at B: plaintext straight to B's pod IP (from A as uid 1337, so not captured) is refused
      const probe = `/plaintext-from-${a.name}`;
      await assert.rejects(m.request(a, b, { as: 'proxy', target: 'pod', path: probe }), /ECONNRESET|socket hang up|EPIPE/);
      assert.ok(!b.appRequests().some((q) => q.url === probe), `${b.name}'s app must not see plaintext`);
    });
  }
});
