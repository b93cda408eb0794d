// PEM text handling with pilot-agent's byte-level conventions, so what reaches Envoy is what pilot-agent
// would send: chains are concatenated with a newline between elements only where one is missing and none
// after the last; trust bundles are the set of certificates, sorted by their PEM text, joined by one
// newline, with no trailing newline. Unlike pilot-agent, duplicates are recognised by their DER bytes, so
// the same root spelled with different line wrapping (a ConfigMap and a CA response) appears once.
import { X509Certificate } from 'node:crypto';

// spaces or tabs may end the BEGIN line, as Go's pem.Decode allows
const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[ \t]*\r?\n[\s\S]*?-----END CERTIFICATE-----/g;

/** The `CERTIFICATE` PEM blocks in `text`, in order (anything between blocks is dropped). */
export function pemCertBlocks(text: string): string[] {
  return text.match(CERT_BLOCK) ?? [];
}

/** The DER bytes of one PEM block (base64 body; throws when it is not base64). */
export function pemBlockDer(block: string): Buffer {
  const body = block.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length === 0) throw new Error('PEM block body is not base64');
  return Buffer.from(body, 'base64');
}

/** pilot-agent's concatCerts: elements joined, a newline added only where an element lacks one, none at the end. */
export function concatCerts(certs: readonly string[]): string {
  let out = '';
  certs.forEach((c, i) => {
    out += c;
    if (i < certs.length - 1 && !c.endsWith('\n')) out += '\n';
  });
  return out;
}

/**
 * Merges trust bundles (each a PEM text) into one: every certificate once (by DER), sorted by PEM text,
 * joined by `\n`, no trailing newline (pilot-agent's mergeConfigTrustBundle + AppendCertByte). Blocks that
 * are not base64 are dropped.
 */
export function mergeTrustBundles(bundles: readonly string[]): string {
  const byDer = new Map<string, string>();
  for (const b of bundles) {
    for (const block of pemCertBlocks(b)) {
      let key: string;
      try {
        key = pemBlockDer(block).toString('base64');
      } catch {
        continue;
      }
      if (!byDer.has(key)) byDer.set(key, block);
    }
  }
  return [...byDer.values()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).join('\n');
}

/** A DER certificate as PEM with 64-column lines and a trailing newline (Go's pem.EncodeToMemory). */
export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

export interface ParsedRoots {
  /** The certificates that parsed, re-encoded from DER as PEM and concatenated. */
  readonly pem: string;
  readonly certs: readonly X509Certificate[];
  /** Why the others did not parse (block index and message). */
  readonly errors: readonly string[];
}

/**
 * pilot-agent's ParseRootCerts for root files: each PEM block that parses as a certificate is kept, one
 * that does not is skipped with its error recorded. Throws when no block parses.
 */
export function parseRootCerts(text: string, source: string): ParsedRoots {
  const blocks = pemCertBlocks(text.trim());
  const certs: X509Certificate[] = [];
  const errors: string[] = [];
  blocks.forEach((block, i) => {
    try {
      const cert = new X509Certificate(pemBlockDer(block));
      // Go's x509.ParseCertificate, which pilot-agent uses here, refuses negative serial numbers (OpenSSL does not)
      if (cert.serialNumber.startsWith('-')) throw new Error('x509: negative serial number');
      certs.push(cert);
    } catch (e) {
      errors.push(`certificate ${i + 1}: ${(e as Error).message}`);
    }
  });
  if (certs.length === 0) {
    throw new Error(`failed to parse root certs from file ${source}: ${blocks.length === 0 ? 'no PEM certificate found' : errors.join('; ')}`);
  }
  return { pem: certs.map((c) => derToPem(c.raw)).join(''), certs, errors };
}
