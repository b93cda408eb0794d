// A client of the test CA as pilot-agent's Citadel client calls it (grpc-js, IstioCertificateService/
// CreateCertificate), and CSRs to send it: for the control plane's own tests.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import {
  Metadata,
  loadPackageDefinition,
  type ChannelCredentials,
  type Client,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import forge from 'node-forge';
import { loadProtos } from '../../src/lib/proto.js';
import { bitString, bool, explicit, octets, oid, pem, seq, set, uint, utf8, implicit } from './der.js';

export type Msg = Record<string, unknown>;

export function caClient(address: string, creds: ChannelCredentials, opts: Record<string, unknown> = {}): Client {
  const obj = loadPackageDefinition(loadProtos(['istio/security/v1alpha1/ca.proto']));
  const Ctor = ['istio', 'v1', 'auth', 'IstioCertificateService'].reduce<unknown>((o, k) => (o as GrpcObject)[k], obj) as ServiceClientConstructor;
  return new Ctor(address, creds, opts);
}

export function createCertificate(client: Client, req: Msg, md: Metadata, timeoutMs = 10_000): Promise<Msg> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Msg, m: Metadata, o: object, cb: (e: ServiceError | null, v?: Msg) => void) => void>).CreateCertificate!.call(
      client,
      req,
      md,
      { deadline: Date.now() + timeoutMs },
      (e, v) => (e ? reject(e) : resolve(v!)),
    );
  });
}

/** A PKCS#10 request built by node-forge (RSA), as pilot-agent's default 2048-bit RSA CSR. */
export function rsaCsr(uri: string): string {
  const keys = forge.pki.rsa.generateKeyPair(1024);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.setSubject([{ name: 'organizationName', value: '' }]);
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: uri }] }] }]);
  csr.sign(keys.privateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/** An ECDSA P-256 request (ECC_SIGNATURE_ALGORITHM=ECDSA), assembled by hand. */
export function ecCsr(uri: string, tamper = false): { pem: string; key: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const san = seq(oid('2.5.29.17'), bool(true), octets(seq(implicit(6, Buffer.from(uri)))));
  const attrs = explicit(0, seq(oid('1.2.840.113549.1.9.14'), set(seq(san))));
  const info = seq(uint(Buffer.from([0])), seq(set(seq(oid('2.5.4.10'), utf8('')))), publicKey.export({ type: 'spki', format: 'der' }), attrs);
  const sig = sign('sha256', info, privateKey);
  if (tamper) sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
  return { pem: pem('CERTIFICATE REQUEST', seq(info, seq(oid('1.2.840.10045.4.3.2')), bitString(sig))), key: privateKey };
}

/** Call metadata as the agent sends it: ClusterID and, when given, the bearer token. */
export function md(token?: string): Metadata {
  const m = new Metadata();
  m.set('ClusterID', 'Kubernetes');
  if (token) m.set('authorization', `Bearer ${token}`);
  return m;
}
