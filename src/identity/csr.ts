// The certificate signing request, as pilot-agent builds it (security/pkg/pki/util GenCSRTemplate with the
// workload's SPIFFE ID as the only host): a subject holding one empty Organization attribute and no CN, one
// critical subjectAltName extension with a URI (or DNS / IP) name per host, signed with SHA-256 (RSA and
// P-256) or SHA-384 (P-384). The ASN.1 is assembled with node-forge's encoder (loaded on first use, off
// the start-up path); the signature is made natively by node:crypto.
import { sign } from 'node:crypto';
import { isIP } from 'node:net';
import type { asn1 as Asn1Namespace } from 'node-forge';
import type { WorkloadKey } from './keys.js';

type Forge = { asn1: typeof Asn1Namespace };

const OID = {
  organization: '2.5.4.10',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
} as const;

let forgeLoad: Promise<Forge> | undefined;
/** Loads node-forge's ASN.1 module (about 40 ms); call early to overlap it with key generation. */
export function preloadCsrEncoder(): Promise<Forge> {
  forgeLoad ??= import('node-forge/lib/asn1.js').then((m) => ({ asn1: m.default }));
  return forgeLoad;
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand '::' and embedded IPv4; an IPv4-mapped address is written as 4 bytes, as Go does
  let head = ip;
  let v4: number[] = [];
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
  if (m) {
    head = `${m[1]}0:0`;
    v4 = m[2]!.split('.').map(Number);
  }
  const [l, r] = head.split('::') as [string, string | undefined];
  const parse = (s: string | undefined): number[] => (s ? s.split(':').filter((x) => x !== '').map((x) => parseInt(x, 16)) : []);
  const left = parse(l);
  const right = parse(r);
  const groups = r === undefined ? left : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (v4.length) Buffer.from(v4).copy(out, 12);
  const mapped = out.subarray(0, 10).every((b) => b === 0) && out[10] === 0xff && out[11] === 0xff;
  return mapped ? out.subarray(12) : out;
}

function generalName(f: Forge, host: string): Asn1Namespace.Asn1 {
  const { asn1 } = f;
  const ctx = (tag: number, bytes: string): Asn1Namespace.Asn1 => asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag as Asn1Namespace.Type, false, bytes);
  if (isIP(host)) return ctx(7, ipBytes(host).toString('binary'));
  if (host.startsWith('spiffe://')) return ctx(6, Buffer.from(host, 'utf8').toString('binary'));
  return ctx(2, Buffer.from(host, 'utf8').toString('binary'));
}

function signatureAlgorithm(key: WorkloadKey): { oid: string; hash: 'sha256' | 'sha384'; nullParams: boolean } {
  if (key.spec.kind === 'rsa') return { oid: OID.sha256WithRSA, hash: 'sha256', nullParams: true };
  return key.spec.curve === 'P384' ? { oid: OID.ecdsaWithSha384, hash: 'sha384', nullParams: false } : { oid: OID.ecdsaWithSha256, hash: 'sha256', nullParams: false };
}

/**
 * A PEM `CERTIFICATE REQUEST` for `hosts` (comma-separated in pilot-agent; here a list), signed by `key`.
 * An empty host list gives a request without the extension.
 */
export async function buildCsr(key: WorkloadKey, hosts: readonly string[]): Promise<string> {
  const f = await preloadCsrEncoder();
  const { asn1 } = f;
  const U = asn1.Class.UNIVERSAL;
  const T = asn1.Type;
  const seq = (v: Asn1Namespace.Asn1[]): Asn1Namespace.Asn1 => asn1.create(U, T.SEQUENCE, true, v);
  const set = (v: Asn1Namespace.Asn1[]): Asn1Namespace.Asn1 => asn1.create(U, T.SET, true, v);
  const oid = (o: string): Asn1Namespace.Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(o).getBytes());

  // Name: one RDN holding O = "" (Go marshals the empty string as a PrintableString)
  const subject = seq([set([seq([oid(OID.organization), asn1.create(U, T.PRINTABLESTRING, false, '')])])]);
  const spki = asn1.fromDer(key.publicKey.export({ type: 'spki', format: 'der' }).toString('binary'));
  const attributes: Asn1Namespace.Asn1[] = [];
  if (hosts.length) {
    const san = seq(hosts.map((h) => generalName(f, h)));
    const ext = seq([oid(OID.subjectAltName), asn1.create(U, T.BOOLEAN, false, '\xff'), asn1.create(U, T.OCTETSTRING, false, asn1.toDer(san).getBytes())]);
    attributes.push(seq([oid(OID.extensionRequest), set([seq([ext])])]));
  }
  const info = seq([
    asn1.create(U, T.INTEGER, false, '\x00'),
    subject,
    spki,
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0 as Asn1Namespace.Type, true, attributes),
  ]);
  const infoDer = Buffer.from(asn1.toDer(info).getBytes(), 'binary');
  const alg = signatureAlgorithm(key);
  const signature = sign(alg.hash, infoDer, key.privateKey);
  const algId = seq(alg.nullParams ? [oid(alg.oid), asn1.create(U, T.NULL, false, '')] : [oid(alg.oid)]);
  const csr = seq([info, algId, asn1.create(U, T.BITSTRING, false, `\x00${signature.toString('binary')}`)]);
  const der = Buffer.from(asn1.toDer(csr).getBytes(), 'binary');
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}
