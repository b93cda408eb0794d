// Certificates read from files (mounted Secrets, ./etc/certs, DestinationRule `file-cert:` / `file-root:`
// resources): read with a size limit, checked before they are served, and fingerprinted by content so a
// change is recognised by what the files hold, never by events or modification times.
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { readFileLimited } from '../lib/files.js';
import { parseRootCerts, pemBlockDer, pemCertBlocks } from './pem.js';

/** A certificate or key file larger than this is refused (a bundle of a few hundred roots is ~200 KiB). */
export const MAX_CERT_FILE_BYTES = 2 * 1024 * 1024;

export class FileSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FileSecretError';
  }
}

export interface KeyCertFiles {
  /** The chain file's bytes as text, served as-is (as pilot-agent does). */
  readonly certificateChain: string;
  readonly privateKey: string;
  readonly leaf: X509Certificate;
  readonly notAfterMs: number;
  /** Content fingerprint of both files. */
  readonly digest: string;
}

export interface RootFile {
  /** The certificates that parsed, re-encoded (pilot-agent skips blocks that do not parse). */
  readonly rootCert: string;
  readonly certs: readonly X509Certificate[];
  /** Blocks that were skipped, and why. */
  readonly skipped: readonly string[];
  readonly digest: string;
}

async function read(path: string, what: string): Promise<string> {
  try {
    return (await readFileLimited(path, MAX_CERT_FILE_BYTES)).toString('utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileSecretError(code === 'ENOENT' ? `${what} ${path}: no such file or directory` : `${what} ${path}: ${(e as Error).message}`);
  }
}

const sha256 = (...parts: string[]): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
};

/** Reads and checks a certificate chain and its key: both parse, and the key is the leaf's. */
export async function readKeyCertFiles(certPath: string, keyPath: string): Promise<KeyCertFiles> {
  const [certificateChain, privateKey] = await Promise.all([read(certPath, 'certificate chain'), read(keyPath, 'private key')]);
  const blocks = pemCertBlocks(certificateChain);
  if (blocks.length === 0) throw new FileSecretError(`certificate chain ${certPath}: no PEM certificate found`);
  let leaf: X509Certificate | undefined;
  for (const [i, b] of blocks.entries()) {
    try {
      const c = new X509Certificate(pemBlockDer(b));
      leaf ??= c;
    } catch (e) {
      throw new FileSecretError(`certificate chain ${certPath}: certificate ${i + 1} does not parse: ${(e as Error).message}`);
    }
  }
  let key;
  try {
    key = createPrivateKey(privateKey);
  } catch {
    // the key's bytes never go into a message
    throw new FileSecretError(`private key ${keyPath}: not a PEM private key`);
  }
  if (!leaf!.checkPrivateKey(key)) throw new FileSecretError(`private key ${keyPath} does not match the certificate in ${certPath}`);
  return { certificateChain, privateKey, leaf: leaf!, notAfterMs: Date.parse(leaf!.validTo), digest: sha256(certificateChain, privateKey) };
}

/** Reads a bundle of roots; blocks that do not parse are skipped (as pilot-agent), none parsing is an error. */
export async function readRootFile(path: string): Promise<RootFile> {
  const text = await read(path, 'root certificate');
  let parsed;
  try {
    parsed = parseRootCerts(text, path);
  } catch (e) {
    throw new FileSecretError((e as Error).message);
  }
  return { rootCert: parsed.pem, certs: parsed.certs, skipped: parsed.errors, digest: sha256(text) };
}

/** True when the file exists and is not empty (pilot-agent's check for the well-known certificate files). */
export async function nonEmptyFile(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    return s.isFile() && s.size > 0;
  } catch {
    return false;
  }
}
