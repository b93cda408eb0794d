// Works out how the agent gets workload certificates, from its configuration, with pilot-agent's rules
// (options/security.go, istio-agent/agent.go, plugins.go): where the SDS socket is, whether a CA is used
// or certificates come from files, the CA endpoint, its TLS root and server name, the key type, the
// rotation settings. Pure apart from the `isFile` probe; every problem is reported at once.
import { statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { AgentConfig } from '../config/agent-config.js';
import { parseProtoDurationNs } from '../config/gocompat.js';
import { AgentError, IssueList } from '../lib/errors.js';
import { hostOf, osRootCertFile, xdsServerName, type ClientTls } from '../lib/tls-names.js';
import type { CacheSettings } from './cache.js';
import type { KeySpec } from './keys.js';
import type { PrivateKeyProviderConfig } from './sds-messages.js';

/** The SPIFFE ID pilot-agent requests: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, verbatim. */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export const WORKLOAD_SDS_DIR = './var/run/secrets/workload-spiffe-uds';
export const FILES_SDS_SOCKET = './var/run/secrets/credential-uds/files-socket';
/** Certificates provisioned by the platform (e.g. a CSI driver): when all three exist, no CA is used. */
export const WORKLOAD_CREDENTIALS_DIR = './var/run/secrets/workload-spiffe-credentials';
export const ETC_CERTS_DIR = './etc/certs';
export const ISTIOD_ROOT_CERT = './var/run/secrets/istio/root-cert.pem';
export const TOKEN_PATH = './var/run/secrets/tokens/istio-token';

export interface CaSettings {
  /** host:port. */
  readonly endpoint: string;
  /** null = plaintext (`:15010`). */
  readonly tls: ClientTls | null;
  /** How the root was chosen, for the start-up log (`CA_ROOT_CA`, `istiod root-cert.pem`, ...). */
  readonly rootSource: string;
  readonly provider: string;
}

export interface IdentitySettings {
  readonly spiffeId: string;
  /** Where our SDS server listens when the workload socket is ours. */
  readonly workloadSocketPath: string;
  /** Where it listens when another SDS server owns the workload socket (we then serve files only). */
  readonly filesSocketPath: string;
  /** WORKLOAD_IDENTITY_SOCKET_FILE is the default `socket` (else a non-default socket must be served by someone else). */
  readonly defaultSocket: boolean;
  /** Certificates come from files only (FILE_MOUNTED_CERTS, workload-spiffe-credentials, GKE): no CA client. */
  readonly fileMounted: boolean;
  /** Why certificates come from files (for the start-up log), when they do. */
  readonly fileMountedReason: string;
  readonly ca: CaSettings | undefined;
  readonly tokenPath: string;
  readonly clusterId: string;
  readonly caHeaders: Readonly<Record<string, string>>;
  readonly certSigner: string;
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  readonly key: KeySpec;
  readonly cache: CacheSettings;
  readonly keyProvider: PrivateKeyProviderConfig | undefined;
  readonly crlEnabled: boolean;
  /** DISABLE_ENVOY: no SDS server; certificates go to OUTPUT_CERTS. */
  readonly proxyless: boolean;
}

function defaultIsFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** ProxyConfig.privateKeyProvider (canonical JSON) as the SDS server needs it. */
function keyProviderOf(pc: Readonly<Record<string, unknown>>, issues: IssueList): PrivateKeyProviderConfig | undefined {
  const pkp = pc.privateKeyProvider as Record<string, { pollDelay?: string; fallback?: boolean } | undefined> | undefined;
  if (!pkp) return undefined;
  for (const provider of ['cryptomb', 'qat'] as const) {
    const c = pkp[provider];
    if (!c) continue;
    let nanos = 0;
    try {
      // only the nanoseconds part is used, as pilot-agent does
      nanos = c.pollDelay ? Number(parseProtoDurationNs(c.pollDelay) % 1_000_000_000n) : 0;
    } catch (e) {
      issues.add('proxyConfig privateKeyProvider', (e as Error).message);
    }
    return { provider, pollDelayNanos: nanos, fallback: c.fallback === true };
  }
  return undefined;
}

export function resolveIdentitySettings(cfg: AgentConfig, isFile: (absPath: string) => boolean = defaultIsFile): IdentitySettings {
  const env = cfg.env;
  const cwd = cfg.paths.cwd;
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(cwd, p));
  const issues = new IssueList();

  const provider = env.caProvider || 'Citadel';
  let fileMounted = env.fileMountedCerts;
  let fileMountedReason = fileMounted ? 'FILE_MOUNTED_CERTS' : '';
  let certChainPath = abs(join(ETC_CERTS_DIR, 'cert-chain.pem'));
  let keyPath = abs(join(ETC_CERTS_DIR, 'key.pem'));
  let rootCertPath = abs(join(ETC_CERTS_DIR, 'root-cert.pem'));

  if (provider === 'GkeWorkloadCertificate') {
    const files = ['certificates.pem', 'private_key.pem', 'ca_certificates.pem'].map((f) => abs(join(WORKLOAD_CREDENTIALS_DIR, f)));
    if (!files.every(isFile)) issues.add('env CA_PROVIDER', `GKE workload certificate files (${files.join(', ')}) not present`);
    if (env.provCert) issues.add('env PROV_CERT', 'PROV_CERT is not supported with CA_PROVIDER=GkeWorkloadCertificate');
    [certChainPath, keyPath, rootCertPath] = files as [string, string, string];
    fileMounted = true;
    fileMountedReason = 'CA_PROVIDER=GkeWorkloadCertificate';
  } else if (provider !== 'Citadel') {
    issues.add('env CA_PROVIDER', `CA provider "${provider}" not registered`);
  }
  if (env.provCert && env.fileMountedCerts) issues.add('env PROV_CERT', 'invalid options: PROV_CERT and FILE_MOUNTED_CERTS are mutually exclusive');
  const creds = ['cert-chain.pem', 'key.pem', 'root-cert.pem'].map((f) => abs(join(WORKLOAD_CREDENTIALS_DIR, f))) as [string, string, string];
  if (!fileMounted && creds.every(isFile)) {
    [certChainPath, keyPath, rootCertPath] = creds;
    fileMounted = true;
    fileMountedReason = `workload certificate files in ${WORKLOAD_CREDENTIALS_DIR}`;
  }

  const endpoint = env.caAddr || cfg.proxy.discoveryAddress;
  let ca: CaSettings | undefined;
  let meshRootCertPath = '';
  if (!fileMounted) {
    if (hostOf(endpoint) === undefined) issues.add(env.caAddr ? 'env CA_ADDR' : 'proxyConfig discoveryAddress', `"${endpoint}" is not host:port`);
    let tls: ClientTls | null = null;
    let rootSource = 'plaintext';
    if (!endpoint.endsWith(':15010')) {
      let rootCertPathCa: string | null = null;
      let checkExists = true;
      if (env.caRootCa === 'SYSTEM') {
        rootSource = 'the system trust store (CA_ROOT_CA=SYSTEM)';
        checkExists = false;
      } else if (env.caRootCa !== '') {
        rootCertPathCa = abs(env.caRootCa);
        rootSource = `CA_ROOT_CA ${env.caRootCa}`;
      } else if (env.pilotCertProvider === 'custom') {
        rootCertPathCa = abs(join(ETC_CERTS_DIR, 'root-cert.pem'));
        rootSource = 'PILOT_CERT_PROVIDER=custom';
      } else if (env.provCert) {
        rootCertPathCa = abs(join(env.provCert, 'root-cert.pem'));
        rootSource = 'PROV_CERT';
        checkExists = false; // on VMs it may appear later
      } else if (env.pilotCertProvider === 'none') {
        issues.add('env PILOT_CERT_PROVIDER', 'root CA file for CA required but configured provider as none');
      } else {
        rootCertPathCa = abs(ISTIOD_ROOT_CERT);
        rootSource = 'istiod root-cert.pem';
        meshRootCertPath = rootCertPathCa;
      }
      if (checkExists && rootCertPathCa !== null && !isFile(rootCertPathCa)) {
        issues.add(env.caRootCa ? 'env CA_ROOT_CA' : 'CA root certificate', `root CA file for CA does not exist ${rootCertPathCa}`);
      }
      tls = {
        rootCertPath: rootCertPathCa,
        // ISTIOD_SAN applies only when CA_ADDR is not set
        serverName: xdsServerName(endpoint, env.caAddr ? undefined : env.istiodSan || undefined),
        ...(env.provCert ? { clientCertChainPath: abs(join(env.provCert, 'cert-chain.pem')), clientKeyPath: abs(join(env.provCert, 'key.pem')) } : {}),
      };
    }
    ca = { endpoint, tls, rootSource, provider };
  }

  const key: KeySpec = env.eccSignatureAlgorithm === 'ECDSA' ? { kind: 'ec', curve: env.eccCurve === 'P384' ? 'P384' : 'P256' } : { kind: 'rsa', bits: env.workloadRsaKeySize };
  const keyProvider = keyProviderOf(cfg.proxyConfig as Readonly<Record<string, unknown>>, issues);
  if (env.workloadIdentitySocketFile.includes('/')) {
    issues.add('env WORKLOAD_IDENTITY_SOCKET_FILE', `workload identity socket file override must be a filename, not a path: ${env.workloadIdentitySocketFile}`);
  }
  issues.throwIfAny();

  const outputCertsDir = env.outputCerts ? abs(env.outputCerts) : '';
  return {
    spiffeId: spiffeId(env.trustDomain, env.podNamespace, env.serviceAccount),
    workloadSocketPath: abs(join(WORKLOAD_SDS_DIR, env.workloadIdentitySocketFile)),
    filesSocketPath: abs(FILES_SDS_SOCKET),
    defaultSocket: env.workloadIdentitySocketFile === 'socket',
    fileMounted,
    fileMountedReason,
    ca,
    tokenPath: abs(TOKEN_PATH),
    clusterId: env.clusterId,
    caHeaders: env.caHeaders,
    certSigner: env.certSigner,
    keepaliveTimeMs: env.grpcKeepaliveIntervalMs,
    keepaliveTimeoutMs: env.grpcKeepaliveTimeoutMs,
    key,
    keyProvider,
    crlEnabled: env.enableCaCrl,
    proxyless: env.disableEnvoy,
    cache: {
      spiffeId: spiffeId(env.trustDomain, env.podNamespace, env.serviceAccount),
      secretTtlMs: env.secretTtlMs,
      graceRatio: env.secretGracePeriodRatio,
      graceRatioJitter: env.secretGracePeriodRatioJitter,
      pkcs8Key: env.pkcs8Key,
      certChainPath,
      keyPath,
      rootCertPath,
      outputCertsDir,
      // the key is the agent's alone, except for a proxyless gRPC application in Kubernetes, which reads
      // it from the shared volume as another user (pilot-agent writes everything 0644 there)
      outputKeyMode: env.disableEnvoy && env.kubernetesServiceHost !== '' ? 0o644 : 0o600,
      osRootCertPath: osRootCertFile(),
      meshRootCertPath,
      filePollMs: 5000,
      fileDebounceMs: env.fileDebounceDurationMs,
    },
  };
}

/**
 * The socket our SDS server binds: the workload socket, or the files-only socket when another SDS server
 * (e.g. SPIRE) already answers on the workload socket (`externalSocket`); none in proxyless mode. A
 * non-default workload socket that nothing serves is pilot-agent's start-up error.
 */
export function sdsSocketToBind(s: IdentitySettings, externalSocket: boolean): string | undefined {
  if (!externalSocket && !s.defaultSocket) {
    throw new AgentError('AGENT_ERR_CONFIG', `agent configured for non-default SDS socket path: ${s.workloadSocketPath} but no socket found`);
  }
  if (s.proxyless) return undefined;
  return externalSocket ? s.filesSocketPath : s.workloadSocketPath;
}
