// Proxyless gRPC (DISABLE_ENVOY=true, as Istio's grpc-agent injection template runs the agent): no Envoy
// and no SDS server; the agent fetches the workload certificate at start, writes it to OUTPUT_CERTS where
// grpc-bootstrap.json's file_watcher certificate provider reads it, renews it before expiry, and still
// serves the xDS proxy socket and the status port.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startControlPlane } from '../controlplane/server.js';
import { createPod } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

const TOKEN = 'proxyless-token';

test('DISABLE_ENVOY: certificates in OUTPUT_CERTS (key 0600), renewed, no Envoy and no SDS socket; SIGTERM exits 0', { timeout: 60_000 }, async (t) => {
  const pod = await createPod({ token: TOKEN, env: { DISABLE_ENVOY: 'true', OUTPUT_CERTS: './var/lib/istio/data', SECRET_TTL: '6s' } });
  const cp = await startControlPlane({ tls: true, rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'), requireToken: TOKEN, http: { listenerPort: 18080, upstreamPort: 1 } });
  t.after(async () => {
    await pod.cleanup();
    await cp.stop();
  });
  const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
  pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
  pod.env.CA_ADDR = `localhost:${cp.port}`;
  await mkdir(join(pod.cwd, 'var/lib/istio/data'), { recursive: true });
  const agent = pod.start();
  const out = join(pod.cwd, 'var/lib/istio/data');
  await eventually(async () => existsSync(join(out, 'root-cert.pem')) && existsSync(join(out, 'cert-chain.pem')), 15_000, 'certificates in OUTPUT_CERTS');
  const chain1 = await readFile(join(out, 'cert-chain.pem'), 'utf8');
  const leaf = new X509Certificate(chain1);
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep');
  assert.ok(leaf.checkPrivateKey(createPrivateKey(await readFile(join(out, 'key.pem'), 'utf8'))));
  assert.equal((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600, 'the key is the agent\'s alone outside Kubernetes');
  assert.equal((await readFile(join(out, 'root-cert.pem'), 'utf8')).trim(), cp.ca.rootCertPem.trim());
  // gRPC's file_watcher provider reads exactly these files
  const grpc = JSON.parse(await readFile(join(pod.cwd, 'etc/istio/proxy/grpc-bootstrap.json'), 'utf8')) as { certificate_providers: { default: { config: Record<string, string> } } };
  assert.deepEqual(grpc.certificate_providers.default.config, {
    certificate_file: 'var/lib/istio/data/cert-chain.pem',
    private_key_file: 'var/lib/istio/data/key.pem',
    ca_certificate_file: 'var/lib/istio/data/root-cert.pem',
    refresh_interval: '900s',
  });
  // renewed (TTL 6 s: due after about 3 s) and rewritten
  await eventually(async () => (await readFile(join(out, 'cert-chain.pem'), 'utf8')) !== chain1, 15_000, 'a renewed certificate in OUTPUT_CERTS');
  assert.ok(new X509Certificate(await readFile(join(out, 'cert-chain.pem'), 'utf8')).checkPrivateKey(createPrivateKey(await readFile(join(out, 'key.pem'), 'utf8'))), 'key and chain replaced together');
  // no Envoy, no SDS socket; the xDS socket and the status port are there
  assert.equal(existsSync(join(pod.cwd, 'var/run/secrets/workload-spiffe-uds/socket')), false);
  assert.equal(existsSync(join(pod.cwd, 'etc/istio/proxy/envoy-rev.json')), false);
  assert.ok((await stat(join(pod.cwd, 'etc/istio/proxy/XDS'))).isSocket(), agent.output());
  assert.equal((await httpGet('http://127.0.0.1:15020/healthz/ready')).status, 200, (await httpGet('http://127.0.0.1:15020/debug/status')).body);
  const status = JSON.parse((await httpGet('http://127.0.0.1:15020/debug/status')).body) as { identity: { mode: string; state: string } };
  assert.equal(status.identity.mode, 'proxyless');
  assert.equal(status.identity.state, 'ready');
  assert.match(agent.output(), /DISABLE_ENVOY is set: running without Envoy/);
  agent.signal('SIGTERM');
  const exit = await agent.exited;
  assert.equal(exit.code, 0, agent.output());
});
