// Every environment variable pilot-agent 1.30 reads for a sidecar, parsed in one place into a typed,
// read-only record. Defaults are Istio's. Unlike Istio (which logs and falls back to the default), a
// malformed value is reported as a problem naming the variable; an empty value means "default" for
// typed variables and "empty" for strings, as Istio's env.Register does.
import { parseGoDurationNs, goParseBool, nsToMs } from './gocompat.js';
import type { IssueList } from '../lib/errors.js';
import { clip, setOwn } from './limits.js';

export type Env = Readonly<Record<string, string | undefined>>;

export interface AgentEnv {
  // identity (downward API)
  readonly podName: string;
  readonly podNamespace: string;
  readonly instanceIp: string;
  readonly serviceAccount: string;
  readonly hostIp: string;
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly cpuLimit: number;
  // configuration sources
  readonly proxyConfigEnv: string;
  readonly istioBootstrap: string;
  readonly istioBootstrapOverride: string;
  readonly grpcXdsBootstrap: string;
  readonly disableEnvoy: boolean;
  // bootstrap feature flags
  readonly deltaXds: boolean;
  readonly dualStack: boolean;
  readonly envoyStatusPort: number;
  readonly envoyPrometheusPort: number;
  readonly envoyStatusPortEnableProxyProtocol: boolean;
  /** PEER_METADATA_DISCOVERY; undefined when not set (then it follows ISTIO_META_ENABLE_HBONE). */
  readonly peerMetadataDiscovery: boolean | undefined;
  readonly envoySkipDeprecatedLogs: boolean;
  readonly envoyEnableCoreDump: boolean;
  readonly compliancePolicy: string;
  readonly httpStripFragmentFromPathUnsafeIfDisabled: boolean;
  readonly metricsLocalhostAccessOnly: boolean;
  readonly mergeEnvoyStats: boolean;
  readonly cloudPlatform: string;
  // status server / probes
  readonly prometheusAnnotations: string;
  readonly kubeAppProbers: string;
  readonly rewriteProbeLegacyLocalhostDestination: boolean;
  readonly enableHttp2Probing: boolean;
  readonly probeKeepaliveConnections: boolean;
  // lifecycle
  readonly minimumDrainDurationMs: number;
  readonly exitOnZeroActiveConnections: boolean;
  // security / CA
  readonly caAddr: string;
  readonly caProvider: string;
  readonly pilotCertProvider: string;
  readonly caRootCa: string;
  readonly xdsRootCa: string;
  readonly istiodSan: string;
  readonly jwtPolicy: string;
  readonly credentialFetcherType: string;
  readonly credentialIdentityProvider: string;
  readonly caHeaders: Readonly<Record<string, string>>;
  readonly xdsHeaders: Readonly<Record<string, string>>;
  readonly secretTtlMs: number;
  readonly secretGracePeriodRatio: number;
  readonly secretGracePeriodRatioJitter: number;
  readonly workloadRsaKeySize: number;
  readonly eccSignatureAlgorithm: string;
  readonly eccCurve: string;
  readonly pkcs8Key: boolean;
  readonly certSigner: string;
  readonly outputCerts: string;
  readonly fileMountedCerts: boolean;
  readonly provCert: string;
  readonly fileDebounceDurationMs: number;
  readonly workloadIdentitySocketFile: string;
  readonly enableCaCrl: boolean;
  readonly kubernetesServiceHost: string;
  readonly xdsAuthProvider: string;
  // xDS / DNS / Wasm
  readonly grpcKeepaliveIntervalMs: number;
  readonly grpcKeepaliveTimeoutMs: number;
  readonly grpcMaxStreams: number;
  readonly grpcMaxRecvMsgSize: number;
  readonly proxyConfigXdsAgent: boolean;
  readonly wasmRemoteLoadConversion: boolean;
  readonly wasmInsecureRegistries: readonly string[];
  readonly wasmModuleExpiryMs: number;
  readonly wasmPurgeIntervalMs: number;
  readonly wasmHttpRequestTimeoutMs: number;
  readonly wasmHttpRequestMaxRetries: number;
  readonly dnsCapture: boolean;
  readonly enableDnsServer: boolean;
  readonly dnsProxyAddr: string;
  readonly dnsForwardParallel: boolean;
  readonly dnsForwardTimeoutMs: number;
}

class Reader {
  constructor(
    private readonly env: Env,
    private readonly issues: IssueList,
  ) {}
  str(name: string, def = ''): string {
    const v = this.env[name];
    return v === undefined ? def : v;
  }
  private raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v === '' ? undefined : v;
  }
  bool(name: string, def: boolean): boolean {
    return this.optBool(name) ?? def;
  }
  optBool(name: string): boolean | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    const b = goParseBool(v);
    if (b === undefined) this.issues.add(`env ${name}`, `invalid boolean "${clip(v)}" (want true or false)`);
    return b;
  }
  int(name: string, def: number, min = -Infinity, max = Infinity): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!/^[+-]?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
      this.issues.add(`env ${name}`, `invalid integer "${clip(v)}"`);
      return def;
    }
    const n = Number(v);
    if (n < min || n > max) {
      this.issues.add(`env ${name}`, `${n} is out of range (want ${min}..${max})`);
      return def;
    }
    return n;
  }
  port(name: string, def: number): number {
    return this.int(name, def, 1, 65535);
  }
  float(name: string, def: number, min = -Infinity, max = Infinity): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    const n = Number(v);
    // (\d+\.?\d* would backtrack quadratically on a long run of digits that does not match)
    if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(v) || !Number.isFinite(n)) {
      this.issues.add(`env ${name}`, `invalid number "${clip(v)}"`);
      return def;
    }
    if (n < min || n > max) {
      this.issues.add(`env ${name}`, `${clip(v)} is out of range (want ${min}..${max})`);
      return def;
    }
    return n;
  }
  durationMs(name: string, defMs: number, positive = false): number {
    const v = this.raw(name);
    if (v === undefined) return defMs;
    try {
      const ns = parseGoDurationNs(v);
      if (positive && ns <= 0n) {
        this.issues.add(`env ${name}`, `duration "${clip(v)}" must be positive`);
        return defMs;
      }
      if (ns < 0n) {
        this.issues.add(`env ${name}`, `duration "${clip(v)}" must not be negative`);
        return defMs;
      }
      return nsToMs(ns);
    } catch (e) {
      this.issues.add(`env ${name}`, (e as Error).message);
      return defMs;
    }
  }
  oneOf(name: string, def: string, allowed: readonly string[]): string {
    const v = this.str(name, def);
    if (!allowed.includes(v)) this.issues.add(`env ${name}`, `invalid value "${clip(v)}" (want one of ${allowed.map((a) => `"${a}"`).join(', ')})`);
    return v;
  }
  prefixed(prefix: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.env)) if (k.startsWith(prefix) && v !== undefined) setOwn(out, k.slice(prefix.length), v);
    return out;
  }
}

const MIB = 1024 * 1024;

/** Parses the agent's environment. Problems are added to `issues` (one per variable). */
export function parseAgentEnv(env: Env, issues: IssueList): AgentEnv {
  const r = new Reader(env, issues);
  const cpuLimit = r.int('ISTIO_CPU_LIMIT', 0, 0, 2 ** 31 - 1);
  const kubeAppProbers = r.str('ISTIO_KUBE_APP_PROBERS');
  if (kubeAppProbers !== '') {
    try {
      const v = JSON.parse(kubeAppProbers) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('want a JSON object');
    } catch (e) {
      issues.add('env ISTIO_KUBE_APP_PROBERS', `invalid JSON: ${(e as Error).message}`);
    }
  }
  const prometheusAnnotations = r.str('ISTIO_PROMETHEUS_ANNOTATIONS');
  if (prometheusAnnotations !== '') {
    try {
      JSON.parse(prometheusAnnotations);
    } catch (e) {
      issues.add('env ISTIO_PROMETHEUS_ANNOTATIONS', `invalid JSON: ${(e as Error).message}`);
    }
  }
  const socketFile = r.str('WORKLOAD_IDENTITY_SOCKET_FILE', 'socket');
  if (socketFile.includes('/')) issues.add('env WORKLOAD_IDENTITY_SOCKET_FILE', `workload identity socket file override must be a filename, not a path: ${clip(socketFile)}`);
  const wasmInsecure = r.str('WASM_INSECURE_REGISTRIES');
  return {
    podName: r.str('POD_NAME'),
    podNamespace: r.str('POD_NAMESPACE'),
    instanceIp: r.str('INSTANCE_IP'),
    serviceAccount: r.str('SERVICE_ACCOUNT'),
    hostIp: r.str('HOST_IP'),
    clusterId: r.str('ISTIO_META_CLUSTER_ID'),
    trustDomain: r.str('TRUST_DOMAIN', 'cluster.local'),
    cpuLimit,
    proxyConfigEnv: r.str('PROXY_CONFIG'),
    istioBootstrap: r.str('ISTIO_BOOTSTRAP'),
    istioBootstrapOverride: r.str('ISTIO_BOOTSTRAP_OVERRIDE'),
    grpcXdsBootstrap: r.str('GRPC_XDS_BOOTSTRAP', 'etc/istio/proxy/grpc-bootstrap.json'),
    disableEnvoy: r.bool('DISABLE_ENVOY', false),
    deltaXds: r.bool('ISTIO_DELTA_XDS', true),
    dualStack: r.bool('ISTIO_DUAL_STACK', false),
    envoyStatusPort: r.port('ENVOY_STATUS_PORT', 15021),
    envoyPrometheusPort: r.port('ENVOY_PROMETHEUS_PORT', 15090),
    envoyStatusPortEnableProxyProtocol: r.bool('ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL', false),
    peerMetadataDiscovery: env.PEER_METADATA_DISCOVERY === undefined ? undefined : (r.optBool('PEER_METADATA_DISCOVERY') ?? false),
    envoySkipDeprecatedLogs: r.bool('ENVOY_SKIP_DEPRECATED_LOGS', true),
    envoyEnableCoreDump: r.bool('ISTIO_ENVOY_ENABLE_CORE_DUMP', false),
    compliancePolicy: r.oneOf('COMPLIANCE_POLICY', '', ['', 'fips-140-2']),
    httpStripFragmentFromPathUnsafeIfDisabled: r.bool('HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED', true),
    metricsLocalhostAccessOnly: r.bool('METRICS_LOCALHOST_ACCESS_ONLY', false),
    mergeEnvoyStats: r.bool('PILOT_AGENT_MERGE_ENVOY_STATS', true),
    cloudPlatform: r.str('CLOUD_PLATFORM').toLowerCase(),
    prometheusAnnotations,
    kubeAppProbers,
    rewriteProbeLegacyLocalhostDestination: r.bool('REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION', false),
    enableHttp2Probing: r.bool('ISTIO_ENABLE_HTTP2_PROBING', true),
    probeKeepaliveConnections: r.bool('ENABLE_PROBE_KEEPALIVE_CONNECTIONS', false),
    minimumDrainDurationMs: r.durationMs('MINIMUM_DRAIN_DURATION', 5000),
    exitOnZeroActiveConnections: r.bool('EXIT_ON_ZERO_ACTIVE_CONNECTIONS', false),
    caAddr: r.str('CA_ADDR'),
    caProvider: r.str('CA_PROVIDER', 'Citadel'),
    pilotCertProvider: r.str('PILOT_CERT_PROVIDER', 'istiod'),
    caRootCa: r.str('CA_ROOT_CA'),
    xdsRootCa: r.str('XDS_ROOT_CA'),
    istiodSan: r.str('ISTIOD_SAN'),
    jwtPolicy: r.str('JWT_POLICY', 'third-party-jwt'),
    credentialFetcherType: r.str('CREDENTIAL_FETCHER_TYPE', 'JWT'),
    credentialIdentityProvider: r.str('CREDENTIAL_IDENTITY_PROVIDER', 'GoogleComputeEngine'),
    caHeaders: r.prefixed('CA_HEADER_'),
    xdsHeaders: r.prefixed('XDS_HEADER_'),
    secretTtlMs: r.durationMs('SECRET_TTL', 24 * 3600 * 1000, true),
    secretGracePeriodRatio: r.float('SECRET_GRACE_PERIOD_RATIO', 0.5, 0, 1),
    secretGracePeriodRatioJitter: r.float('SECRET_GRACE_PERIOD_RATIO_JITTER', 0.01, 0, 1),
    workloadRsaKeySize: r.int('WORKLOAD_RSA_KEY_SIZE', 2048, 2048, 16384),
    eccSignatureAlgorithm: r.oneOf('ECC_SIGNATURE_ALGORITHM', '', ['', 'ECDSA']),
    eccCurve: r.oneOf('ECC_CURVE', 'P256', ['P256', 'P384']),
    pkcs8Key: r.bool('PKCS8_KEY', false),
    certSigner: r.str('ISTIO_META_CERT_SIGNER'),
    outputCerts: r.str('OUTPUT_CERTS'),
    fileMountedCerts: r.bool('FILE_MOUNTED_CERTS', false),
    provCert: r.str('PROV_CERT'),
    fileDebounceDurationMs: r.durationMs('FILE_DEBOUNCE_DURATION', 100),
    workloadIdentitySocketFile: socketFile,
    enableCaCrl: r.bool('PILOT_ENABLE_CA_CRL', true),
    kubernetesServiceHost: r.str('KUBERNETES_SERVICE_HOST'),
    xdsAuthProvider: r.str('XDS_AUTH_PROVIDER'),
    grpcKeepaliveIntervalMs: r.durationMs('GRPC_KEEPALIVE_INTERVAL', 30_000),
    grpcKeepaliveTimeoutMs: r.durationMs('GRPC_KEEPALIVE_TIMEOUT', 10_000),
    grpcMaxStreams: r.int('ISTIO_GPRC_MAXSTREAMS', 100_000, 1),
    grpcMaxRecvMsgSize: r.int('ISTIO_GPRC_MAXRECVMSGSIZE', 4 * MIB, 1),
    proxyConfigXdsAgent: r.bool('PROXY_CONFIG_XDS_AGENT', false),
    wasmRemoteLoadConversion: r.bool('ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION', true),
    wasmInsecureRegistries: wasmInsecure === '' ? [] : wasmInsecure.split(','),
    wasmModuleExpiryMs: r.durationMs('WASM_MODULE_EXPIRY', 24 * 3600 * 1000),
    wasmPurgeIntervalMs: r.durationMs('WASM_PURGE_INTERVAL', 3600 * 1000),
    wasmHttpRequestTimeoutMs: r.durationMs('WASM_HTTP_REQUEST_TIMEOUT', 15_000),
    wasmHttpRequestMaxRetries: r.int('WASM_HTTP_REQUEST_MAX_RETRIES', 5, 0),
    dnsCapture: r.bool('ISTIO_META_DNS_CAPTURE', false),
    enableDnsServer: r.bool('ISTIO_META_ENABLE_DNS_SERVER', false),
    dnsProxyAddr: r.str('DNS_PROXY_ADDR', 'localhost:15053'),
    dnsForwardParallel: r.bool('DNS_FORWARD_PARALLEL', false),
    dnsForwardTimeoutMs: r.durationMs('DNS_FORWARD_TIMEOUT', 5000),
  };
}
