// Works out how the xDS proxy reaches istiod, from ProxyConfig and the agent's environment, with
// pilot-agent's precedence rules. Pure apart from the injected `isFile` probe; every bad input is
// reported at once as a ConfigError.
import { DEFAULT_STUCK_STREAM_TIMEOUT_MS } from './watchdog.js';
import { statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseGoDuration } from '../lib/duration.js';
import { IssueList } from '../lib/errors.js';
import { hostOf, xdsServerName, type ClientTls } from '../lib/tls-names.js';

export { hostOf, xdsServerName };

/** Relative to the agent's working directory, as in the container (WORKDIR /). */
export const DEFAULT_CONFIG_PATH = './etc/istio/proxy';
export const XDS_SOCKET_NAME = 'XDS';
/** The istio-ca-root-cert ConfigMap mount (PILOT_CERT_PROVIDER=istiod). */
export const ISTIOD_ROOT_CERT_PATH = './var/run/secrets/istio/root-cert.pem';
/** "Old style" mounted certificates; if this root exists it wins. */
export const MOUNTED_ROOT_CERT_PATH = './etc/certs/root-cert.pem';
/** Kubernetes projected service-account token (JWT_POLICY third-party-jwt, and every other policy). */
export const ISTIO_TOKEN_PATH = './var/run/secrets/tokens/istio-token';

export const DEFAULT_KEEPALIVE_TIME_MS = 30_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;
/** ISTIO_GPRC_MAXSTREAMS default. */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 100_000;
/** ISTIO_GPRC_MAXRECVMSGSIZE default (4 MiB): the largest request Envoy may send us. */
export const DEFAULT_MAX_DOWNSTREAM_RECV_BYTES = 4 * 1024 * 1024;
/** The XDS socket for Envoy, which runs as the agent's user: owner only. */
export const SIDECAR_SOCKET_MODE = 0o600;
/**
 * The XDS socket in proxyless mode (DISABLE_ENVOY=true): Istio's grpc-agent template mounts
 * ./etc/istio/proxy into application containers that usually run as another user (pilot-agent: 0666 always).
 */
export const PROXYLESS_SOCKET_MODE = 0o666;

/** TLS toward istiod (`rootCertPath` null = the operating system's trust store, XDS_ROOT_CA=SYSTEM). */
export type UpstreamTls = ClientTls;

/** What the proxy needs from configuration; spread it into `createXdsProxy` options. */
export interface XdsProxySettings {
  /** Absolute path of the Unix socket Envoy's xds-grpc cluster points at. */
  readonly udsPath: string;
  /** istiod host:port (ProxyConfig.discoveryAddress). */
  readonly discoveryAddress: string;
  /** null = plaintext (controlPlaneAuthPolicy NONE). */
  readonly tls: UpstreamTls | null;
  /** Absolute token path re-read for each upstream stream; null = send no token. */
  readonly tokenPath: string | null;
  /** Sent as gRPC metadata `ClusterID` (ISTIO_META_CLUSTER_ID). */
  readonly clusterId: string;
  /** Extra upstream metadata from XDS_HEADER_<NAME>=value. */
  readonly xdsHeaders: Readonly<Record<string, string>>;
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  /** XDS_STUCK_STREAM_TIMEOUT (ours): how long istiod may leave a request it must answer unanswered; 0 = never checked. */
  readonly stuckStreamTimeoutMs?: number;
  readonly maxConcurrentStreams: number;
  readonly maxDownstreamRecvBytes: number;
  /** Mode of the socket file: 0600 for a sidecar, 0666 in proxyless mode (DISABLE_ENVOY=true). */
  readonly socketMode?: number;
}

export interface XdsSettingsInput {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** ProxyConfig.discoveryAddress, e.g. `istiod.istio-system.svc:15012`. */
  readonly discoveryAddress: string;
  /** ProxyConfig.controlPlaneAuthPolicy: `MUTUAL_TLS` (default) or `NONE` (plaintext). */
  readonly controlPlaneAuthPolicy?: string;
  /** ProxyConfig.proxyMetadata (FILE_MOUNTED_CERTS reads ISTIO_META_TLS_CLIENT_* from it). */
  readonly proxyMetadata?: Readonly<Record<string, string>>;
  /** ProxyConfig.configPath (default ./etc/istio/proxy). */
  readonly configPath?: string;
  /** Regular-file probe (for tests); defaults to fs.statSync. */
  readonly isFile?: (absPath: string) => boolean;
}

const XDS_HEADER_PREFIX = 'XDS_HEADER_';
const META_CLIENT_ROOT_CERT = 'ISTIO_META_TLS_CLIENT_ROOT_CERT';
const META_CLIENT_KEY = 'ISTIO_META_TLS_CLIENT_KEY';
const META_CLIENT_CERT_CHAIN = 'ISTIO_META_TLS_CLIENT_CERT_CHAIN';

function defaultIsFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Go's strconv.ParseBool. */
function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

export function resolveXdsProxySettings(input: XdsSettingsInput): XdsProxySettings {
  const { env, cwd } = input;
  const isFile = input.isFile ?? defaultIsFile;
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  const issues = new IssueList();

  const discoveryAddress = input.discoveryAddress;
  if (!discoveryAddress) issues.add('proxyConfig discoveryAddress', 'must not be empty');
  else if (hostOf(discoveryAddress) === undefined)
    issues.add('proxyConfig discoveryAddress', `"${discoveryAddress}" is not host:port`);

  const durationEnv = (name: string, dflt: number): number => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    try {
      const ms = parseGoDuration(v);
      if (ms <= 0) throw new Error(`must be positive, got "${v}"`);
      return ms;
    } catch (e) {
      issues.add(`env ${name}`, (e as Error).message);
      return dflt;
    }
  };
  const intEnv = (name: string, dflt: number): number => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    if (!/^\d+$/.test(v.trim()) || Number(v) <= 0 || Number(v) > 2_147_483_647) {
      issues.add(`env ${name}`, `invalid positive integer "${v}"`);
      return dflt;
    }
    return Number(v);
  };
  const boolEnv = (name: string, dflt: boolean): boolean => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    const b = parseGoBool(v);
    if (b === undefined) {
      issues.add(`env ${name}`, `invalid boolean "${v}"`);
      return dflt;
    }
    return b;
  };

  const keepaliveTimeMs = durationEnv('GRPC_KEEPALIVE_INTERVAL', DEFAULT_KEEPALIVE_TIME_MS);
  const keepaliveTimeoutMs = durationEnv('GRPC_KEEPALIVE_TIMEOUT', DEFAULT_KEEPALIVE_TIMEOUT_MS);
  const stuckStreamTimeoutMs = env.XDS_STUCK_STREAM_TIMEOUT?.trim() === '0' ? 0 : durationEnv('XDS_STUCK_STREAM_TIMEOUT', DEFAULT_STUCK_STREAM_TIMEOUT_MS);
  const maxConcurrentStreams = intEnv('ISTIO_GPRC_MAXSTREAMS', DEFAULT_MAX_CONCURRENT_STREAMS);
  const maxDownstreamRecvBytes = intEnv('ISTIO_GPRC_MAXRECVMSGSIZE', DEFAULT_MAX_DOWNSTREAM_RECV_BYTES);
  const fileMountedCerts = boolEnv('FILE_MOUNTED_CERTS', false);
  // validated (and reported) with the rest of the agent's environment; here only its effect on the socket
  const proxyless = parseGoBool(env.DISABLE_ENVOY ?? '') === true;
  const provCert = env.PROV_CERT ?? '';
  const pilotCertProvider = env.PILOT_CERT_PROVIDER || 'istiod';
  const meta = input.proxyMetadata ?? {};

  const credType = env.CREDENTIAL_FETCHER_TYPE ?? '';
  if (credType !== '' && credType !== 'JWT')
    issues.add('env CREDENTIAL_FETCHER_TYPE', `unsupported credential fetcher type "${credType}" (want JWT)`);
  if (provCert && fileMountedCerts) issues.add('env PROV_CERT', 'PROV_CERT and FILE_MOUNTED_CERTS are mutually exclusive');

  const policy = (input.controlPlaneAuthPolicy ?? 'MUTUAL_TLS').toUpperCase();
  if (policy !== 'NONE' && policy !== 'MUTUAL_TLS')
    issues.add('proxyConfig controlPlaneAuthPolicy', `"${input.controlPlaneAuthPolicy}" is not NONE or MUTUAL_TLS`);

  let tls: UpstreamTls | null = null;
  if (policy !== 'NONE') {
    const root = findXdsRootCert({ env, provCert, fileMountedCerts, pilotCertProvider, meta, abs, isFile });
    if ('error' in root) issues.add(root.source, root.error);
    let clientCertChainPath: string | undefined;
    let clientKeyPath: string | undefined;
    if (provCert) {
      clientKeyPath = abs(join(provCert, 'key.pem'));
      clientCertChainPath = abs(join(provCert, 'cert-chain.pem'));
    } else if (fileMountedCerts) {
      clientKeyPath = meta[META_CLIENT_KEY] ? abs(meta[META_CLIENT_KEY]) : undefined;
      clientCertChainPath = meta[META_CLIENT_CERT_CHAIN] ? abs(meta[META_CLIENT_CERT_CHAIN]) : undefined;
    }
    tls = {
      rootCertPath: 'path' in root ? root.path : null,
      serverName: xdsServerName(discoveryAddress, env.ISTIOD_SAN),
      ...(clientCertChainPath && clientKeyPath ? { clientCertChainPath, clientKeyPath } : {}),
    };
  }

  const xdsHeaders: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith(XDS_HEADER_PREFIX) && v !== undefined && k.length > XDS_HEADER_PREFIX.length) {
      const name = k.slice(XDS_HEADER_PREFIX.length);
      if (!/^[0-9A-Za-z_.-]+$/.test(name)) issues.add(`env ${k}`, `"${name}" is not a valid gRPC metadata key`);
      else xdsHeaders[name] = v;
    }
  }

  issues.throwIfAny();
  return {
    udsPath: abs(join(input.configPath || DEFAULT_CONFIG_PATH, XDS_SOCKET_NAME)),
    discoveryAddress,
    tls,
    tokenPath: abs(ISTIO_TOKEN_PATH),
    clusterId: env.ISTIO_META_CLUSTER_ID ?? '',
    xdsHeaders,
    keepaliveTimeMs,
    keepaliveTimeoutMs,
    stuckStreamTimeoutMs,
    maxConcurrentStreams,
    maxDownstreamRecvBytes,
    socketMode: proxyless ? PROXYLESS_SOCKET_MODE : SIDECAR_SOCKET_MODE,
  };
}

type RootChoice = { path: string } | { system: true } | { error: string; source: string };

/** pilot-agent's FindRootCAForXDS: XDS_ROOT_CA > ./etc/certs/root-cert.pem > $PROV_CERT/root-cert.pem > FILE_MOUNTED_CERTS metadata > (none => error) > istiod ConfigMap mount. */
function findXdsRootCert(o: {
  env: Readonly<Record<string, string | undefined>>;
  provCert: string;
  fileMountedCerts: boolean;
  pilotCertProvider: string;
  meta: Readonly<Record<string, string>>;
  abs: (p: string) => string;
  isFile: (p: string) => boolean;
}): RootChoice {
  const explicit = o.env.XDS_ROOT_CA ?? '';
  let candidate: string;
  let source: string;
  if (explicit === 'SYSTEM') return { system: true };
  if (explicit !== '') {
    candidate = o.abs(explicit);
    source = 'env XDS_ROOT_CA';
  } else if (o.isFile(o.abs(MOUNTED_ROOT_CERT_PATH))) {
    return { path: o.abs(MOUNTED_ROOT_CERT_PATH) };
  } else if (o.provCert !== '') {
    // Not checked for existence: on VMs it may appear later.
    return { path: o.abs(join(o.provCert, 'root-cert.pem')) };
  } else if (o.fileMountedCerts) {
    candidate = o.abs(o.meta[META_CLIENT_ROOT_CERT] ?? '');
    source = `proxyMetadata ${META_CLIENT_ROOT_CERT}`;
  } else if (o.pilotCertProvider === 'none') {
    return { error: 'root CA file for XDS required but configured provider as none', source: 'env PILOT_CERT_PROVIDER' };
  } else {
    candidate = o.abs(ISTIOD_ROOT_CERT_PATH);
    source = 'xds root certificate';
  }
  if (o.isFile(candidate)) return { path: candidate };
  return { error: `root CA file for XDS does not exist ${candidate}`, source };
}
