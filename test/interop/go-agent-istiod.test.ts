// Baseline oracle for the full real chain: real istiod (istiod-local) + the Go pilot-agent 1.30 +
// real Envoy 1.40, all inside a private network namespace (so the default agent ports never
// collide with other tests). The agent must become ready (Envoy ACKed istiod's CDS and LDS), Envoy
// must hold a cluster for a ServiceEntry from istiod's config dir, the workload certificate must be
// issued by istiod's plugged-in CA, and a config change must be pushed.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createNetns, startProc, type Netns, type Proc } from '../helpers/go-agent.js';
import { sidecarDir, startIstiod, type Istiod } from '../helpers/istiod.js';
import { pilotAgentBin } from '../helpers/peers.js';
import { poll } from '../helpers/poll.js';

const serviceEntry = (name: string, host: string, port: number): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ${name}
  namespace: default
spec:
  hosts: [${host}]
  ports: [{number: ${port}, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 127.0.0.1}]
`;

void describe('real istiod + Go pilot-agent + real Envoy', { timeout: 180_000 }, () => {
  let netns: Netns | undefined;
  let istiod: Istiod | undefined;
  let agent: Proc | undefined;
  let dir: string | undefined;
  const diag = (): string => `--- agent+envoy ---\n${agent?.output() ?? ''}\n--- istiod (tail) ---\n${(istiod?.logs() ?? '').slice(-6000)}`;

  before(async () => {
    netns = await createNetns('mgo-chain');
    istiod = await startIstiod({ netns, configs: { 'echo.yaml': serviceEntry('ext-echo', 'echo.example.test', 8080) } });
    dir = await mkdtemp(join(tmpdir(), 'go-agent-'));
    const env = await sidecarDir(istiod, dir, { outputCerts: true, proxyConfig: { drainDuration: '5s' } });
    const [cmd, args] = netns.wrap(pilotAgentBin(), ['proxy', 'sidecar', '--proxyLogLevel=warning', '--log_output_level=default:info']);
    agent = startProc(cmd, args, { cwd: dir, env });
  });

  after(async () => {
    await agent?.stop(10_000);
    await istiod?.stop();
    await netns?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void it('becomes ready: Envoy accepted CDS and LDS from istiod through the agent', async () => {
    const ns = netns!;
    await poll('agent /healthz/ready 200', 60_000, async () => ((await ns.fetch('http://127.0.0.1:15020/healthz/ready')).status === 200 ? true : undefined), diag);
    const stats = (await ns.fetch('http://127.0.0.1:15000/stats?filter=update_(success|rejected)$')).body;
    const stat = (name: string): number => Number(new RegExp(`^${name.replace(/\./g, '\\.')}: (\\d+)$`, 'm').exec(stats)?.[1] ?? NaN);
    assert.ok(stat('cluster_manager.cds.update_success') >= 1, stats);
    assert.ok(stat('listener_manager.lds.update_success') >= 1, stats);
    assert.equal(stat('cluster_manager.cds.update_rejected'), 0, stats);
    assert.equal(stat('listener_manager.lds.update_rejected'), 0, stats);
    // Envoy's own readiness listener (pushed by the bootstrap, proxied to the agent)
    assert.equal((await ns.fetch('http://127.0.0.1:15021/healthz/ready')).status, 200);
  });

  void it('Envoy holds the ServiceEntry cluster and the workload cert issued by the plugged-in CA', async () => {
    const ns = netns!;
    const clusters = await poll('ServiceEntry cluster', 30_000, async () => {
      const body = (await ns.fetch('http://127.0.0.1:15000/clusters')).body;
      return body.includes('outbound|8080||echo.example.test') ? body : undefined;
    }, diag);
    assert.match(clusters, /outbound\|8080\|\|echo\.example\.test::127\.0\.0\.1:8080::/);

    const chainFile = join(dir!, 'out/certs/cert-chain.pem');
    await poll('OUTPUT_CERTS cert-chain.pem', 30_000, async () => (existsSync(chainFile) ? true : undefined), diag);
    const pems = (await readFile(chainFile, 'utf8')).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
    const [leaf, intermediate] = pems.map((p) => new X509Certificate(p));
    assert.ok(leaf && intermediate, `chain has leaf + intermediate: ${pems.length}`);
    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep');
    assert.ok(leaf.verify(intermediate.publicKey), 'leaf signed by the intermediate');
    assert.ok(intermediate.verify(new X509Certificate(istiod!.rootCertPem).publicKey), 'intermediate signed by our root');
    assert.equal(intermediate.fingerprint256, new X509Certificate(istiod!.pki.caCertPem).fingerprint256);

    // Envoy got the same identity over SDS
    const secrets = (await ns.fetch('http://127.0.0.1:15000/config_dump?resource=dynamic_active_secrets')).body;
    assert.match(secrets, /"name": "default"/);
    assert.match(secrets, /"name": "ROOTCA"/);
    const certs = (await ns.fetch('http://127.0.0.1:15000/certs')).body;
    assert.match(certs, /spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  });

  void it('pushes a ServiceEntry added to the config dir', async () => {
    const ns = netns!;
    await istiod!.writeConfig('later.yaml', serviceEntry('ext-later', 'later.example.test', 9090));
    await poll('pushed cluster', 30_000, async () => {
      const body = (await ns.fetch('http://127.0.0.1:15000/clusters')).body;
      return body.includes('outbound|9090||later.example.test') ? true : undefined;
    }, diag);
    // istiod saw the agent's identity
    const syncz = (await ns.fetch(`http://127.0.0.1:${istiod!.ports.http}/debug/syncz`)).body;
    assert.match(syncz, /sleep-0\.default/);
  });
});
