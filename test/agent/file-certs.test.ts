// File-mounted certificates (FILE_MOUNTED_CERTS, ./etc/certs published as a Kubernetes Secret volume:
// files are symlinks into `..data`, which is swapped atomically on every update): 100 consecutive swaps,
// each a new certificate, each served by Envoy (admin /certs) before the next swap; a bad update (a key
// that does not match, a corrupt PEM) is rejected with a message naming the file and the last good
// certificate stays in Envoy; a good update afterwards is served again.
import assert from 'node:assert/strict';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startControlPlane } from '../controlplane/server.js';
import { startHttpUpstream } from '../controlplane/http-upstream.js';
import { TestCa } from '../controlplane/pki.js';
import { ecCsr } from '../controlplane/ca-client.js';
import { createPod } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const SWAPS = 100;

async function envoyLeaves(): Promise<string[]> {
  const c = JSON.parse((await httpGet('http://127.0.0.1:15000/certs', { timeoutMs: 2000 })).body) as { certificates: Array<{ cert_chain?: Array<{ serial_number: string }> }> };
  return [...new Set(c.certificates.flatMap((x) => (x.cert_chain ?? []).map((l) => l.serial_number.toLowerCase())))];
}

test(`file certificates: ${SWAPS} symlink swaps, each served by Envoy; bad updates rejected, the last good kept`, { timeout: 180_000 }, async (t) => {
  const ca = new TestCa();
  const token = 'token-sleep';
  const app = await startHttpUpstream({ name: 'app' });
  const pod = await createPod({ token, env: { FILE_MOUNTED_CERTS: 'true' }, proxyConfig: { drainDuration: '2s', terminationDrainDuration: '2s' } });
  const cp = await startControlPlane({ tls: true, ca, requireToken: token, http: { listenerPort: 18443, listenerMtls: true, upstreamPort: app.port } });
  t.after(async () => {
    await pod.cleanup();
    await cp.stop();
    await app.close();
  });
  const certs = join(pod.cwd, 'etc/certs');
  await mkdir(certs, { recursive: true });
  let version = 0;
  /** Publishes a new version as the kubelet does: write ..<ts>/, point ..data_tmp at it, rename over ..data. */
  const publish = async (files: { chain: string; key: string; root: string }): Promise<void> => {
    const v = `..2026_${++version}`;
    await mkdir(join(certs, v));
    await writeFile(join(certs, v, 'cert-chain.pem'), files.chain);
    await writeFile(join(certs, v, 'key.pem'), files.key);
    await writeFile(join(certs, v, 'root-cert.pem'), files.root);
    await symlink(v, join(certs, '..data_tmp'));
    await rename(join(certs, '..data_tmp'), join(certs, '..data'));
    if (version > 2) await rm(join(certs, `..2026_${version - 2}`), { recursive: true, force: true });
  };
  const issue = (): { chain: string; key: string; root: string; serial: string } => {
    const c = ecCsr(ID);
    const { chain, leaf } = ca.issueLeaf(c.pem, 3600);
    return { chain: chain.join(''), key: c.key.export({ type: 'pkcs8', format: 'pem' }).toString(), root: ca.rootCertPem, serial: leaf.serialNumber.toLowerCase() };
  };
  const first = issue();
  await publish(first);
  for (const f of ['cert-chain.pem', 'key.pem', 'root-cert.pem']) await symlink(`..data/${f}`, join(certs, f));
  // xDS over TLS with the mounted root (FILE_MOUNTED_CERTS takes ./etc/certs/root-cert.pem)
  const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
  pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
  const agent = pod.start();
  await eventually(async () => (await httpGet('http://127.0.0.1:15021/healthz/ready', { timeoutMs: 2000 }).catch(() => ({ status: 0 }))).status === 200, 30_000, 'ready').catch((e: Error) => {
    throw new Error(`${e.message}\n${agent.output().slice(-4000)}`);
  });
  assert.deepEqual(await envoyLeaves(), [first.serial]);

  const latencies: number[] = [];
  for (let i = 0; i < SWAPS; i++) {
    const next = issue();
    const t0 = Date.now();
    await publish(next);
    await eventually(async () => ((await envoyLeaves()).join() === next.serial ? true : undefined), 10_000, `swap ${i + 1}: serial ${next.serial} in Envoy`, 10).catch((e: Error) => {
      throw new Error(`${e.message}\n${agent.output().slice(-3000)}`);
    });
    latencies.push(Date.now() - t0);
  }
  latencies.sort((x, y) => x - y);
  t.diagnostic(`${SWAPS} swaps served; swap -> in Envoy: median ${latencies[SWAPS / 2]} ms, p95 ${latencies[Math.floor(SWAPS * 0.95)]} ms, max ${latencies.at(-1)} ms`);
  assert.equal(latencies.length, SWAPS);

  // a key that does not match the certificate: rejected, named, the last good stays
  const good = await envoyLeaves();
  const bad = issue();
  await publish({ ...bad, key: issue().key });
  await eventually(async () => (/rejected a change of its files, keeping the last good certificate: private key .*etc\/certs\/key\.pem does not match the certificate in .*etc\/certs\/cert-chain\.pem/.test(agent.output()) ? true : undefined), 10_000, 'the mismatch logged');
  // a corrupt PEM
  await publish({ ...bad, chain: '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n' });
  await eventually(async () => (/rejected a change of its files, keeping the last good certificate: certificate chain .*cert-chain\.pem: (no PEM certificate found|certificate 1 does not parse)/.test(agent.output()) ? true : undefined), 10_000, 'the corrupt PEM logged');
  assert.deepEqual(await envoyLeaves(), good, 'Envoy keeps the last good certificate');
  const metrics = (await httpGet('http://127.0.0.1:15020/stats/prometheus')).body;
  assert.ok(Number(/^istio_agent_num_file_secret_failures_total (\d+)/m.exec(metrics)?.[1]) >= 2, metrics);
  const status = JSON.parse((await httpGet('http://127.0.0.1:15020/debug/status')).body) as { identity: { mode: string; fileResources: Array<{ resource: string; lastError?: string }> } };
  assert.equal(status.identity.mode, 'file-mounted');
  assert.match(status.identity.fileResources.find((f) => f.resource === 'default')?.lastError ?? '', /cert-chain\.pem/);
  // and a good update is served again
  const last = issue();
  await publish(last);
  await eventually(async () => ((await envoyLeaves()).join() === last.serial ? true : undefined), 10_000, 'the next good certificate in Envoy');
  assert.ok(agent.child.exitCode === null, 'the agent is running');
});
