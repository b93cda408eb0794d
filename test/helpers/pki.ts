// Test credentials for real Istio peers: a root + intermediate CA that istiod loads as a
// plugged-in CA (./etc/cacerts), workload leaf certificates, and RS256 JWTs checked by istiod's
// JWT_RULE authenticator against a JWKS.
// Keys come from node:crypto (fast); certificates are assembled with node-forge.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';

export interface CaPki {
  rootCertPem: string;
  rootKeyPem: string;
  /** The intermediate istiod signs with (ROOT_CA_DIR/ca-cert.pem). */
  caCertPem: string;
  caKeyPem: string;
  /** Intermediate then root (ROOT_CA_DIR/cert-chain.pem). */
  certChainPem: string;
}

export interface LeafCert {
  certPem: string;
  keyPem: string;
  /** Leaf then intermediate (PROV_CERT/cert-chain.pem layout). */
  chainPem: string;
}

function rsaKeyPair(): { publicKey: KeyObject; privateKey: KeyObject; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { publicKey, privateKey, privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive
  return b.toString('hex');
}

interface CertSpec {
  subject: forge.pki.CertificateField[];
  issuer: forge.pki.Certificate | undefined; // undefined: self-signed
  signerKeyPem: string;
  subjectPublicKey: KeyObject;
  days: number;
  extensions: any[];
}

function makeCert(spec: CertSpec): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(spec.subjectPublicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = serial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + spec.days * 86_400_000);
  cert.setSubject(spec.subject);
  cert.setIssuer(spec.issuer ? spec.issuer.subject.attributes : spec.subject);
  cert.setExtensions(spec.extensions);
  const signer = forge.pki.privateKeyFromPem(toPkcs1(spec.signerKeyPem));
  cert.sign(signer, forge.md.sha256.create());
  return cert;
}

/** node-forge only reads PKCS#1 RSA keys; converts a PKCS#8 PEM. */
function toPkcs1(pem: string): string {
  return createPrivateKey(pem).export({ type: 'pkcs1', format: 'pem' }).toString();
}

/**
 * A root CA and an intermediate signed by it, in the layout istiod's plugged-in CA reads.
 * No extended key usage on either CA (Go verifies the chain for server auth).
 */
export function createCaPki(opts: { org?: string } = {}): CaPki {
  const org = opts.org ?? 'Istio';
  const root = rsaKeyPair();
  const rootCert = makeCert({
    subject: [
      { name: 'organizationName', value: org },
      { name: 'commonName', value: 'Interop Root CA' },
    ],
    issuer: undefined,
    signerKeyPem: root.privatePem,
    subjectPublicKey: root.publicKey,
    days: 3650,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ],
  });
  const ca = rsaKeyPair();
  const caCert = makeCert({
    subject: [
      { name: 'organizationName', value: org },
      { name: 'commonName', value: 'Interop Intermediate CA' },
    ],
    issuer: rootCert,
    signerKeyPem: root.privatePem,
    subjectPublicKey: ca.publicKey,
    days: 1825,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: rootCert.generateSubjectKeyIdentifier().getBytes() },
    ],
  });
  const rootCertPem = forge.pki.certificateToPem(rootCert);
  const caCertPem = forge.pki.certificateToPem(caCert);
  return {
    rootCertPem,
    rootKeyPem: root.privatePem,
    caCertPem,
    caKeyPem: ca.privatePem,
    certChainPem: caCertPem + rootCertPem,
  };
}

/**
 * A workload leaf signed by the intermediate, with URI SAN `spiffe://<trustDomain>/ns/<ns>/sa/<sa>`
 * and EKU serverAuth+clientAuth (usable as a PROV_CERT client certificate).
 */
export function issueWorkloadCert(pki: CaPki, id: { trustDomain?: string; ns: string; sa: string; hours?: number }): LeafCert {
  const leaf = rsaKeyPair();
  const caCert = forge.pki.certificateFromPem(pki.caCertPem);
  const uri = `spiffe://${id.trustDomain ?? 'cluster.local'}/ns/${id.ns}/sa/${id.sa}`;
  const cert = makeCert({
    subject: [],
    issuer: caCert,
    signerKeyPem: pki.caKeyPem,
    subjectPublicKey: leaf.publicKey,
    days: (id.hours ?? 24) / 24,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: uri }], critical: true },
      { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
    ],
  });
  const certPem = forge.pki.certificateToPem(cert);
  return { certPem, keyPem: leaf.privatePem, chainPem: certPem + pki.caCertPem };
}

/**
 * Writes istiod's plugged-in CA files (`ca-cert.pem`, `ca-key.pem` 0600, `root-cert.pem`,
 * `cert-chain.pem`) into dir, creating it.
 */
export async function writeCacerts(dir: string, pki: CaPki): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'ca-cert.pem'), pki.caCertPem);
  await writeFile(join(dir, 'ca-key.pem'), pki.caKeyPem, { mode: 0o600 });
  await chmod(join(dir, 'ca-key.pem'), 0o600);
  await writeFile(join(dir, 'root-cert.pem'), pki.rootCertPem);
  await writeFile(join(dir, 'cert-chain.pem'), pki.certChainPem);
}

export interface JwtIssuer {
  issuer: string;
  audience: string;
  /** `{keys:[...]}` with the public key only. */
  jwks: { keys: Record<string, unknown>[] };
  /**
   * An RS256 token istiod accepts as `system:serviceaccount:<ns>:<sa>`. Both must be non-empty
   * and colon-free: a `sub` with fewer than 4 colon-separated parts crashes istiod 1.30.
   */
  mint(ns: string, sa: string, ttlSeconds?: number): string;
}

/** An RS256 signer for istiod's JWT_RULE authenticator (aud is always a JSON array). */
export function createJwtIssuer(opts: { issuer?: string; audience?: string } = {}): JwtIssuer {
  const issuer = opts.issuer ?? 'https://issuer.local.test';
  const audience = opts.audience ?? 'istio-ca';
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `interop-${randomBytes(4).toString('hex')}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return {
    issuer,
    audience,
    jwks: { keys: [jwk] },
    mint(ns, sa, ttlSeconds = 86_400) {
      for (const [what, v] of [['namespace', ns], ['service account', sa]] as const) {
        if (!v || v.includes(':')) throw new Error(`JWT ${what} ${JSON.stringify(v)} must be non-empty and colon-free`);
      }
      const now = Math.floor(Date.now() / 1000);
      const body = {
        iss: issuer,
        sub: `system:serviceaccount:${ns}:${sa}`,
        aud: [audience],
        iat: now,
        nbf: now - 60,
        exp: now + ttlSeconds,
      };
      const input = `${enc({ alg: 'RS256', typ: 'JWT', kid })}.${enc(body)}`;
      return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
    },
  };
}
