// The test control plane's Istio CA: CreateCertificate over gRPC, as pilot-agent's Citadel client calls it.
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  Metadata,
  credentials,
  loadPackageDefinition,
  status as Status,
  type ChannelCredentials,
  type Client,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import forge from 'node-forge';
import { loadProtos } from '../../src/lib/proto.js';
import { bitString, bool, explicit, octets, oid, pem, seq, set, uint, utf8, implicit } from './der.js';
import { startControlPlane, type ControlPlane } from './server.js';

type Msg = Record<string, unknown>;
const SPIFFE = 'spiffe://cluster.local/ns/default/sa/httpbin';

function caClient(address: string, creds: ChannelCredentials, opts: Record<string, unknown> = {}): Client {
  const obj = loadPackageDefinition(loadProtos(['istio/security/v1alpha1/ca.proto']));
  const Ctor = ['istio', 'v1', 'auth', 'IstioCertificateService'].reduce<unknown>((o, k) => (o as GrpcObject)[k], obj) as ServiceClientConstructor;
  return new Ctor(address, creds, opts);
}

function createCertificate(client: Client, req: Msg, md: Metadata): Promise<Msg> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Msg, m: Metadata, o: object, cb: (e: ServiceError | null, v?: Msg) => void) => void>).CreateCertificate!.call(
      client,
      req,
      md,
      { deadline: Date.now() + 10_000 },
      (e, v) => (e ? reject(e) : resolve(v!)),
    );
  });
}

/** A PKCS#10 request built by node-forge (RSA), as pilot-agent's default 2048-bit RSA CSR. */
function rsaCsr(uri: string): string {
  const keys = forge.pki.rsa.generateKeyPair(1024);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.setSubject([{ name: 'organizationName', value: '' }]);
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: uri }] }] }]);
  csr.sign(keys.privateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/** An ECDSA P-256 request (ECC_SIGNATURE_ALGORITHM=ECDSA), assembled by hand. */
function ecCsr(uri: string, tamper = false): { pem: string; key: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const san = seq(oid('2.5.29.17'), bool(true), octets(seq(implicit(6, Buffer.from(uri)))));
  const attrs = explicit(0, seq(oid('1.2.840.113549.1.9.14'), set(seq(san))));
  const info = seq(uint(Buffer.from([0])), seq(set(seq(oid('2.5.4.10'), utf8('')))), publicKey.export({ type: 'spki', format: 'der' }), attrs);
  const sig = sign('sha256', info, privateKey);
  if (tamper) sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
  return { pem: pem('CERTIFICATE REQUEST', seq(info, seq(oid('1.2.840.10045.4.3.2')), bitString(sig))), key: privateKey };
}

function md(token?: string): Metadata {
  const m = new Metadata();
  m.set('ClusterID', 'Kubernetes');
  if (token) m.set('authorization', `Bearer ${token}`);
  return m;
}

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
