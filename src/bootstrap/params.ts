// Everything the bootstrap depends on, computed from the agent configuration (Istio pkg/bootstrap
// config.go `toTemplateParams` and pkg/bootstrap/option): node, runtime flags, stats matcher, tracer,
// metrics/access-log services, listeners' addresses. Pure: no I/O.
import type { AgentConfig } from '../config/agent-config.js';
import { allIPv4, allIPv6 } from '../config/network.js';
import { formatGoDurationNs, goPathJoin, parseGoDurationNs } from '../config/gocompat.js';
import type { ClientTLSSettings, ProxyConfig, TcpKeepalive } from '../config/proxy-config.js';
import { durationNs, sortKeysDeep } from '../config/proxy-config.js';
import { splitHostPort } from '../config/validate.js';
import { ISTIO_VERSION } from '../version.js';
import { buildNodeMetadata, nodeMetadataJson, type Locality, type NodeInfo } from './metadata.js';

export const REQUIRED_STATS_PREFIXES = ['cluster_manager', 'listener_manager', 'server', 'cluster.xds-grpc', 'wasm'];
export const RBAC_STATS_SUFFIXES = ['rbac.allowed', 'rbac.denied', 'shadow_allowed', 'shadow_denied'];
export const REQUIRED_STATS_REGEXES = ['vhost\\..*\\.route\\..*'];
export const LIGHTSTEP_TOKEN_FILE = 'lightstep_access_token.txt';
export const FILE_CREDENTIAL_SOCKET = './var/run/secrets/credential-uds/files-socket';

/** `{"address": host, "port_value": port}` as the template's socket_address. */
export interface SocketAddress {
  readonly address: string;
  readonly port_value: number;
}

export interface RemoteServiceParams {
  readonly address: SocketAddress;
  /** The Envoy transport_socket object, or undefined (no TLS / mode DISABLE). */
  readonly transportSocket?: Record<string, unknown>;
  /** The cluster's upstream_connection_options, when tcpKeepalive is configured. */
  readonly upstreamConnectionOptions?: Record<string, unknown>;
}

export interface TracerParams {
  readonly kind: 'zipkin' | 'lightstep' | 'datadog';
  readonly address: SocketAddress;
  readonly transportSocket?: Record<string, unknown>;
}

export interface HistogramBucket {
  readonly match: { readonly prefix: string };
  readonly buckets: readonly number[];
}

export interface SideFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

export interface BootstrapParams {
  readonly node: NodeInfo;
  readonly nodeId: string;
  readonly nodeType: string;
  readonly cluster: string;
  readonly locality: Locality;
  readonly metadata: Record<string, unknown>;
  readonly runtimeFlags: Record<string, unknown>;
  readonly logJson: boolean;
  readonly xdsType: 'GRPC' | 'DELTA_GRPC';
  readonly metadataDiscovery: boolean;
  readonly metricsLocalhostAccessOnly: boolean;
  readonly localhost: string;
  readonly wildcard: string;
  readonly additionalLocalhost: string;
  readonly additionalWildcard: string;
  readonly dualStack: boolean;
  readonly dnsLookupFamily: 'V4_ONLY' | 'V6_ONLY' | 'ALL';
  readonly envoyStatusPortEnableProxyProtocol: boolean;
  readonly proxyConfig: ProxyConfig;
  readonly proxyAdminPort: number;
  readonly statusPort: number;
  readonly configPath: string;
  readonly workloadIdentitySocketFile: string;
  readonly customFilePath: string;
  readonly statsFlushInterval: string;
  readonly statsEvictionInterval: string;
  readonly extraStatTags: readonly string[];
  readonly inclusionPrefixes: readonly string[];
  readonly inclusionSuffixes: readonly string[];
  readonly inclusionRegexps: readonly string[];
  readonly histogramBuckets: readonly HistogramBucket[];
  readonly envoyStatusPort: number;
  readonly envoyPrometheusPort: number;
  readonly globalDownstreamMaxConnections: number;
  readonly tracer?: TracerParams;
  readonly lightstepTokenFile: string;
  readonly metricsService?: RemoteServiceParams;
  readonly accessLogService?: RemoteServiceParams;
  readonly statsCompression: boolean;
  readonly statsd?: SocketAddress;
  readonly outlierLogPath: string;
  /** ISTIO_META_LOAD_STATS_CONFIG_JSON, parsed. */
  readonly loadStatsConfig?: unknown;
  /** Its raw text (what a Go template pastes). */
  readonly loadStatsConfigText: string;
  readonly pilotSan: readonly string[];
  readonly discoveryHost: string;
  readonly discoveryAddress: string;
  readonly pilotGrpcAddress?: SocketAddress;
  readonly xdsRootCert: string;
  readonly stsPort: number;
  /** Files to write next to the bootstrap (the lightstep token). */
  readonly sideFiles: readonly SideFile[];
  /** Warnings to log (same conditions as pilot-agent's warnings). */
  readonly warnings: readonly string[];
}

/** Run-time facts that decide parts of the bootstrap (pilot-agent checks them when it writes it). */
export interface BootstrapRuntime {
  /** A healthy SDS socket at ./var/run/secrets/credential-uds/socket (`credential: "true"`). */
  readonly credentialSocketExists?: boolean;
  /** A healthy external workload SDS socket: the agent's SDS then serves only files (`file-credential`). */
  readonly workloadSocketExists?: boolean;
  /** Version when ISTIO_META_ISTIO_VERSION is not set (default: the Istio release we implement). */
  readonly istioVersion?: string;
}

export class BootstrapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootstrapError';
  }
}

function socketAddress(name: string, addr: string, hostIp: string): SocketAddress {
  let host: string;
  let port: string;
  try {
    [host, port] = splitHostPort(addr);
  } catch (e) {
    throw new BootstrapError(`unable to parse ${name} address ${JSON.stringify(addr)}: ${(e as Error).message}`);
  }
  if (host === '$(HOST_IP)' && hostIp !== '') host = hostIp;
  if (!/^\d+$/.test(port)) throw new BootstrapError(`unable to parse ${name} address ${JSON.stringify(addr)}: invalid port ${JSON.stringify(port)}`);
  return { address: host, port_value: Number(port) };
}

const sdsConfig = (name: string, istioDefault: boolean): Record<string, unknown> => ({
  name,
  sds_config: {
    api_config_source: {
      api_type: 'GRPC',
      grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }],
      set_node_on_first_message_only: true,
      transport_api_version: 'V3',
    },
    ...(istioDefault ? { initial_fetch_timeout: '0s' } : {}),
    resource_api_version: 'V3',
  },
});

/** Istio's transportSocketConverter: ClientTLSSettings -> Envoy UpstreamTlsContext transport socket. */
export function tlsTransportSocket(tls: ClientTLSSettings | undefined, sniName: string, typed: Record<string, unknown>, isH2: boolean): Record<string, unknown> | undefined {
  if (!tls) return undefined;
  const meta = (k: string, def: string | undefined): string => (typeof typed[k] === 'string' && typed[k] !== '' ? (typed[k] as string) : (def ?? ''));
  const common: Record<string, unknown> = {};
  const matchSans = (tls.subjectAltNames ?? []).map((s) => ({ exact: s }));
  const dvc = matchSans.length ? { match_subject_alt_names: matchSans } : {};
  let sni = tls.sni ?? '';
  let alpn: string[];
  switch (tls.mode ?? 'DISABLE') {
    case 'SIMPLE': {
      const ca = meta('TLS_CLIENT_ROOT_CERT', tls.caCertificates);
      common.combined_validation_context = { default_validation_context: dvc, ...(ca ? { validation_context_sds_secret_config: sdsConfig(`file-root:${ca}`, false) } : {}) };
      alpn = ['h2'];
      break;
    }
    case 'MUTUAL': {
      const cert = meta('TLS_CLIENT_CERT_CHAIN', tls.clientCertificate);
      const key = meta('TLS_CLIENT_KEY', tls.privateKey);
      const ca = meta('TLS_CLIENT_ROOT_CERT', tls.caCertificates);
      if (cert && key) common.tls_certificate_sds_secret_configs = [sdsConfig(`file-cert:${cert}~${key}`, false)];
      common.combined_validation_context = { default_validation_context: dvc, ...(ca ? { validation_context_sds_secret_config: sdsConfig(`file-root:${ca}`, false) } : {}) };
      alpn = ['h2'];
      break;
    }
    case 'ISTIO_MUTUAL':
      common.tls_certificate_sds_secret_configs = [sdsConfig('default', true)];
      common.combined_validation_context = { default_validation_context: dvc, validation_context_sds_secret_config: sdsConfig('ROOTCA', true) };
      alpn = ['istio', 'h2'];
      if (sni === '') sni = sniName;
      break;
    default:
      return undefined;
  }
  if (isH2) common.alpn_protocols = alpn;
  const ctx: Record<string, unknown> = {
    '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
    common_tls_context: common,
    ...(sni ? { sni } : {}),
  };
  return { name: 'envoy.transport_sockets.tls', typed_config: sortKeysDeep(ctx) };
}

/** Istio's keepaliveConverter (encoding/json of wrapper messages: `{"value": N}`). */
function keepaliveOptions(k: TcpKeepalive | undefined): Record<string, unknown> | undefined {
  if (!k) return undefined;
  const ka: Record<string, unknown> = {};
  if ((k.probes ?? 0) > 0) ka.keepalive_probes = { value: k.probes };
  const secs = (d: string | undefined): bigint => durationNs(d) / 1_000_000_000n;
  if (secs(k.time) > 0n) ka.keepalive_time = { value: Number(secs(k.time)) };
  if (secs(k.interval) > 0n) ka.keepalive_interval = { value: Number(secs(k.interval)) };
  return { tcp_keepalive: ka };
}

function serviceCluster(pc: ProxyConfig, typed: Record<string, unknown>): string {
  const labels = (typed.LABELS as Record<string, string> | undefined) ?? {};
  const ns = (typed.NAMESPACE as string | undefined) ?? '';
  const workload = (typed.WORKLOAD_NAME as string | undefined) ?? '';
  const orDefault = (name: string): string => {
    if (name !== '' && name !== 'istio-proxy') return name;
    const app = labels.app ?? labels['app.kubernetes.io/name'] ?? labels['service.istio.io/canonical-name'];
    if (app !== undefined) return `${app}.${ns}`;
    if (workload !== '') return `${workload}.${ns}`;
    if (ns !== '') return `istio-proxy.${ns}`;
    return 'istio-proxy';
  };
  const canonical = (): string => labels['service.istio.io/canonical-name'] ?? labels['app.kubernetes.io/name'] ?? labels.app ?? (workload || 'istio-proxy');
  if (pc.serviceCluster !== undefined) return orDefault(pc.serviceCluster);
  switch (pc.tracingServiceName) {
    case 'CANONICAL_NAME_ONLY':
      return orDefault(canonical());
    case 'CANONICAL_NAME_AND_NAMESPACE':
      return ns !== '' ? `${canonical()}.${ns}` : orDefault(canonical());
    default:
      return orDefault('istio-proxy');
  }
}

/** pilot-agent's runtime flags: defaults, FIPS, strip-fragment, then ProxyConfig runtimeValues. */
export function runtimeFlags(pc: ProxyConfig, compliancePolicy: string, stripFragment: boolean): Record<string, unknown> {
  const flags: Record<string, unknown> = {
    're2.max_program_size.error_level': '32768',
    'envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst': true,
    'envoy.reloadable_features.http_reject_path_with_fragment': false,
    'envoy.reloadable_features.fixed_heap_use_allocated': true,
    'envoy.reloadable_features.coalesce_lb_rebuilds_on_batch_update': false,
  };
  if (compliancePolicy === 'fips-140-2') flags['envoy.reloadable_features.google_grpc_disable_tls_13'] = true;
  if (!stripFragment) flags['envoy.reloadable_features.http_strip_fragment_from_path_unsafe_if_disabled'] = 'false';
  for (const [k, v] of Object.entries(pc.runtimeValues ?? {})) {
    if (v === '') delete flags[k];
    else flags[k] = v === 'true' ? true : v === 'false' ? false : v;
  }
  return sortKeysDeep(flags);
}

const splitCsv = (s: string): string[] => s.split(',');

/** Computes the bootstrap parameters. Throws BootstrapError (or Error for bad metadata) on bad input. */
export function bootstrapParams(cfg: AgentConfig, runtime: BootstrapRuntime = {}): BootstrapParams {
  const pc = cfg.proxyConfig as ProxyConfig;
  const env = cfg.env;
  const warnings: string[] = [];
  const pilotSan: string[] = [];
  if (pc.controlPlaneAuthPolicy === 'MUTUAL_TLS') {
    let host = (pc.discoveryAddress ?? '').split(':')[0]!;
    if (host === 'localhost') host = 'istiod.istio-system.svc';
    pilotSan.push(host);
  }
  let node: NodeInfo;
  try {
    node = buildNodeMetadata({
      nodeId: cfg.nodeId,
      env: cfg.processEnv,
      proxyConfig: pc,
      instanceIps: cfg.nodeIPs,
      stsPort: cfg.stsPort,
      pilotSubjectAltNames: pilotSan,
      credentialSocketExists: runtime.credentialSocketExists ?? false,
      customCredentialsFileExists: runtime.workloadSocketExists ?? false,
      xdsRootCert: env.xdsRootCa,
      outlierLogPath: cfg.outlierLogPath,
      envoyStatusPort: env.envoyStatusPort,
      envoyPrometheusPort: env.envoyPrometheusPort,
      exitOnZeroActiveConnections: env.exitOnZeroActiveConnections,
      metadataDiscovery: env.peerMetadataDiscovery,
      envoySkipDeprecatedLogs: env.envoySkipDeprecatedLogs,
      workloadIdentitySocketFile: env.workloadIdentitySocketFile,
      podLabels: cfg.podLabelsFileExists ? cfg.podLabels : undefined,
      podAnnotations: cfg.podAnnotationsFileExists ? cfg.podAnnotations : undefined,
      istioVersion: runtime.istioVersion ?? ISTIO_VERSION,
    });
  } catch (e) {
    throw new BootstrapError((e as Error).message);
  }
  const typed = node.typed;
  const ips = typed.INSTANCE_IPS as string[];
  const annotations = (typed.ANNOTATIONS as Record<string, string> | undefined) ?? {};

  let xdsType: 'GRPC' | 'DELTA_GRPC' = env.deltaXds ? 'DELTA_GRPC' : 'GRPC';
  let md = typed.METADATA_DISCOVERY === true;
  if (cfg.nodeId.startsWith('waypoint~')) {
    xdsType = 'DELTA_GRPC';
    md = true;
  }
  if (md && xdsType === 'GRPC') {
    warnings.push('disabling metadata discovery; not supported on SotW XDS');
    md = false;
  }

  // IP family
  let localhost = '127.0.0.1';
  let wildcard = '0.0.0.0';
  let additionalLocalhost = '';
  let additionalWildcard = '';
  let dnsLookupFamily: BootstrapParams['dnsLookupFamily'] = 'V4_ONLY';
  let dualStack = false;
  if (allIPv4(ips)) {
    /* IPv4 defaults */
  } else if (allIPv6(ips)) {
    localhost = '::1';
    wildcard = '::';
    dnsLookupFamily = 'V6_ONLY';
  } else if (env.dualStack) {
    const firstV6 = ips[0] !== undefined && ips[0].includes(':') && !/^fe[89ab]/i.test(ips[0]);
    if (firstV6) {
      [localhost, additionalLocalhost, wildcard, additionalWildcard] = ['::1', '127.0.0.1', '::', '0.0.0.0'];
    } else {
      [localhost, additionalLocalhost, wildcard, additionalWildcard] = ['127.0.0.1', '::1', '0.0.0.0', '::'];
    }
    dnsLookupFamily = 'ALL';
    dualStack = true;
  }

  // stats
  const parseOption = (anno: string | undefined, required: readonly string[], fromPc: readonly string[] | undefined): string[] => {
    let list: string[] = [];
    if (anno) list = splitCsv(anno);
    else if (fromPc) list = [...fromPc];
    list.push(...required);
    const out: string[] = [];
    for (const pat of list) {
      if (!pat.includes('{pod_ip}')) out.push(pat);
      else for (const ip of ips) out.push(pat.replaceAll('{pod_ip}', ip));
    }
    return out;
  };
  const psm = pc.proxyStatsMatcher;
  const inclusionPrefixes = parseOption(annotations['sidecar.istio.io/statsInclusionPrefixes'], REQUIRED_STATS_PREFIXES, psm?.inclusionPrefixes);
  const inclusionSuffixes = parseOption(
    annotations['sidecar.istio.io/statsInclusionSuffixes'],
    env.exitOnZeroActiveConnections ? [...RBAC_STATS_SUFFIXES, 'downstream_cx_active'] : RBAC_STATS_SUFFIXES,
    psm?.inclusionSuffixes,
  );
  const inclusionRegexps = parseOption(annotations['sidecar.istio.io/statsInclusionRegexps'], REQUIRED_STATS_REGEXES, psm?.inclusionRegexps);
  const tags = [...(pc.extraStatTags ?? []), ...(annotations['sidecar.istio.io/extraStatTags'] ?? '').split(',')].filter((t) => t !== '');
  const extraStatTags = [...new Set(tags)];
  let histogramBuckets: HistogramBucket[] = [];
  const bucketsAnno = annotations['sidecar.istio.io/statsHistogramBuckets'];
  if (bucketsAnno !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(bucketsAnno);
    } catch (e) {
      parsed = e;
    }
    const ok =
      typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) && !(parsed instanceof Error) &&
      Object.values(parsed).every((v) => v === null || (Array.isArray(v) && v.every((n) => typeof n === 'number')));
    if (ok) {
      histogramBuckets = Object.entries(parsed as Record<string, number[] | null>)
        .map(([prefix, buckets]) => ({ match: { prefix }, buckets: buckets ?? [] }))
        .sort((a, b) => (a.match.prefix < b.match.prefix ? -1 : a.match.prefix > b.match.prefix ? 1 : 0));
    } else {
      warnings.push(`Failed to unmarshal histogram buckets ${bucketsAnno}: want a JSON object of number lists`);
    }
  }
  let flushNs = 5_000_000_000n;
  let statsFlushInterval = '';
  const flushAnno = annotations['sidecar.istio.io/statsFlushInterval'];
  if (flushAnno !== undefined) {
    try {
      flushNs = parseGoDurationNs(flushAnno);
      statsFlushInterval = formatGoDurationNs(flushNs);
    } catch (e) {
      warnings.push(`Failed to parse stats flush interval ${flushAnno}: ${(e as Error).message}`);
    }
  }
  let statsEvictionInterval = '';
  const evictAnno = annotations['sidecar.istio.io/statsEvictionInterval'];
  if (evictAnno !== undefined) {
    try {
      const ev = parseGoDurationNs(evictAnno);
      if (flushNs === 0n || ev % flushNs !== 0n) warnings.push('StatsEvictionInterval must be a multiple of the StatsFlushInterval');
      else statsEvictionInterval = `${ev / 1_000_000_000n}s`;
    } catch (e) {
      warnings.push(`Failed to parse stats eviction interval ${evictAnno}: ${(e as Error).message}`);
    }
  }

  // downstream connection limit
  let maxConns = 2147483647;
  const fromMeta = pc.proxyMetadata?.ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS;
  const asInt = (s: string | undefined): number | undefined => (s !== undefined && /^[+-]?\d+$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : undefined);
  if (asInt(fromMeta) !== undefined) maxConns = asInt(fromMeta)!;
  else {
    const rt = asInt(pc.runtimeValues?.['overload.global_downstream_max_connections']);
    if (rt !== undefined) maxConns = rt;
  }

  // tracing, metrics and access-log services
  const hostIp = env.hostIp;
  let tracer: TracerParams | undefined;
  let lightstepTokenFile = '';
  const sideFiles: SideFile[] = [];
  const configPath = pc.configPath ?? '';
  const tr = pc.tracing;
  if (tr) {
    let kind: TracerParams['kind'] | undefined;
    let addr = '';
    let isH2 = false;
    if (tr.zipkin) [kind, addr] = ['zipkin', tr.zipkin.address ?? ''];
    else if (tr.lightstep) {
      [kind, addr, isH2] = ['lightstep', tr.lightstep.address ?? '', true];
      lightstepTokenFile = goPathJoin(configPath, LIGHTSTEP_TOKEN_FILE);
      sideFiles.push({ path: lightstepTokenFile, content: tr.lightstep.accessToken ?? '', mode: 0o644 });
    } else if (tr.datadog) [kind, addr] = ['datadog', tr.datadog.address ?? ''];
    else if (tr.stackdriver) throw new BootstrapError('unable to process Stackdriver tracer: missing GCP Project');
    const ts = tlsTransportSocket(tr.tlsSettings, 'tracer', typed, isH2);
    if (kind && addr !== '') tracer = { kind, address: socketAddress(kind, addr, hostIp), ...(ts ? { transportSocket: ts } : {}) };
  }
  const remote = (name: string, svc: ProxyConfig['envoyMetricsService']): RemoteServiceParams | undefined => {
    if (!svc?.address) return undefined;
    const ts = tlsTransportSocket(svc.tlsSettings, name, typed, true);
    const ka = keepaliveOptions(svc.tcpKeepalive);
    return { address: socketAddress(`${name}_address`, svc.address, hostIp), ...(ts ? { transportSocket: ts } : {}), ...(ka ? { upstreamConnectionOptions: ka } : {}) };
  };
  // the deprecated envoyMetricsServiceAddress alone produces no cluster (Istio reads the empty new field)
  const metricsService = remote('envoy_metrics_service', pc.envoyMetricsService);
  const accessLogService = remote('envoy_accesslog_service', pc.envoyAccessLogService);
  const statsd = pc.statsdUdpAddress ? socketAddress('statsd', pc.statsdUdpAddress, hostIp) : undefined;
  const pilotGrpcAddress = pc.discoveryAddress ? socketAddress('pilot_grpc_address', pc.discoveryAddress, hostIp) : undefined;

  let loadStatsConfig: unknown;
  let loadStatsConfigText = '';
  const lsc = node.raw.LOAD_STATS_CONFIG_JSON;
  if (typeof lsc === 'string' && lsc !== '') {
    loadStatsConfigText = lsc;
    try {
      loadStatsConfig = JSON.parse(lsc);
    } catch (e) {
      throw new BootstrapError(`ISTIO_META_LOAD_STATS_CONFIG_JSON is not valid JSON: ${(e as Error).message}`);
    }
  }

  return {
    node,
    nodeId: cfg.nodeId,
    nodeType: cfg.nodeId.split('~')[0]!,
    cluster: serviceCluster(pc, typed),
    locality: node.locality,
    metadata: nodeMetadataJson(node),
    runtimeFlags: runtimeFlags(pc, env.compliancePolicy, env.httpStripFragmentFromPathUnsafeIfDisabled),
    logJson: cfg.logAsJson,
    xdsType,
    metadataDiscovery: md,
    metricsLocalhostAccessOnly: pc.proxyMetadata?.METRICS_LOCALHOST_ACCESS_ONLY === 'true',
    localhost,
    wildcard,
    additionalLocalhost,
    additionalWildcard,
    dualStack,
    dnsLookupFamily,
    envoyStatusPortEnableProxyProtocol: env.envoyStatusPortEnableProxyProtocol,
    proxyConfig: pc,
    proxyAdminPort: pc.proxyAdminPort ?? 0,
    statusPort: pc.statusPort ?? 0,
    configPath,
    workloadIdentitySocketFile: env.workloadIdentitySocketFile,
    customFilePath: runtime.workloadSocketExists ? FILE_CREDENTIAL_SOCKET : '',
    statsFlushInterval,
    statsEvictionInterval,
    extraStatTags,
    inclusionPrefixes,
    inclusionSuffixes,
    inclusionRegexps,
    histogramBuckets,
    envoyStatusPort: env.envoyStatusPort,
    envoyPrometheusPort: env.envoyPrometheusPort,
    globalDownstreamMaxConnections: maxConns,
    ...(tracer ? { tracer } : {}),
    lightstepTokenFile,
    ...(metricsService ? { metricsService } : {}),
    ...(accessLogService ? { accessLogService } : {}),
    statsCompression: pc.statsCompression ?? true,
    ...(statsd ? { statsd } : {}),
    outlierLogPath: cfg.outlierLogPath,
    ...(loadStatsConfig !== undefined ? { loadStatsConfig } : {}),
    loadStatsConfigText,
    pilotSan,
    discoveryHost: (pc.discoveryAddress ?? '').split(':')[0]!,
    discoveryAddress: pc.discoveryAddress ?? '',
    ...(pilotGrpcAddress ? { pilotGrpcAddress } : {}),
    xdsRootCert: env.xdsRootCa,
    stsPort: cfg.stsPort,
    sideFiles,
    warnings,
  };
}
