// Assembles the Envoy bootstrap document from the JSON fragments in <package>/bootstrap/ and the
// computed parameters. The result has the shape of Istio 1.30's envoy_bootstrap.json template output.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BootstrapParams, SocketAddress } from './params.js';

type Obj = Record<string, any>;

/** The directory holding the bootstrap fragments (the package's `bootstrap/`). */
export function fragmentsDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) {
    const up = dirname(d);
    if (up === d) throw new Error('cannot find the package root holding bootstrap/');
    d = up;
  }
  return join(d, 'bootstrap');
}

export interface Fragments {
  readonly skeleton: Obj;
  readonly logFormatJson: Obj;
  readonly extensions: Obj;
  readonly statsTags: Obj;
  readonly clusters: Obj;
  readonly listeners: Obj;
  readonly tracing: Obj;
  readonly statsSinks: Obj;
}

/** Reads the fragments (small files; read on every call so that nothing is cached in the module). */
export function loadFragments(dir = fragmentsDir()): Fragments {
  const read = (name: string): Obj => JSON.parse(readFileSync(join(dir, name), 'utf8')) as Obj;
  return {
    skeleton: read('envoy-bootstrap.json'),
    logFormatJson: read('log-format-json.json'),
    extensions: read('bootstrap-extensions.json'),
    statsTags: read('stats-tags.json'),
    clusters: read('clusters.json'),
    listeners: read('listeners.json'),
    tracing: read('tracing.json'),
    statsSinks: read('stats-sinks.json'),
  };
}

const clone = <T>(v: T): T => structuredClone(v);

function endpointAddress(cluster: Obj): Obj {
  return cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address;
}

function setSocket(cluster: Obj, addr: SocketAddress): void {
  endpointAddress(cluster).socket_address = { address: addr.address, port_value: addr.port_value };
}

/** Inserts `key: value` right after `after` (keeps the template's key order readable). */
function insertAfter(obj: Obj, after: string, key: string, value: unknown): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(obj)) {
    out[k] = v;
    if (k === after) out[key] = value;
  }
  if (!(key in out)) out[key] = value;
  return out;
}

/** Renders the bootstrap document. */
export function renderBootstrap(p: BootstrapParams, fr: Fragments = loadFragments()): Obj {
  const doc = clone(fr.skeleton);

  if (p.logJson) doc.application_log_config.log_format = { json_format: clone(fr.logFormatJson) };

  const locality: Obj = {};
  if (p.locality.region) locality.region = p.locality.region;
  if (p.locality.zone) locality.zone = p.locality.zone;
  if (p.locality.subZone) locality.sub_zone = p.locality.subZone;
  doc.node = { id: p.nodeId, cluster: p.cluster, locality, metadata: p.metadata };

  doc.layered_runtime.layers[0].static_layer = p.runtimeFlags;

  doc.bootstrap_extensions = [...(p.metadataDiscovery ? [clone(fr.extensions.metadata_discovery)] : []), clone(fr.extensions.internal_listener)];

  const tags = fr.statsTags;
  const statsConfig: Obj = {
    use_all_default_tags: false,
    stats_tags: [
      ...clone(tags.head),
      ...p.extraStatTags.map((t) => JSON.parse(JSON.stringify(tags.extra).replaceAll('${TAG}', JSON.stringify(t).slice(1, -1))) as Obj),
      ...clone(tags.tail),
    ],
  };
  if (p.histogramBuckets.length) statsConfig.histogram_bucket_settings = clone(p.histogramBuckets);
  statsConfig.stats_matcher = {
    inclusion_list: {
      patterns: [
        ...clone(tags.matcher_head),
        ...(p.metadataDiscovery ? clone(tags.matcher_metadata_discovery) : []),
        ...p.inclusionPrefixes.map((s) => ({ prefix: s })),
        ...p.inclusionSuffixes.map((s) => ({ suffix: s })),
        ...p.inclusionRegexps.map((s) => ({ safe_regex: { regex: s } })),
        ...clone(tags.matcher_tail),
      ],
    },
  };
  let out: Obj = doc;
  if (p.statsEvictionInterval) out = insertAfter(out, 'bootstrap_extensions', 'stats_eviction_interval', p.statsEvictionInterval);
  if (p.statsFlushInterval) out = insertAfter(out, 'bootstrap_extensions', 'stats_flush_interval', p.statsFlushInterval);
  out.stats_config = statsConfig;

  out.admin.address.socket_address = { address: p.localhost, port_value: p.proxyAdminPort };
  out.dynamic_resources.ads_config.api_type = p.xdsType;

  // static clusters
  const c = fr.clusters;
  const clusters: Obj[] = [];
  const prom = clone(c.prometheus_stats);
  endpointAddress(prom).socket_address = { protocol: 'TCP', address: p.localhost, port_value: p.proxyAdminPort };
  clusters.push(prom);
  const agent = clone(c.agent);
  endpointAddress(agent).socket_address = { protocol: 'TCP', address: p.localhost, port_value: p.statusPort };
  clusters.push(agent);
  const sds = clone(c['sds-grpc']);
  endpointAddress(sds).pipe.path = `./var/run/secrets/workload-spiffe-uds/${p.workloadIdentitySocketFile}`;
  clusters.push(sds);
  if (p.customFilePath) {
    const files = clone(c['sds-files-grpc']);
    endpointAddress(files).pipe.path = p.customFilePath;
    clusters.push(files);
  }
  const xds = clone(c['xds-grpc']);
  endpointAddress(xds).pipe.path = `${p.configPath}/XDS`;
  clusters.push(xds);
  if (p.tracer) {
    let tc: Obj = clone(c[p.tracer.kind]);
    tc.dns_lookup_family = p.dnsLookupFamily;
    setSocket(tc, p.tracer.address);
    if (p.tracer.transportSocket) tc = insertAfter(tc, 'alt_stat_name', 'transport_socket', clone(p.tracer.transportSocket));
    clusters.push(tc);
  }
  for (const [name, svc] of [['envoy_metrics_service', p.metricsService], ['envoy_accesslog_service', p.accessLogService]] as const) {
    if (!svc) continue;
    let sc: Obj = clone(c[name]);
    sc.dns_lookup_family = p.dnsLookupFamily;
    setSocket(sc, svc.address);
    if (svc.upstreamConnectionOptions) sc = insertAfter(sc, 'type', 'upstream_connection_options', clone(svc.upstreamConnectionOptions));
    if (svc.transportSocket) sc = insertAfter(sc, 'type', 'transport_socket', clone(svc.transportSocket));
    clusters.push(sc);
  }
  out.static_resources.clusters = clusters;

  // listeners
  const l = fr.listeners;
  const promAddr = p.metricsLocalhostAccessOnly ? p.localhost : p.wildcard;
  let promL: Obj = clone(l.prometheus);
  promL.name = `${promAddr}_${p.envoyPrometheusPort}`;
  promL.address.socket_address = { protocol: 'TCP', address: promAddr, port_value: p.envoyPrometheusPort };
  if (p.dualStack) {
    const extra = clone(l.additional_address);
    extra.address.socket_address = { protocol: 'TCP', address: p.metricsLocalhostAccessOnly ? p.additionalLocalhost : p.additionalWildcard, port_value: p.envoyPrometheusPort };
    promL = insertAfter(promL, 'bypass_overload_manager', 'additionalAddresses', [extra]);
  }
  if (p.statsCompression) {
    const hcm = promL.filter_chains[0].filters[0].typed_config;
    hcm.http_filters = [...clone(l.stats_compressors), ...hcm.http_filters];
  }
  let statusL: Obj = clone(l.status);
  statusL.name = `${p.wildcard}_${p.envoyStatusPort}`;
  statusL.address.socket_address = { protocol: 'TCP', address: p.wildcard, port_value: p.envoyStatusPort };
  if (p.dualStack) {
    const extra = clone(l.additional_address);
    extra.address.socket_address = { protocol: 'TCP', address: p.additionalWildcard, port_value: p.envoyStatusPort };
    statusL = insertAfter(statusL, 'bypass_overload_manager', 'additionalAddresses', [extra]);
  }
  if (p.envoyStatusPortEnableProxyProtocol) {
    statusL = insertAfter(statusL, p.dualStack ? 'additionalAddresses' : 'bypass_overload_manager', 'listener_filters', [clone(l.proxy_protocol_filter)]);
  }
  out.static_resources.listeners = [promL, statusL];

  out.overload_manager.resource_monitors[0].typed_config.max_active_downstream_connections = p.globalDownstreamMaxConnections;

  // optional top-level sections, in the template's order (before deferred_stat_options)
  const deferred = out.deferred_stat_options;
  delete out.deferred_stat_options;
  if (p.tracer) {
    const t = clone(fr.tracing[p.tracer.kind]);
    if (p.tracer.kind === 'lightstep') t.http.typed_config.access_token_file = p.lightstepTokenFile;
    if (p.tracer.kind === 'datadog') t.http.typed_config.service_name = p.cluster;
    out.tracing = t;
  }
  if (p.metricsService || p.statsd) {
    const sinks: Obj[] = [];
    if (p.metricsService) sinks.push(clone(fr.statsSinks.metrics_service));
    if (p.statsd) {
      const s = clone(fr.statsSinks.statsd);
      s.typed_config.address.socket_address = { address: p.statsd.address, port_value: p.statsd.port_value };
      sinks.push(s);
    }
    out.stats_sinks = sinks;
  }
  if (p.outlierLogPath || p.loadStatsConfigText) {
    const cm: Obj = { enable_deferred_cluster_creation: true };
    if (p.outlierLogPath) cm.outlier_detection = { event_log_path: p.outlierLogPath };
    if (p.loadStatsConfigText) cm.load_stats_config = p.loadStatsConfig;
    out.cluster_manager = cm;
  }
  out.deferred_stat_options = deferred;
  return out;
}
