// The secret cache against a CA that signs with the test control plane's CA (real X.509, real keys):
// pre-warm, waiting requests, proactive rotation, CA outages and refusals, invalid responses, root
// rotation, the mesh root file, file certificates and OUTPUT_CERTS.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as Status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { TestCa } from '../../test/controlplane/pki.js';
import { memoryLogger } from '../lib/log.js';
import { CaCallError, type CaClient } from './ca-client.js';
import { SecretCache, type CacheSettings } from './cache.js';
import { KeyPool } from './keys.js';
import { identityMetrics } from './metrics.js';
import { pemCertBlocks } from './pem.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';

type Mode = 'ok' | 'down' | 'deny' | ((csr: string, ttl: number) => string[]);

/** A CA client signing with a TestCa, whose behaviour the test switches. */
class FakeCa implements CaClient {
  mode: Mode = 'ok';
  calls = 0;
  signed = 0;
  lastTtl = 0;
  constructor(public ca: TestCa) {}
  async sign(csr: string, ttl: number): Promise<string[]> {
    this.calls++;
    this.lastTtl = ttl;
    const m = this.mode;
    if (m === 'down') throw new CaCallError(Status.UNAVAILABLE, 'connection refused', 'create certificate: rpc error: code = Unavailable desc = connection refused');
    if (m === 'deny') throw new CaCallError(Status.PERMISSION_DENIED, 'no identities', 'create certificate: rpc error: code = PermissionDenied desc = no identities');
    this.signed++;
    return typeof m === 'function' ? m(csr, ttl) : this.ca.signCsr(csr, ttl);
  }
  close(): void {}
}

const serialOf = (chainPem: string): string => new X509Certificate(pemCertBlocks(chainPem)[0]!).serialNumber;

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

void describe('SecretCache', () => {
  let dir: string;
  let ca: TestCa;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cache-'));
    ca = new TestCa();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  let n = 0;
  async function setup(o: { settings?: Partial<CacheSettings>; ca?: FakeCa | null } = {}) {
    const d = join(dir, String(++n));
    await mkdir(d, { recursive: true });
    const settings: CacheSettings = {
      spiffeId: ID,
      secretTtlMs: 24 * 3600_000,
      graceRatio: 0.5,
      graceRatioJitter: 0,
      pkcs8Key: false,
      certChainPath: join(d, 'etc/certs/cert-chain.pem'),
      keyPath: join(d, 'etc/certs/key.pem'),
      rootCertPath: join(d, 'etc/certs/root-cert.pem'),
      outputCertsDir: '',
      outputKeyMode: 0o600,
      osRootCertPath: '',
      meshRootCertPath: '',
      filePollMs: 60_000,
      fileDebounceMs: 20,
      ...o.settings,
    };
    const fake = o.ca === null ? undefined : (o.ca ?? new FakeCa(ca));
    const registry = new Registry();
    const metrics = identityMetrics(registry, () => cache.expirySeconds());
    const { log, lines } = memoryLogger('default:debug');
    const cache = new SecretCache({ settings, log: log.scope('cache'), metrics, ...(fake ? { ca: fake, keys: new KeyPool({ kind: 'ec', curve: 'P256' }) } : {}) });
    const pushes: string[] = [];
    cache.onUpdate((name) => pushes.push(name));
    return { d, cache, fake, registry, lines, pushes, settings };
  }

  void it('pre-warms: the certificate is issued at start, before anything asks, then served from the cache', async () => {
    const { cache, fake, registry, d } = await setup({ settings: { outputCertsDir: '' } });
    await cache.start();
    await waitFor('pre-warmed certificate', () => cache.current());
    assert.equal(fake!.calls, 1);
    assert.equal(fake!.lastTtl, 86400, 'SECRET_TTL default 24h as validity_duration seconds');
    const item = await cache.generateSecret('default');
    const leaf = new X509Certificate(pemCertBlocks(item.certificateChain!)[0]!);
    assert.equal(leaf.subjectAltName, `URI:${ID}`);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(item.privateKey!)));
    // the chain is the CA's elements concatenated; ROOTCA is the CA's last element
    assert.equal(pemCertBlocks(item.certificateChain!).length, 3);
    const root = await cache.generateSecret('ROOTCA');
    assert.equal(root.rootCert, ca.rootCertPem.trim());
    // any other name gets the workload certificate under that name
    assert.equal((await cache.generateSecret('spiffe://x')).certificateChain, item.certificateChain);
    assert.equal(fake!.calls, 1, 'served from the cache');
    const text = await registry.metrics();
    assert.match(text, /istio_agent_num_outgoing_requests\{request_type="csr"\} 1/);
    const expiry = Number(/istio_agent_cert_expiry_seconds\{resource_name="default"\} ([\d.]+)/.exec(text)?.[1]);
    assert.ok(expiry > 86000 && expiry <= 86400, text);
    assert.equal(cache.status().state, 'ready');
    await cache.close();
    void d;
  });

  void it('a request while the CA is down waits (no error) and is answered when the CA returns; failures are counted by reason', async () => {
    const fake = new FakeCa(ca);
    fake.mode = 'down';
    const { cache, registry, lines } = await setup({ ca: fake });
    await cache.start();
    const pending = cache.generateSecret('default');
    let settled = false;
    void pending.then(() => (settled = true), () => (settled = true));
    await waitFor('two failed attempts', () => fake.calls >= 2);
    assert.equal(settled, false, 'the request waits');
    assert.equal(cache.status().state, 'pending');
    assert.match(cache.status().lastError?.message ?? '', /Unavailable desc = connection refused/);
    fake.mode = 'ok';
    const item = await pending;
    assert.ok(item.certificateChain);
    assert.match(await registry.metrics(), /istio_agent_cert_refresh_failures_total\{reason="unavailable"\} [2-9]/);
    assert.ok(lines.some((l) => /failed to sign: .*Unavailable.*retrying in/.test(l)), lines.join(''));
    await cache.close();
  });

  void it('a refusal (PERMISSION_DENIED) is not retried quickly, and the log says what the CA said', async () => {
    const fake = new FakeCa(ca);
    fake.mode = 'deny';
    const { cache, lines } = await setup({ ca: fake });
    await cache.start();
    await waitFor('first attempt', () => fake.calls >= 1);
    await sleep(1500);
    assert.equal(fake.calls, 1, 'no quick retry after a refusal');
    assert.ok(lines.some((l) => /failed to sign: create certificate: rpc error: code = PermissionDenied desc = no identities; the CA refused the request, retrying in 60000ms/.test(l)), lines.join(''));
    assert.equal(cache.status().lastError?.reason, 'permissiondenied');
    await cache.close();
  });

  void it('renews before expiry with a new key; a CA outage past the renewal point keeps the current certificate until the CA returns', async () => {
    const fake = new FakeCa(ca);
    const { cache, pushes, registry } = await setup({ ca: fake, settings: { secretTtlMs: 8000 } });
    await cache.start();
    const first = await cache.generateSecret('default');
    // renewal at half the lifetime (2 s), proactively: no request needed
    await waitFor('rotation', () => cache.current()!.serial !== serialOf(first.certificateChain!), 8000);
    const second = cache.current()!;
    assert.ok(pushes.includes('default'), 'the new certificate is pushed');
    assert.notEqual(second.keyPem, first.privateKey, 'a fresh key for every certificate');
    assert.equal((await cache.generateSecret('default')).certificateChain, second.chainPem);
    // now the CA goes away past the next renewal point
    fake.mode = 'down';
    const callsBefore = fake.calls;
    await waitFor('renewal attempts failing', () => fake.calls >= callsBefore + 2, 8000);
    assert.equal(cache.current()!.serial, second.serial, 'the current certificate is kept while the CA is down');
    assert.equal((await cache.generateSecret('default')).certificateChain, second.chainPem, 'and served');
    assert.equal(cache.status().state, 'renewing');
    fake.mode = 'ok';
    await waitFor('renewal after the CA returned', () => cache.current()!.serial !== second.serial, 8000);
    assert.ok(Date.now() < second.notAfterMs, 'renewed before the old certificate expired');
    assert.match(await registry.metrics(), /istio_agent_cert_refresh_failures_total\{reason="unavailable"\}/);
    await cache.close();
  });

  void it('rejects invalid CA responses and keeps the last good certificate', async () => {
    const fake = new FakeCa(ca);
    const { cache, registry, lines } = await setup({ ca: fake, settings: { secretTtlMs: 3000 } });
    await cache.start();
    const good = await cache.generateSecret('default');
    const other = new TestCa();
    const cases: Array<[string, (csr: string, ttl: number) => string[], RegExp]> = [
      ['garbage', () => ['not a cert', 'nor this'], /cert_chain\[0\] is not a PEM certificate/],
      ['single element', (csr, ttl) => ca.signCsr(csr, ttl).slice(0, 1), /invalid empty CertChain/],
      ['broken chain', (csr, ttl) => [ca.signCsr(csr, ttl)[0]!, ...other.caChainPem], /cert_chain is broken/],
    ];
    for (const [what, fn, re] of cases) {
      const before = fake.calls;
      fake.mode = fn;
      await waitFor(`${what} rejected`, () => fake.calls > before && lines.some((l) => re.test(l)), 8000);
      assert.equal(cache.current()!.chainPem, good.certificateChain, `${what}: last good certificate kept`);
    }
    assert.match(await registry.metrics(), /istio_agent_cert_refresh_failures_total\{reason="invalid_response"\} [3-9]/);
    await cache.close();
  });

  void it('root rotation: the CA moves to a new root; ROOTCA holds both roots, then only the new one after a certificate lifetime', async () => {
    const fake = new FakeCa(ca);
    const { cache, pushes } = await setup({ ca: fake, settings: { secretTtlMs: 3000 } });
    await cache.start();
    await cache.generateSecret('default');
    const oldRoot = (await cache.generateSecret('ROOTCA')).rootCert!;
    const ca2 = new TestCa();
    fake.ca = ca2;
    pushes.length = 0;
    await waitFor('a certificate under the new root', () => (cache.trustBundle().includes(ca2.rootCertPem.trim()) ? true : undefined), 8000);
    const both = (await cache.generateSecret('ROOTCA')).rootCert!;
    assert.equal(pemCertBlocks(both).length, 2, both);
    assert.ok(both.includes(oldRoot) && both.includes(ca2.rootCertPem.trim()));
    assert.ok(pushes.includes('ROOTCA'), 'the new bundle is pushed');
    // sorted, one newline between, none at the end (pilot-agent's bundle format)
    assert.equal(both, [oldRoot, ca2.rootCertPem.trim()].sort().join('\n'));
    await waitFor('the old root dropped', () => (pemCertBlocks(cache.trustBundle()).length === 1 ? true : undefined), 10_000);
    assert.equal(cache.trustBundle(), ca2.rootCertPem.trim());
    await cache.close();
  });

  void it('merges the mesh root file into ROOTCA and pushes its changes (istio-ca-root-cert updated during a root rotation)', async () => {
    const meshRoot = join(dir, 'mesh-root.pem');
    await writeFile(meshRoot, ca.rootCertPem);
    const { cache, pushes } = await setup({ settings: { meshRootCertPath: meshRoot, filePollMs: 200 } });
    await cache.start();
    await cache.generateSecret('default');
    assert.equal((await cache.generateSecret('ROOTCA')).rootCert, ca.rootCertPem.trim(), 'the same root once, though it comes from the CA and the file');
    const next = new TestCa();
    pushes.length = 0;
    await writeFile(meshRoot, ca.rootCertPem + next.rootCertPem);
    await waitFor('ROOTCA pushed', () => pushes.includes('ROOTCA'));
    assert.equal(pemCertBlocks((await cache.generateSecret('ROOTCA')).rootCert!).length, 2);
    // a broken file never drops trust
    await writeFile(meshRoot, 'garbage');
    await sleep(400);
    assert.equal(pemCertBlocks(cache.trustBundle()).length, 2);
    await cache.close();
  });

  void it('writes OUTPUT_CERTS atomically: key 0600, chain and root, rewritten on rotation', async () => {
    const out = join(dir, 'out');
    const { cache } = await setup({ settings: { outputCertsDir: out, secretTtlMs: 3000 } });
    await cache.start();
    await waitFor('output written', async () => (await stat(join(out, 'root-cert.pem')).catch(() => undefined)) !== undefined);
    await waitFor('key written', async () => (await stat(join(out, 'key.pem')).catch(() => undefined)) !== undefined);
    assert.equal((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600);
    const chain1 = await readFile(join(out, 'cert-chain.pem'), 'utf8');
    assert.equal(chain1, cache.current()!.chainPem);
    assert.equal(await readFile(join(out, 'root-cert.pem'), 'utf8'), ca.rootCertPem.trim());
    await waitFor('rotated output', async () => (await readFile(join(out, 'cert-chain.pem'), 'utf8')) !== chain1, 8000);
    const key = createPrivateKey(await readFile(join(out, 'key.pem'), 'utf8'));
    assert.ok(new X509Certificate(pemCertBlocks(await readFile(join(out, 'cert-chain.pem'), 'utf8'))[0]!).checkPrivateKey(key));
    await cache.close();
  });

  void it('file certificates: read, pushed on a content change (symlink swap), a bad change rejected, the last good kept', async () => {
    const { cache, pushes, lines } = await setup({ ca: null });
    const base = join(dir, 'files');
    const issue = (v: string, sa: string): { cert: string; key: string } => {
      const leaf = ca.issueServing([`${sa}.example`]);
      void v;
      return { cert: leaf.certPem, key: leaf.keyPem };
    };
    const publish = async (v: string, files: { cert: string; key: string }): Promise<void> => {
      await mkdir(join(base, v), { recursive: true });
      await writeFile(join(base, v, 'tls.crt'), files.cert);
      await writeFile(join(base, v, 'tls.key'), files.key);
      await symlink(v, join(base, '..data_tmp'));
      await rename(join(base, '..data_tmp'), join(base, '..data'));
    };
    await mkdir(base, { recursive: true });
    const a = issue('v1', 'a');
    await publish('v1', a);
    await symlink('..data/tls.crt', join(base, 'tls.crt'));
    await symlink('..data/tls.key', join(base, 'tls.key'));
    const name = `file-cert:${join(base, 'tls.crt')}~${join(base, 'tls.key')}`;
    assert.equal((await cache.generateSecret(name)).certificateChain, a.cert);
    const b = issue('v2', 'b');
    await publish('v2', b);
    await waitFor('pushed', () => pushes.includes(name));
    assert.equal((await cache.generateSecret(name)).certificateChain, b.cert);
    // a key that does not match is rejected, the last good pair stays
    const c = issue('v3', 'c');
    await publish('v3', { cert: c.cert, key: a.key });
    await waitFor('rejection logged', () => lines.some((l) => /rejected a change of its files, keeping the last good certificate: private key .* does not match/.test(l)));
    assert.equal((await cache.generateSecret(name)).certificateChain, b.cert);
    // a missing file on first use is an error naming it
    await assert.rejects(cache.generateSecret(`file-root:${join(base, 'nope.pem')}`), /root certificate .*nope\.pem: no such file or directory/);
    await cache.close();
  });

  void it('uses ./etc/certs when present (implicit file-mounted certificates), even with a CA', async () => {
    const { cache, fake, settings } = await setup();
    const leaf = ca.issueServing(['x.example']);
    await mkdir(join(settings.certChainPath, '..'), { recursive: true });
    await writeFile(settings.certChainPath, leaf.certPem);
    await writeFile(settings.keyPath, leaf.keyPem);
    await writeFile(settings.rootCertPath, ca.rootCertPem);
    assert.equal((await cache.generateSecret('default')).certificateChain, leaf.certPem);
    assert.equal((await cache.generateSecret('ROOTCA')).rootCert, ca.rootCertPem.trim());
    assert.equal(fake!.calls, 0);
    await cache.close();
  });

  void it('without a CA, the workload certificate is an error, as pilot-agent says it', async () => {
    const { cache } = await setup({ ca: null });
    await assert.rejects(cache.generateSecret('default'), /attempted to fetch secret, but ca client is nil/);
    await cache.close();
  });
});
