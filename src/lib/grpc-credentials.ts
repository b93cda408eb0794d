// Credentials toward istiod for the agent's gRPC clients (the bearer token and TLS) (the xDS upstream and the CA client), built from files
// read at connection time, so a rotated root or client certificate applies to the next connection, as in
// pilot-agent. "System" roots are the operating system's trust store (the first bundle found in the
// usual places, as Go's crypto/x509 does), not Node's compiled-in Mozilla list.
import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext, rootCertificates } from 'node:tls';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { errorMessage } from './errors.js';
import { readFileLimited } from './files.js';
import type { Logger } from './log.js';

/** A projected service-account token is about 1 KiB; anything past this is not a token. */
const MAX_TOKEN_BYTES = 64 * 1024;

/** TLS settings of one gRPC client. */
export interface ClientTls {
  /** PEM file with the roots to trust; null = the operating system's trust store. Re-read for every new connection. */
  readonly rootCertPath: string | null;
  /** TLS server name (SNI and the name the server certificate must carry). */
  readonly serverName: string;
  /** Client certificate (PROV_CERT or FILE_MOUNTED_CERTS); presented only while parsable and unexpired. */
  readonly clientCertChainPath?: string;
  readonly clientKeyPath?: string;
}

/** Where Linux distributions keep the system CA bundle, in the order Go's crypto/x509 (and pilot-agent) look. */
export const OS_ROOT_CERT_FILES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/tls/cacert.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
  '/usr/local/etc/ssl/cert.pem',
  '/etc/ssl/certs/ca-certificates',
] as const;

/** The first OS CA bundle that exists, or '' (pilot-agent's GetOSRootFilePath). */
export function osRootCertFile(candidates: readonly string[] = OS_ROOT_CERT_FILES): string {
  for (const p of candidates) {
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // next
    }
  }
  return '';
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** The roots to trust: the file's PEM, the OS bundle, or (no OS bundle at all) Node's bundled roots. */
async function trustedRoots(tls: ClientTls, log: Logger): Promise<string | Buffer | readonly string[]> {
  if (tls.rootCertPath !== null) {
    const ca = await readFile(tls.rootCertPath);
    if (!PEM_CERT.test(ca.toString('latin1'))) throw new Error(`failed to create TLS dial option with root certificates: no PEM certificate in ${tls.rootCertPath}`);
    return ca;
  }
  const os = osRootCertFile();
  if (os !== '') return readFile(os);
  log.warn('OS CA Cert could not be found for agent; using the runtime\'s bundled roots');
  return rootCertificates;
}

async function clientKeyCert(tls: ClientTls, log: Logger): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (!tls.clientCertChainPath || !tls.clientKeyPath) return undefined;
  let cert: Buffer;
  try {
    cert = await readFile(tls.clientCertChainPath);
    const leaf = new X509Certificate(cert);
    if (Date.parse(leaf.validTo) <= Date.now()) {
      log.warn('cert expired, using token instead', { path: tls.clientCertChainPath });
      return undefined;
    }
  } catch (e) {
    log.warn(`cannot parse the cert chain, using token instead: ${errorMessage(e)}`, { path: tls.clientCertChainPath });
    return undefined;
  }
  try {
    return { cert, key: await readFile(tls.clientKeyPath) };
  } catch (e) {
    log.warn(`cannot read the client key, using token instead: ${errorMessage(e)}`, { path: tls.clientKeyPath });
    return undefined;
  }
}

/** Channel credentials for one connection (null = plaintext); throws, naming the file, when the roots cannot be used. */
export async function clientCredentials(tls: ClientTls | null, log: Logger): Promise<ChannelCredentials> {
  if (!tls) return credentials.createInsecure();
  const ca = await trustedRoots(tls, log);
  const client = await clientKeyCert(tls, log);
  const ctx = createSecureContext({
    minVersion: 'TLSv1.2',
    ca: ca as string | Buffer | string[],
    ...(client ? { cert: client.cert, key: client.key } : {}),
  });
  return credentials.createFromSecureContext(ctx);
}

/** Reads the bearer token as pilot-agent's token plugin does: trimmed; a missing file is a warning and no header. */
export async function readBearerToken(tokenPath: string | null, log: Logger): Promise<string> {
  if (!tokenPath) return '';
  try {
    return (await readFileLimited(tokenPath, MAX_TOKEN_BYTES)).toString('utf8').trim();
  } catch (e) {
    log.warn(`failed to fetch token from file: ${errorMessage(e)}`);
    return '';
  }
}


/** Host part of host:port, like Go's net.SplitHostPort; undefined when there is no port. */
export function hostOf(address: string): string | undefined {
  const m = /^\[([^\]]*)\]:([^:]*)$/.exec(address) ?? /^([^:]*):([^:]*)$/.exec(address);
  return m ? m[1] : undefined;
}

/** The TLS server name pilot-agent uses for istiod (xDS and CA): the address host (`localhost*` => istiod.istio-system.svc), ISTIOD_SAN wins. */
export function xdsServerName(discoveryAddress: string, istiodSan: string | undefined): string {
  if (istiodSan) return istiodSan;
  const host = hostOf(discoveryAddress) ?? '';
  if (host.includes('localhost')) return 'istiod.istio-system.svc';
  return host;
}

