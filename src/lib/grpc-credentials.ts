// Credentials toward istiod for the agent's gRPC clients (the xDS upstream and the CA client): the bearer token and TLS, built from files
// read at connection time, so a rotated root or client certificate applies to the next connection, as in
// pilot-agent. "System" roots are the operating system's trust store (the first bundle found in the
// usual places, as Go's crypto/x509 does), not Node's compiled-in Mozilla list.
import { X509Certificate } from 'node:crypto';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { errorMessage } from './errors.js';
import { readFileLimited, readFileLimitedSync } from './files.js';
import { metadataProblem, type CallMetadata } from './grpc-h2/client.js';
import type { Logger } from './log.js';
import { osRootCertFile, type ClientTls } from './tls-names.js';

// the settings side (no gRPC), for the modules that only resolve settings
export { OS_ROOT_CERT_FILES, hostOf, osRootCertFile, xdsServerName, type ClientTls } from './tls-names.js';

/** A projected service-account token is about 1 KiB; anything past this is not a token. */
const MAX_TOKEN_BYTES = 64 * 1024;
/** Root certificates (an OS bundle is about 200 KiB), a client certificate chain or key. */
const MAX_PEM_FILE_BYTES = 4 * 1024 * 1024;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** The roots to trust: the file's PEM, the OS bundle, or (no OS bundle at all) Node's bundled roots. */
async function trustedRoots(tls: ClientTls, log: Logger): Promise<string | Buffer | readonly string[]> {
  if (tls.rootCertPath !== null) {
    const ca = readFileLimitedSync(tls.rootCertPath, MAX_PEM_FILE_BYTES);
    if (!PEM_CERT.test(ca.toString('latin1'))) throw new Error(`failed to create TLS dial option with root certificates: no PEM certificate in ${tls.rootCertPath}`);
    return ca;
  }
  const os = osRootCertFile();
  if (os !== '') return readFileLimitedSync(os, MAX_PEM_FILE_BYTES);
  log.warn('OS CA Cert could not be found for agent; using the runtime\'s bundled roots');
  return rootCertificates;
}

async function clientKeyCert(tls: ClientTls, log: Logger): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (!tls.clientCertChainPath || !tls.clientKeyPath) return undefined;
  let cert: Buffer;
  try {
    cert = readFileLimitedSync(tls.clientCertChainPath, MAX_PEM_FILE_BYTES);
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
    return { cert, key: readFileLimitedSync(tls.clientKeyPath, MAX_PEM_FILE_BYTES) };
  } catch (e) {
    log.warn(`cannot read the client key, using token instead: ${errorMessage(e)}`, { path: tls.clientKeyPath });
    return undefined;
  }
}

/** The TLS context of one connection to istiod; throws, naming the file, when the roots cannot be used. */
export async function clientSecureContext(tls: ClientTls, log: Logger): Promise<SecureContext> {
  const ca = await trustedRoots(tls, log);
  const client = await clientKeyCert(tls, log);
  return createSecureContext({
    minVersion: 'TLSv1.2',
    ca: ca as string | Buffer | string[],
    ...(client ? { cert: client.cert, key: client.key } : {}),
  });
}

/** A call's metadata, and whether a bearer token was read into it. */
export interface CallMetadataRead {
  readonly md: CallMetadata;
  readonly token: boolean;
}

/**
 * The metadata of a call to istiod: `ClusterID`, the configured headers (one gRPC would refuse is logged,
 * `ignoring <headerKind> header`, and left out), then `authorization: Bearer <token>` when there is a token.
 */
export async function readCallMetadata(o: {
  readonly clusterId: string;
  readonly headers: Readonly<Record<string, string | Buffer>>;
  readonly headerKind: string;
  readonly tokenPath: string | null;
  readonly log: Logger;
}): Promise<CallMetadataRead> {
  const md: Record<string, string | Buffer> = { ClusterID: o.clusterId };
  for (const [k, v] of Object.entries(o.headers)) {
    const problem = metadataProblem(k, v);
    if (problem) o.log.warn(`ignoring ${o.headerKind} header ${k}: ${problem}`);
    else md[k] = v;
  }
  const token = await readBearerToken(o.tokenPath, o.log);
  if (token) md.authorization = `Bearer ${token}`;
  return { md, token: token !== '' };
}

/**
 * Metadata read ahead of a call (while its connection was made, so the call waits for neither), used as it
 * is unless it has no token where one is expected: then read again.
 */
export function readAheadOrAgain(ahead: Promise<CallMetadataRead>, tokenPath: string | null, read: () => Promise<CallMetadataRead>): Promise<CallMetadataRead> {
  return ahead.then((m) => (m.token || !tokenPath ? m : read()));
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


