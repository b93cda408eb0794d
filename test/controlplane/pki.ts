// The test control plane's certificate authority: a root, an intermediate that signs (as istiod does with
// plugged-in certs), istiod's serving certificate, and workload leaves signed from PKCS#10 requests.
// Keys come from node:crypto; certificates are assembled in DER here and signed with node:crypto, so
// requests with RSA, ECDSA (P-256/P-384) or Ed25519 keys are all accepted.
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import {
  bitString,
  bool,
  children,
  decodeOid,
  explicit,
  implicit,
  nul,
  octets,
  oid,
  pem,
  readTlv,
  seq,
  set,
  time,
  uint,
  unpem,
  utf8,
  type Tlv,
} from './der.js';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

const OID = {
  sha256WithRSA: '1.2.840.113549.1.1.11',
  sha384WithRSA: '1.2.840.113549.1.1.12',
  sha512WithRSA: '1.2.840.113549.1.1.13',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  ecdsaSha512: '1.2.840.10045.4.3.4',
  ed25519: '1.3.101.112',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

const SIG_HASH: Record<string, string | null> = {
  [OID.sha256WithRSA]: 'sha256',
  [OID.sha384WithRSA]: 'sha384',
  [OID.sha512WithRSA]: 'sha512',
  [OID.ecdsaSha256]: 'sha256',
  [OID.ecdsaSha384]: 'sha384',
  [OID.ecdsaSha512]: 'sha512',
  [OID.ed25519]: null,
};

export class CsrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsrError';
  }
}

export interface ParsedCsr {
  readonly spki: Buffer;
  readonly uris: string[];
  readonly dnsNames: string[];
}

/** Parses a PEM PKCS#10 request and verifies its self-signature. Throws CsrError saying what is wrong. */
export function parseCsr(csrPem: string): ParsedCsr {
  let der: Buffer;
  try {
    der = unpem(csrPem, 'CERTIFICATE REQUEST');
  } catch {
    throw new CsrError('CSR is not a PEM "CERTIFICATE REQUEST"');
  }
  try {
    const top = children(readTlv(der));
    const [info, algo, sig] = top;
    if (!info || !algo || !sig || sig.tag !== 0x03) throw new Error('not a CertificationRequest');
    const algOid = decodeOid(children(algo)[0]!.content);
    if (!(algOid in SIG_HASH)) throw new Error(`unsupported signature algorithm ${algOid}`);
    const infoParts = children(info);
    const spki = infoParts[2];
    if (!spki) throw new Error('missing subjectPublicKeyInfo');
    const key = createPublicKey({ key: spki.raw, format: 'der', type: 'spki' });
    const signature = sig.content.subarray(1); // skip unused-bits byte
    if (!verify(SIG_HASH[algOid] ?? null, info.raw, key, signature)) throw new Error('signature does not verify');
    const uris: string[] = [];
    const dnsNames: string[] = [];
    const attrs = infoParts[3];
    if (attrs && attrs.tag === 0xa0) {
      for (const attr of children(attrs)) {
        const [type, values] = children(attr);
        if (!type || !values || decodeOid(type.content) !== OID.extensionRequest) continue;
        for (const exts of children(values)) for (const ext of children(exts)) collectSans(ext, uris, dnsNames);
      }
    }
    return { spki: Buffer.from(spki.raw), uris, dnsNames };
  } catch (e) {
    throw new CsrError(`invalid CSR: ${(e as Error).message}`);
  }
}

function collectSans(ext: Tlv, uris: string[], dnsNames: string[]): void {
  const parts = children(ext);
  if (decodeOid(parts[0]!.content) !== OID.subjectAltName) return;
  const value = parts[parts.length - 1]!; // OCTET STRING (critical flag may sit between)
  for (const gn of children(readTlv(value.content))) {
    if (gn.tag === 0x86) uris.push(gn.content.toString('latin1'));
    else if (gn.tag === 0x82) dnsNames.push(gn.content.toString('latin1'));
  }
}

export interface Issued {
  readonly certPem: string;
  readonly keyPem: string;
  readonly key: KeyObject;
  readonly x509: X509Certificate;
}

interface Signer {
  readonly key: KeyObject;
  readonly x509: X509Certificate;
  readonly subject: Buffer;
  readonly keyId: Buffer;
}

function keyId(spki: Buffer): Buffer {
  // SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 method 1).
  const bits = children(readTlv(spki))[1]!;
  return createHash('sha1').update(bits.content.subarray(1)).digest();
}

function name(org: string, cn?: string): Buffer {
  const rdns = [set(seq(oid(OID.organization), utf8(org)))];
  if (cn) rdns.push(set(seq(oid(OID.commonName), utf8(cn))));
  return seq(...rdns);
}

function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

function keyUsage(bits: number[]): Buffer {
  let v = 0;
  for (const b of bits) v |= 0x80 >> b;
  let unused = 0;
  while (unused < 7 && !(v & (1 << unused))) unused++;
  return bitString(Buffer.from([v]), unused);
}

function signatureAlgorithm(key: KeyObject): { der: Buffer; hash: string | null } {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { der: seq(oid(OID.sha256WithRSA), nul()), hash: 'sha256' };
    case 'ec':
      return { der: seq(oid(OID.ecdsaSha256)), hash: 'sha256' };
    case 'ed25519':
      return { der: seq(oid(OID.ed25519)), hash: null };
    default:
      throw new Error(`unsupported CA key type ${key.asymmetricKeyType}`);
  }
}

interface CertSpec {
  readonly spki: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly ca: boolean;
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
}

function buildCert(spec: CertSpec, issuer: Signer | 'self', selfKey?: KeyObject): X509Certificate {
  const signKey = issuer === 'self' ? selfKey! : issuer.key;
  const alg = signatureAlgorithm(signKey);
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  const skid = keyId(spec.spki);
  const exts: Buffer[] = [
    ext(OID.keyUsage, true, spec.ca ? keyUsage([0, 5, 6]) : keyUsage([0, 2])),
    ext(OID.basicConstraints, true, spec.ca ? seq(bool(true)) : seq()),
    ext(OID.subjectKeyId, false, octets(skid)),
    ext(OID.authorityKeyId, false, seq(implicit(0, issuer === 'self' ? skid : issuer.keyId))),
  ];
  if (!spec.ca) exts.splice(1, 0, ext(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))));
  const sans = [...(spec.uris ?? []).map((u) => implicit(6, Buffer.from(u))), ...(spec.dnsNames ?? []).map((d) => implicit(2, Buffer.from(d)))];
  // With an empty subject the SAN extension must be critical (RFC 5280 4.2.1.6), as istiod's leaves are.
  if (sans.length) exts.push(ext(OID.subjectAltName, spec.subject.length <= 2, seq(...sans)));
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))),
    uint(serial),
    alg.der,
    issuer === 'self' ? spec.subject : issuer.subject,
    seq(time(spec.notBefore), time(spec.notAfter)),
    spec.subject,
    spec.spki,
    explicit(3, seq(...exts)),
  );
  const signature = sign(alg.hash, tbs, signKey);
  return new X509Certificate(seq(tbs, alg.der, bitString(signature)));
}

function newKey(): { key: KeyObject; spki: Buffer; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    key: privateKey,
    spki: publicKey.export({ type: 'spki', format: 'der' }),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function toIssued(x509: X509Certificate, k: { key: KeyObject; keyPem: string }): Issued {
  return { certPem: pem('CERTIFICATE', x509.raw), keyPem: k.keyPem, key: k.key, x509 };
}

/** The subject Name of a certificate, as raw DER (the issuer of what it signs). */
function subjectOf(x509: X509Certificate): Buffer {
  const tbs = children(readTlv(x509.raw))[0]!;
  const parts = children(tbs);
  // [0] version, serial, signature, issuer, validity, subject, ...
  const offset = parts[0]!.tag === 0xa0 ? 1 : 0;
  return Buffer.from(parts[offset + 4]!.raw);
}

function signerOf(i: Issued): Signer {
  return { key: i.key, x509: i.x509, subject: subjectOf(i.x509), keyId: keyId(i.x509.publicKey.export({ type: 'spki', format: 'der' })) };
}

export interface TestCaOptions {
  /** Trust domain put in the CA subjects (O=...). Default cluster.local. */
  readonly trustDomain?: string;
  /** Sign with an intermediate under the root (chain [leaf, intermediate, root]); default true. */
  readonly intermediate?: boolean;
  /** Largest lifetime a CSR may ask for (istiod's default max is 90 days). */
  readonly maxTtlSeconds?: number;
  /** Lifetime used when a CSR asks for none (istiod: 24h). */
  readonly defaultTtlSeconds?: number;
}

/** A root (and by default an intermediate) generated at start, valid for 10 years. */
export class TestCa {
  readonly root: Issued;
  readonly intermediate: Issued | undefined;
  private readonly signer: Signer;
  private readonly maxTtlSeconds: number;
  private readonly defaultTtlSeconds: number;

  constructor(opts: TestCaOptions = {}, material?: { root: Issued; intermediate?: Issued }) {
    const td = opts.trustDomain ?? 'cluster.local';
    this.maxTtlSeconds = opts.maxTtlSeconds ?? 90 * 24 * 3600;
    this.defaultTtlSeconds = opts.defaultTtlSeconds ?? 24 * 3600;
    if (material) {
      this.root = material.root;
      this.intermediate = material.intermediate;
    } else {
      const now = Date.now();
      const notBefore = new Date(now - 60_000);
      const notAfter = new Date(now + 10 * 365 * 24 * 3600_000);
      const rootKey = newKey();
      this.root = toIssued(buildCert({ spki: rootKey.spki, subject: name(td, 'Test Root CA'), notBefore, notAfter, ca: true }, 'self', rootKey.key), rootKey);
      if (opts.intermediate ?? true) {
        const intKey = newKey();
        const subject = name(td, 'Test Intermediate CA');
        const cert = buildCert({ spki: intKey.spki, subject, notBefore, notAfter, ca: true }, signerOf(this.root));
        this.intermediate = toIssued(cert, intKey);
      }
    }
    this.signer = signerOf(this.intermediate ?? this.root);
  }

  /** Writes the CA (keys 0600) so another process or a restart can reuse it with `TestCa.load`. */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'root-cert.pem'), this.root.certPem);
    await writeFile(join(dir, 'root-key.pem'), this.root.keyPem, { mode: 0o600 });
    if (this.intermediate) {
      await writeFile(join(dir, 'ca-cert.pem'), this.intermediate.certPem);
      await writeFile(join(dir, 'ca-key.pem'), this.intermediate.keyPem, { mode: 0o600 });
    }
  }

  /** Loads a CA written by `save`, or returns undefined when `dir` holds none. */
  static async load(dir: string, opts: TestCaOptions = {}): Promise<TestCa | undefined> {
    const read = async (f: string): Promise<string | undefined> => {
      try {
        return await readFile(join(dir, f), 'utf8');
      } catch {
        return undefined;
      }
    };
    const [rc, rk, cc, ck] = await Promise.all(['root-cert.pem', 'root-key.pem', 'ca-cert.pem', 'ca-key.pem'].map(read));
    if (!rc || !rk) return undefined;
    const issued = (certPem: string, keyPem: string): Issued => ({ certPem, keyPem, key: createPrivateKey(keyPem), x509: new X509Certificate(certPem) });
    return new TestCa(opts, { root: issued(rc, rk), ...(cc && ck ? { intermediate: issued(cc, ck) } : {}) });
  }

  get rootCertPem(): string {
    return this.root.certPem;
  }

  /** CA certificates above a leaf, nearest first, root last. */
  get caChainPem(): string[] {
    return this.intermediate ? [this.intermediate.certPem, this.root.certPem] : [this.root.certPem];
  }

  /** A serving certificate (e.g. istiod's, for istiod.istio-system.svc), with its chain up to (excluding) the root. */
  issueServing(dnsNames: readonly string[], ttlSeconds = 365 * 24 * 3600): Issued & { chainPem: string } {
    const k = newKey();
    const now = Date.now();
    const x509 = buildCert(
      { spki: k.spki, subject: seq(), notBefore: new Date(now - 60_000), notAfter: new Date(now + ttlSeconds * 1000), ca: false, dnsNames },
      this.signer,
    );
    const issued = toIssued(x509, k);
    return { ...issued, chainPem: [issued.certPem, ...(this.intermediate ? [this.intermediate.certPem] : [])].join('') };
  }

  /**
   * Signs a workload CSR like istiod's CreateCertificate: the leaf carries the CSR's public key and its
   * URI SANs (which must be SPIFFE IDs). Returns cert_chain as istiod does: [leaf, intermediate..., root],
   * each PEM ending in a newline.
   */
  signCsr(csrPem: string, validitySeconds: number): string[] {
    return this.issueLeaf(csrPem, validitySeconds).chain;
  }

  /**
   * signCsr, returning the leaf too; `overrides` make a wrong certificate on purpose (fault injection):
   * other URI SANs, another public key, another validity period. The CSR is still parsed and checked.
   */
  issueLeaf(csrPem: string, validitySeconds: number, overrides: LeafOverrides = {}): { chain: string[]; leaf: X509Certificate } {
    const csr = parseCsr(csrPem);
    if (csr.uris.length === 0) throw new CsrError('CSR has no URI SAN');
    const bad = csr.uris.find((u) => !u.startsWith('spiffe://'));
    if (bad) throw new CsrError(`CSR URI SAN "${bad}" is not a SPIFFE ID`);
    const ttl = validitySeconds > 0 ? validitySeconds : this.defaultTtlSeconds;
    if (ttl > this.maxTtlSeconds) throw new CsrError(`requested TTL ${ttl}s is greater than the max allowed TTL ${this.maxTtlSeconds}s`);
    const now = Date.now();
    const leaf = buildCert(
      {
        spki: overrides.spki ?? csr.spki,
        subject: seq(),
        notBefore: overrides.notBefore ?? new Date(now - 60_000),
        notAfter: overrides.notAfter ?? new Date(now + ttl * 1000),
        ca: false,
        uris: overrides.uris ?? csr.uris,
      },
      this.signer,
    );
    return { chain: [pem('CERTIFICATE', leaf.raw), ...this.caChainPem], leaf };
  }

  /**
   * Loads the CA saved in `dir`, or creates one and saves it there. Safe when several processes start
   * at once on the same `dir`: the new CA is written to a temporary directory and renamed into place, and
   * whoever loses the race loads the winner's (so every process ends up with the same root).
   */
  static async loadOrCreate(dir: string, opts: TestCaOptions = {}): Promise<TestCa> {
    const existing = await TestCa.load(dir, opts);
    if (existing) return existing;
    const ca = new TestCa(opts);
    const parent = dirname(resolve(dir));
    await mkdir(parent, { recursive: true });
    const tmp = await mkdtemp(join(parent, `.${basename(resolve(dir))}.tmp-`));
    try {
      await ca.save(tmp);
      await rename(tmp, dir); // replaces `dir` only if it is absent or empty
      return ca;
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      const winner = await TestCa.load(dir, opts);
      if (!winner) throw new Error(`${dir} exists but holds no CA (root-cert.pem, root-key.pem)`, { cause: e });
      return winner;
    }
  }
}

/** What TestCa.issueLeaf may change in a leaf (for fault injection). */
export interface LeafOverrides {
  /** URI SANs instead of the CSR's. */
  readonly uris?: readonly string[];
  /** A public key (SubjectPublicKeyInfo, DER) instead of the CSR's. */
  readonly spki?: Buffer;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** A fresh public key (ECDSA P-256, SPKI DER) that matches no CSR. */
export function freshSpki(): Buffer {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'der' });
}
