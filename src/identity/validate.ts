// Checks a CA response before it is ever served: every element parses, the leaf certifies our key and our
// SPIFFE identity, each certificate is signed by the next, the chain ends at a root (self-signed, or one we
// already trust), and the leaf is within its validity period. pilot-agent only checks that the chain has
// more than one element; a response failing any check here is rejected and the last good certificate kept.
import { X509Certificate, createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { concatCerts, pemBlockDer, pemCertBlocks } from './pem.js';

/** Clock skew tolerated on a new certificate's NotBefore. */
export const NOT_BEFORE_SKEW_MS = 5 * 60_000;

export class CaResponseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CaResponseError';
  }
}

export interface IssuedCert {
  /** The chain as served to Envoy: the CA's elements concatenated as pilot-agent does. */
  readonly chainPem: string;
  /** The last element of the CA's chain (the root, normally), as text. */
  readonly rootPem: string;
  readonly leaf: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly spiffeId: string;
  readonly serial: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

/** `spiffe://td/ns/x/sa/y` URIs among the certificate's subjectAltName entries. */
export function spiffeUris(cert: X509Certificate): string[] {
  const san = cert.subjectAltName ?? '';
  return san
    .split(/,\s*/)
    .filter((e) => e.startsWith('URI:spiffe://'))
    .map((e) => e.slice(4));
}

/** The ns/sa part of a SPIFFE ID (everything after the trust domain), or undefined. */
function workloadPath(id: string): string | undefined {
  const m = /^spiffe:\/\/[^/]+(\/.*)$/.exec(id);
  return m?.[1];
}

export function fingerprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('hex');
}

function isSelfSigned(c: X509Certificate): boolean {
  return c.checkIssued(c) && c.verify(c.publicKey);
}

export interface ValidateOptions {
  /** The key the CSR was made with. */
  readonly privateKey: KeyObject;
  /** Our SPIFFE ID. The CA may use its own trust domain (pilot-agent accepts that); namespace and service account must match. */
  readonly spiffeId: string;
  /** Roots that may complete a chain that does not include its root. */
  readonly trustedRoots: readonly X509Certificate[];
  readonly nowMs: number;
}

/** Validates the `cert_chain` of a CreateCertificate response. Throws CaResponseError saying what is wrong. */
export function validateIssuedChain(elements: readonly string[], o: ValidateOptions): IssuedCert {
  // pilot-agent's own rule: a chain of one element (or none) is refused
  if (elements.length <= 1) throw new CaResponseError('invalid empty CertChain');
  const certs: X509Certificate[] = [];
  elements.forEach((el, i) => {
    const blocks = pemCertBlocks(el);
    if (blocks.length === 0) throw new CaResponseError(`cert_chain[${i}] is not a PEM certificate`);
    for (const b of blocks) {
      try {
        certs.push(new X509Certificate(pemBlockDer(b)));
      } catch (e) {
        throw new CaResponseError(`cert_chain[${i}] does not parse: ${(e as Error).message}`);
      }
    }
  });
  const leaf = certs[0]!;
  if (!leaf.checkPrivateKey(o.privateKey)) throw new CaResponseError('the issued certificate is not for the key in our CSR');
  const ids = spiffeUris(leaf);
  const wanted = workloadPath(o.spiffeId);
  const id = ids.find((u) => u === o.spiffeId) ?? ids.find((u) => workloadPath(u) === wanted);
  if (!id) throw new CaResponseError(`the issued certificate is for ${ids.length ? ids.join(', ') : 'no SPIFFE identity'}, not ${o.spiffeId}`);
  for (let i = 0; i + 1 < certs.length; i++) {
    const [c, issuer] = [certs[i]!, certs[i + 1]!];
    if (!c.checkIssued(issuer) || !c.verify(issuer.publicKey)) {
      throw new CaResponseError(`cert_chain is broken: certificate ${i} (${(c.subject ?? '').replace(/\n/g, ', ') || 'no subject'}) is not signed by certificate ${i + 1}`);
    }
  }
  const last = certs[certs.length - 1]!;
  if (!isSelfSigned(last)) {
    const anchor = o.trustedRoots.find((r) => last.checkIssued(r) && last.verify(r.publicKey));
    if (!anchor) throw new CaResponseError('cert_chain does not end at a root certificate, and no trusted root signed its last certificate');
  }
  const notBeforeMs = Date.parse(leaf.validFrom);
  const notAfterMs = Date.parse(leaf.validTo);
  if (!(notAfterMs > o.nowMs)) throw new CaResponseError(`the issued certificate expired at ${new Date(notAfterMs).toISOString()}`);
  if (notBeforeMs > o.nowMs + NOT_BEFORE_SKEW_MS) throw new CaResponseError(`the issued certificate is not valid before ${new Date(notBeforeMs).toISOString()}`);
  return {
    chainPem: concatCerts(elements),
    rootPem: elements[elements.length - 1]!,
    leaf,
    chain: certs,
    spiffeId: id,
    serial: leaf.serialNumber,
    notBeforeMs,
    notAfterMs,
  };
}
