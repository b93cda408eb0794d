// The test control plane's Istio CA: CreateCertificate over gRPC, as pilot-agent's Citadel client calls it;
// its fault modes, CSR records, root rotation (setCa), the CA served alone (caOnly), and TestCa.loadOrCreate.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { caClient, createCertificate, ecCsr, md, rsaCsr, type Msg } from './ca-client.js';
import { TestCa } from './pki.js';
import { GARBAGE_CHAIN, INTRUDER_SPIFFE_ID, describeCaFault, parseCaFault, startControlPlane, type ControlPlane } from './server.js';
import { LISTENER_TYPE } from './resources.js';
import { AdsTestClient } from '../xds/ads-client.js';

const SPIFFE = 'spiffe://cluster.local/ns/default/sa/httpbin';

void describe('test control plane: Istio CA (TLS, token required)', () => {
  let cp: ControlPlane;
  let client: Client;
  before(async () => {
    cp = await startControlPlane({ tls: true, requireToken: 'sa-token' });
    client = caClient(cp.address, credentials.createSsl(Buffer.from(cp.ca.rootCertPem)), {
      'grpc.ssl_target_name_override': 'istiod.istio-system.svc',
    });
  });
  after(async () => {
    client.close();
    await cp.stop();
  });

  void it('signs an RSA CSR: chain [leaf, intermediate, root], SPIFFE URI SAN, requested lifetime', async () => {
    const res = await createCertificate(
      client,
      { csr: rsaCsr(SPIFFE), validity_duration: 3600, metadata: { fields: { CertSigner: { stringValue: '' } } } },
      md('sa-token'),
    );
    const chain = res.cert_chain as string[];
    assert.equal(chain.length, 3);
    assert.ok(chain.every((c) => c.endsWith('\n')));
    const [leaf, inter, root] = chain.map((c) => new X509Certificate(c));
    assert.equal(leaf!.subjectAltName, `URI:${SPIFFE}`);
    assert.ok(leaf!.verify(inter!.publicKey) && inter!.verify(root!.publicKey) && root!.verify(root!.publicKey));
    assert.equal(chain[2], cp.ca.rootCertPem);
    const lifetime = (Date.parse(leaf!.validTo) - Date.parse(leaf!.validFrom)) / 1000;
    assert.ok(lifetime >= 3600 && lifetime <= 3600 + 120, `lifetime ${lifetime}s`);
    assert.equal(leaf!.ca, false);
    const rec = cp.csrs.at(-1)!;
    assert.equal(rec.ok, true);
    assert.equal(rec.metadata.clusterid, 'Kubernetes');
    assert.equal(rec.certSigner, '');
    assert.deepEqual(rec.uris, [SPIFFE]);
  });

  void it('signs an ECDSA CSR with the CSR public key', async () => {
    const csr = ecCsr(SPIFFE);
    const res = await createCertificate(client, { csr: csr.pem, validity_duration: 86400 }, md('sa-token'));
    const leaf = new X509Certificate((res.cert_chain as string[])[0]!);
    assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
    assert.ok(leaf.checkPrivateKey(csr.key));
  });

  void it('rejects a missing or wrong token with UNAUTHENTICATED', async () => {
    await assert.rejects(createCertificate(client, { csr: rsaCsr(SPIFFE), validity_duration: 60 }, md()), { code: Status.UNAUTHENTICATED });
    await assert.rejects(createCertificate(client, { csr: rsaCsr(SPIFFE), validity_duration: 60 }, md('other')), { code: Status.UNAUTHENTICATED });
    assert.equal(cp.csrs.at(-1)?.ok, false);
  });

  void it('rejects a CSR whose signature does not verify, or without a SPIFFE SAN, with INVALID_ARGUMENT', async () => {
    await assert.rejects(createCertificate(client, { csr: ecCsr(SPIFFE, true).pem, validity_duration: 60 }, md('sa-token')), (e: ServiceError) => {
      assert.equal(e.code, Status.INVALID_ARGUMENT);
      assert.match(e.details, /signature does not verify/);
      return true;
    });
    await assert.rejects(createCertificate(client, { csr: rsaCsr('https://example.com'), validity_duration: 60 }, md('sa-token')), {
      code: Status.INVALID_ARGUMENT,
    });
    await assert.rejects(createCertificate(client, { csr: 'not a csr', validity_duration: 60 }, md('sa-token')), { code: Status.INVALID_ARGUMENT });
  });
});

/** Verifies that each certificate of `chain` is signed by the next. */
function assertChainLinks(chain: readonly X509Certificate[]): void {
  for (let i = 0; i + 1 < chain.length; i++) assert.ok(chain[i]!.checkIssued(chain[i + 1]!) && chain[i]!.verify(chain[i + 1]!.publicKey), `certificate ${i} is signed by ${i + 1}`);
}

void describe('test control plane: CA fault injection', () => {
  let cp: ControlPlane;
  let client: Client;
  const token = 'sa-token';
  const call = (csrPem: string, timeoutMs?: number): Promise<Msg> =>
    createCertificate(client, { csr: csrPem, validity_duration: 3600 }, md(token), timeoutMs);
  before(async () => {
    cp = await startControlPlane({ tls: true, requireToken: token });
    client = caClient(cp.address, credentials.createSsl(Buffer.from(cp.ca.rootCertPem)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
  });
  after(async () => {
    client.close();
    await cp.stop();
  });

  void it('records every CSR: its PEM, the issued serial, when it came and when it was answered', async () => {
    cp.caFault = undefined;
    const csr = ecCsr(SPIFFE);
    const before = Date.now();
    const res = await call(csr.pem);
    const leaf = new X509Certificate((res.cert_chain as string[])[0]!);
    const rec = cp.csrs.at(-1)!;
    assert.equal(rec.ok, true);
    assert.equal(rec.csr, csr.pem);
    assert.equal(rec.serial, leaf.serialNumber);
    assert.equal(rec.fault, undefined);
    assert.ok(rec.receivedAt >= before && rec.issuedAt! >= rec.receivedAt && rec.issuedAt! <= Date.now());
    assert.equal(rec.notAfter, Date.parse(leaf.validTo));
    assert.deepEqual(rec.chain, res.cert_chain);
  });

  void it('status: answers the gRPC status given (PERMISSION_DENIED "no identities", UNAVAILABLE)', async () => {
    cp.caFault = { kind: 'status', code: Status.PERMISSION_DENIED, details: 'no identities' };
    await assert.rejects(call(ecCsr(SPIFFE).pem), (e: ServiceError) => {
      assert.equal(e.code, Status.PERMISSION_DENIED);
      assert.equal(e.details, 'no identities');
      return true;
    });
    assert.deepEqual(
      (({ ok, error, fault, serial }) => ({ ok, error, fault, serial }))(cp.csrs.at(-1)!),
      { ok: false, error: 'no identities', fault: 'status:PERMISSION_DENIED:no identities', serial: undefined },
    );
    cp.caFault = { kind: 'status', code: Status.UNAVAILABLE };
    await assert.rejects(call(ecCsr(SPIFFE).pem), { code: Status.UNAVAILABLE, details: 'injected fault: UNAVAILABLE' });
  });

  void it('the token check comes before the fault', async () => {
    cp.caFault = 'garbage';
    await assert.rejects(createCertificate(client, { csr: ecCsr(SPIFFE).pem }, md('wrong')), { code: Status.UNAUTHENTICATED });
    assert.equal(cp.csrs.at(-1)!.fault, undefined);
  });

  void it('garbage: a cert_chain of strings that are not PEM', async () => {
    cp.caFault = 'garbage';
    const res = await call(ecCsr(SPIFFE).pem);
    assert.deepEqual(res.cert_chain, GARBAGE_CHAIN);
    assert.ok((res.cert_chain as string[]).every((c) => !c.includes('-----BEGIN')));
    assert.equal(cp.csrs.at(-1)!.fault, 'garbage');
    assert.equal(cp.csrs.at(-1)!.ok, true);
  });

  void it('single: only the leaf, for the right identity and key', async () => {
    cp.caFault = 'single';
    const csr = ecCsr(SPIFFE);
    const chain = (await call(csr.pem)).cert_chain as string[];
    assert.equal(chain.length, 1);
    const leaf = new X509Certificate(chain[0]!);
    assert.equal(leaf.subjectAltName, `URI:${SPIFFE}`);
    assert.ok(leaf.checkPrivateKey(csr.key));
    assert.ok(leaf.verify(cp.ca.intermediate!.x509.publicKey));
    assert.equal(cp.csrs.at(-1)!.serial, leaf.serialNumber);
  });

  void it('other-identity: a valid chain for spiffe://cluster.local/ns/other/sa/intruder with the CSR key', async () => {
    cp.caFault = 'other-identity';
    const csr = ecCsr(SPIFFE);
    const chain = ((await call(csr.pem)).cert_chain as string[]).map((c) => new X509Certificate(c));
    assert.equal(chain.length, 3);
    assert.equal(chain[0]!.subjectAltName, `URI:${INTRUDER_SPIFFE_ID}`);
    assert.equal(INTRUDER_SPIFFE_ID, 'spiffe://cluster.local/ns/other/sa/intruder');
    assert.ok(chain[0]!.checkPrivateKey(csr.key));
    assertChainLinks(chain);
    assert.deepEqual(cp.csrs.at(-1)!.uris, [INTRUDER_SPIFFE_ID]);
  });

  void it('other-key: a valid chain for the right identity, certifying a key that is not the CSR key', async () => {
    cp.caFault = 'other-key';
    const csr = ecCsr(SPIFFE);
    const chain = ((await call(csr.pem)).cert_chain as string[]).map((c) => new X509Certificate(c));
    assert.equal(chain[0]!.subjectAltName, `URI:${SPIFFE}`);
    assert.equal(chain[0]!.checkPrivateKey(csr.key), false);
    assertChainLinks(chain);
  });

  void it('expired: a valid chain whose leaf is valid only in the past', async () => {
    cp.caFault = 'expired';
    const csr = ecCsr(SPIFFE);
    const chain = ((await call(csr.pem)).cert_chain as string[]).map((c) => new X509Certificate(c));
    assert.ok(Date.parse(chain[0]!.validTo) < Date.now() - 30 * 60_000, `validTo ${chain[0]!.validTo}`);
    assert.ok(Date.parse(chain[0]!.validFrom) < Date.parse(chain[0]!.validTo));
    assert.ok(chain[0]!.checkPrivateKey(csr.key));
    assertChainLinks(chain);
  });

  void it('hang: never answers (the client deadline ends the call); answering resumes when the fault is cleared', async () => {
    cp.caFault = 'hang';
    const t0 = Date.now();
    await assert.rejects(call(ecCsr(SPIFFE).pem, 500), { code: Status.DEADLINE_EXCEEDED });
    assert.ok(Date.now() - t0 >= 450);
    assert.deepEqual((({ ok, fault }) => ({ ok, fault }))(cp.csrs.at(-1)!), { ok: false, fault: 'hang' });
    cp.caFault = undefined;
    const res = await call(ecCsr(SPIFFE).pem);
    assert.equal((res.cert_chain as string[]).length, 3);
  });

  void it('setCa switches the signing CA at run time (root rotation); the TLS serving certificate stays', async () => {
    cp.caFault = undefined;
    const oldRoot = cp.ca.rootCertPem;
    const first = (await call(ecCsr(SPIFFE).pem)).cert_chain as string[];
    assert.equal(first.at(-1), oldRoot);
    const next = new TestCa({ intermediate: false });
    cp.setCa(next);
    const second = (await call(ecCsr(SPIFFE).pem)).cert_chain as string[];
    assert.equal(second.length, 2);
    assert.equal(second.at(-1), next.rootCertPem);
    assert.notEqual(next.rootCertPem, oldRoot);
    assertChainLinks(second.map((c) => new X509Certificate(c)));
    assert.equal(cp.ca, next);
  });

  void it('parseCaFault reads the CLI forms and describeCaFault writes them back', () => {
    assert.equal(parseCaFault('none'), undefined);
    for (const m of ['garbage', 'single', 'other-identity', 'other-key', 'expired', 'hang']) assert.equal(parseCaFault(m), m);
    assert.deepEqual(parseCaFault('status:PERMISSION_DENIED:no identities'), { kind: 'status', code: Status.PERMISSION_DENIED, details: 'no identities' });
    assert.deepEqual(parseCaFault('status:unavailable'), { kind: 'status', code: Status.UNAVAILABLE });
    assert.deepEqual(parseCaFault('status:14:a:b'), { kind: 'status', code: 14, details: 'a:b' });
    assert.equal(describeCaFault(parseCaFault('status:permission-denied:no identities')!), 'status:PERMISSION_DENIED:no identities');
    assert.throws(() => parseCaFault('explode'), /unknown CA fault "explode"/);
    assert.throws(() => parseCaFault('status:NOPE'), /"NOPE" is not a gRPC error code/);
    assert.throws(() => parseCaFault('status:0'), /not a gRPC error code/);
  });
});

void describe('test control plane: CA only (caOnly)', () => {
  void it('serves CreateCertificate and no ADS (UNIMPLEMENTED)', async () => {
    const cp = await startControlPlane({ caOnly: true });
    const client = caClient(cp.address, credentials.createInsecure());
    const ads = new AdsTestClient(cp.address, 'delta');
    try {
      const res = await createCertificate(client, { csr: ecCsr(SPIFFE).pem, validity_duration: 60 }, md());
      assert.equal((res.cert_chain as string[]).length, 3);
      ads.delta(LISTENER_TYPE);
      assert.equal((await ads.status()).code, Status.UNIMPLEMENTED);
      assert.equal(cp.streams.length, 0);
    } finally {
      ads.close();
      client.close();
      await cp.stop();
    }
  });
});

void describe('TestCa.loadOrCreate', () => {
  void it('gives concurrent callers on one directory the same CA, and reloads it later', async () => {
    const base = await mkdtemp(join(tmpdir(), 'ca-loc-'));
    try {
      const dir = join(base, 'ca');
      const cas = await Promise.all(Array.from({ length: 4 }, () => TestCa.loadOrCreate(dir)));
      assert.equal(new Set(cas.map((c) => c.rootCertPem)).size, 1);
      assert.equal((await TestCa.loadOrCreate(dir)).rootCertPem, cas[0]!.rootCertPem);
      assert.deepEqual((await readdir(base)).sort(), ['ca']); // no temporary directories left
      // an existing empty directory (e.g. from mkdtemp) is filled
      const empty = await mkdtemp(join(base, 'empty-'));
      const ca = await TestCa.loadOrCreate(empty);
      assert.equal((await TestCa.load(empty))!.rootCertPem, ca.rootCertPem);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  void it('applies maxTtlSeconds to what it loads (CSR asking for more: INVALID_ARGUMENT-style CsrError)', async () => {
    const base = await mkdtemp(join(tmpdir(), 'ca-ttl-'));
    try {
      await TestCa.loadOrCreate(join(base, 'ca'));
      const capped = await TestCa.loadOrCreate(join(base, 'ca'), { maxTtlSeconds: 600 });
      assert.throws(() => capped.signCsr(ecCsr(SPIFFE).pem, 601), /greater than the max allowed TTL 600s/);
      assert.equal(capped.signCsr(ecCsr(SPIFFE).pem, 600).length, 3);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});
