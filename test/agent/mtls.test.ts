// mTLS between two pods on this host's loopback, each with our agent and the real Envoy, certificates from
// the in-repo CA over the agent's SDS: "sleep" (A, default ports) routes to "httpbin" (B, its own ports),
// whose listener requires a client certificate and tells the app who called (x-forwarded-client-cert).
// Checks that Envoy accepts the control plane's mTLS resources (no NACK), the request path, and that the
// listener and the cluster enforce what they should (no client certificate, a foreign CA, a wrong peer SAN).
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startControlPlane, type ControlPlane } from '../controlplane/server.js';
import { startHttpUpstream, type HttpUpstream } from '../controlplane/http-upstream.js';
import { TestCa } from '../controlplane/pki.js';
import { ecCsr } from '../controlplane/ca-client.js';
import { createPod, type Pod, type RunningAgent } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

const ID_A = 'spiffe://cluster.local/ns/default/sa/sleep';
const ID_B = 'spiffe://cluster.local/ns/default/sa/httpbin';
const LISTEN_A = 18080;
const LISTEN_B = 18443;
const PORTS_B = { admin: 15100, status: 15120, ready: 15121, prometheus: 15190 };
const SNI = 'outbound_.8000_._.httpbin.default.svc.cluster.local';
const XFCC = /^x-forwarded-client-cert: By=([^;]+);Hash=[0-9a-f]{64};URI=(.+)$/m;

interface Side {
  pod: Pod;
  cp: ControlPlane;
  agent?: RunningAgent;
}

/** An HTTPS request to B's listener straight from the test, with or without a client certificate. */
function direct(o: { ca: string; key?: string; cert?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: LISTEN_B,
        path: '/direct',
        ca: o.ca,
        ...(o.key && o.cert ? { key: o.key, cert: o.cert } : {}),
        // the server's certificate names a SPIFFE ID (URI SAN), not a host: check the chain only
        checkServerIdentity: () => undefined,
        agent: false,
        timeout: 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

void describe('mTLS between two pods (our agent + real Envoy each, SDS certificates from the test CA)', () => {
  const ca = new TestCa();
  let app: HttpUpstream;
  let a: Side;
  let b: Side;

  async function side(o: { name: string; sa: string; token: string; extraPc?: Record<string, unknown>; env?: Record<string, string> }, http: Parameters<typeof startControlPlane>[0]): Promise<Side> {
    const pod = await createPod({
      name: o.name,
      serviceAccount: o.sa,
      token: o.token,
      labels: { app: o.sa },
      proxyConfig: { drainDuration: '2s', terminationDrainDuration: '2s', ...o.extraPc },
      ...(o.env ? { env: o.env } : {}),
    });
    const cp = await startControlPlane({ tls: true, ca, requireToken: o.token, rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'), ...http });
    // discoveryAddress and CA_ADDR as istiod's: `localhost:<port>` (TLS server name istiod.istio-system.svc)
    const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
    pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
    pod.env.CA_ADDR = `localhost:${cp.port}`;
    return { pod, cp };
  }

  before(async () => {
    app = await startHttpUpstream({ name: 'httpbin', echoHeaders: ['x-forwarded-client-cert'] });
    b = await side(
      {
        name: 'httpbin-0',
        sa: 'httpbin',
        token: 'token-httpbin',
        extraPc: { proxyAdminPort: PORTS_B.admin, statusPort: PORTS_B.status },
        env: { ENVOY_STATUS_PORT: String(PORTS_B.ready), ENVOY_PROMETHEUS_PORT: String(PORTS_B.prometheus), ISTIO_META_WORKLOAD_NAME: 'httpbin', ISTIO_META_APP_CONTAINERS: 'httpbin' },
      },
      { http: { listenerPort: LISTEN_B, listenerMtls: true, upstreamPort: app.port, servedBy: 'httpbin' } },
    );
    a = await side({ name: 'sleep-0', sa: 'sleep', token: 'token-sleep' }, { http: { listenerPort: LISTEN_A, upstreamPort: LISTEN_B, upstreamMtls: { san: ID_B, sni: SNI } } });
    b.agent = b.pod.start();
    a.agent = a.pod.start();
    const ready = (port: number) => async () => (await httpGet(`http://127.0.0.1:${port}/healthz/ready`, { timeoutMs: 2000 })).status === 200;
    try {
      await Promise.all([eventually(ready(15021), 30_000, 'sleep ready on :15021'), eventually(ready(PORTS_B.ready), 30_000, `httpbin ready on :${PORTS_B.ready}`)]);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- sleep agent:\n${a.agent.output().slice(-3000)}\n--- httpbin agent:\n${b.agent.output().slice(-3000)}`, { cause: e });
    }
  });

  after(async () => {
    for (const s of [a, b]) {
      if (!s) continue;
      await s.pod.cleanup();
      await s.cp.stop();
    }
    await app?.close();
  });

  void it('Envoy accepts the mTLS listener and cluster (ACK, no NACK)', () => {
    for (const s of [a, b]) {
      assert.deepEqual(s.cp.requests.filter((r) => r.kind === 'nack'), []);
      for (const t of ['Listener', 'Cluster']) assert.ok(s.cp.requests.some((r) => r.kind === 'ack' && r.typeUrl.endsWith(`.${t}`)), `${t} ACKed`);
    }
  });

  void it("a request through A reaches B's app over mTLS; the app sees By=B and URI=A in x-forwarded-client-cert", async () => {
    const r = await eventually(async () => {
      const res = await httpGet(`http://127.0.0.1:${LISTEN_A}/headers`);
      return res.status === 200 ? res : undefined;
    }, 10_000, 'a 200 through sleep');
    assert.equal(r.headers['x-served-by'], 'httpbin');
    const m = XFCC.exec(r.body);
    assert.ok(m, r.body);
    assert.equal(m[1], ID_B);
    assert.equal(m[2], ID_A);
  });

  void it('each Envoy holds the certificate its CA issued, for its own SPIFFE ID, under the shared root', async () => {
    for (const [s, admin, id] of [[a, 15000, ID_A], [b, PORTS_B.admin, ID_B]] as const) {
      const certs = JSON.parse((await httpGet(`http://127.0.0.1:${admin}/certs`)).body) as {
        certificates: Array<{ cert_chain?: Array<{ serial_number: string; subject_alt_names: Array<{ uri?: string }> }>; ca_cert?: Array<{ serial_number: string }> }>;
      };
      const leaves = certs.certificates.flatMap((c) => c.cert_chain ?? []);
      const issued = s.cp.csrs.filter((c) => c.ok).at(-1)!;
      assert.deepEqual(issued.uris, [id]);
      assert.ok(leaves.length > 0);
      for (const l of leaves) {
        assert.deepEqual(l.subject_alt_names.map((n) => n.uri), [id]);
        assert.equal(l.serial_number.toLowerCase(), issued.serial!.toLowerCase());
      }
      const roots = certs.certificates.flatMap((c) => c.ca_cert ?? []);
      assert.ok(roots.length > 0 && roots.every((r) => r.serial_number.toLowerCase() === ca.root.x509.serialNumber.toLowerCase()));
    }
  });

  void it("B's listener refuses a client without a certificate and one from another CA, and accepts any identity of the mesh's CA", async () => {
    const root = ca.rootCertPem;
    await assert.rejects(direct({ ca: root }), /alert certificate required/);
    const foreign = new TestCa();
    const intruder = ecCsr('spiffe://cluster.local/ns/default/sa/tester');
    const foreignChain = foreign.signCsr(intruder.pem, 600);
    await assert.rejects(direct({ ca: root, key: intruder.key.export({ type: 'pkcs8', format: 'pem' }).toString(), cert: foreignChain.slice(0, 2).join('') }), /alert unknown ca/);
    const tester = ecCsr('spiffe://cluster.local/ns/default/sa/tester');
    const chain = ca.signCsr(tester.pem, 600);
    const ok = await direct({ ca: root, key: tester.key.export({ type: 'pkcs8', format: 'pem' }).toString(), cert: chain.slice(0, 2).join('') });
    assert.equal(ok.status, 200);
    const m = XFCC.exec(ok.body);
    assert.ok(m, ok.body);
    assert.deepEqual([m[1], m[2]], [ID_B, 'spiffe://cluster.local/ns/default/sa/tester']);
  });

  void it("A's cluster refuses B when B's SPIFFE ID is not the one expected (SAN matcher), and recovers when it is", async () => {
    const acked = (): number => a.cp.requests.filter((r) => r.kind === 'ack' && r.typeUrl.endsWith('.Cluster')).length;
    let before = acked();
    a.cp.setHttpConfig({ listenerPort: LISTEN_A, upstreamPort: LISTEN_B, upstreamMtls: { san: 'spiffe://cluster.local/ns/default/sa/not-httpbin', sni: SNI } });
    await a.cp.waitFor('CDS ACK', () => acked() > before);
    await eventually(async () => (await httpGet(`http://127.0.0.1:${LISTEN_A}/headers`)).status === 503, 10_000, 'a 503 with the wrong SAN');
    before = acked();
    a.cp.setHttpConfig({ listenerPort: LISTEN_A, upstreamPort: LISTEN_B, upstreamMtls: { san: ID_B, sni: SNI } });
    await a.cp.waitFor('CDS ACK', () => acked() > before);
    await eventually(async () => (await httpGet(`http://127.0.0.1:${LISTEN_A}/headers`)).status === 200, 10_000, 'a 200 with the right SAN again');
    assert.deepEqual(a.cp.requests.filter((r) => r.kind === 'nack'), []);
  });
});
