// The data a Go bootstrap template sees: the parameter map of Istio's bootstrap options
// (pkg/bootstrap/option), with the same names and the same pre-rendered JSON strings, and the Go
// structs `.config` (ProxyConfig) and `.metadata` (BootstrapNodeMetadata) by Go field name.
import { MESSAGES, type FieldDef } from '../config/proxy-config.js';
import { durationNs, proxyConfigToJson } from '../config/proxy-config.js';
import { GoEnum, GoStruct } from './gotemplate.js';
import { TYPED_FIELDS, typedMetadataJson } from './metadata.js';
import { goJson } from './override.js';
import type { BootstrapParams, SocketAddress } from './params.js';

const pascal = (proto: string): string => proto.split('_').map((w) => (w ? w[0]!.toUpperCase() + w.slice(1) : '')).join('');

function zeroFor(fd: FieldDef): unknown {
  if (fd.list) return [];
  if (fd.map) return {};
  switch (fd.type.k) {
    case 'string': return '';
    case 'bool': return false;
    case 'enum': return enumValue(fd.type.e.values, 0);
    case 'msg':
    case 'dur':
    case 'wrap':
      return null;
    default:
      return 0;
  }
}

function enumValue(values: Readonly<Record<string, number>>, v: unknown): GoEnum | number {
  if (typeof v === 'string' && values[v] !== undefined) return new GoEnum(v, values[v]);
  const name = Object.keys(values).find((k) => values[k] === v);
  return name !== undefined ? new GoEnum(name, v as number) : (v as number);
}

/** prototext of a scalar (Go's String() of a message, without protobuf-go's random extra space). */
function textScalar(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof GoEnum) return v.name;
  return String(v);
}

function durationStruct(canonical: string): GoStruct {
  const ns = durationNs(canonical);
  const seconds = Number(ns / 1_000_000_000n);
  const nanos = Number(ns % 1_000_000_000n);
  const text = [seconds ? `seconds:${seconds}` : '', nanos ? `nanos:${nanos}` : ''].filter(Boolean).join(' ');
  return new GoStruct({ Seconds: seconds, Nanos: nanos }, () => ({ seconds, ...(nanos ? { nanos } : {}) }), () => text);
}

function wrapperStruct(v: unknown, json: unknown): GoStruct {
  const zero = v === 0 || v === false || v === '';
  return new GoStruct({ Value: v }, () => (zero ? {} : { value: json }), () => (zero ? '' : `value:${textScalar(v)}`));
}

function messageText(msg: string, value: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const fd of MESSAGES[msg] ?? []) {
    const v = value[fd.json];
    if (v === undefined) continue;
    const one = (x: unknown): string => {
      switch (fd.type.k) {
        case 'msg': return `{${messageText(fd.type.m, x as Record<string, unknown>)}}`;
        case 'dur': return `{${durationStruct(x as string).text!()}}`;
        case 'wrap': return `{${wrapperStruct(x, x).text!()}}`;
        case 'enum': return typeof x === 'string' ? x : String(x);
        default: return textScalar(x);
      }
    };
    if (fd.list) for (const x of v as unknown[]) parts.push(`${fd.proto}:${one(x)}`);
    else if (fd.map) for (const [k, x] of Object.entries(v as Record<string, unknown>)) parts.push(`${fd.proto}:{key:${JSON.stringify(k)} value:${one(x)}}`);
    else parts.push(`${fd.proto}:${one(v)}`);
  }
  return parts.join(' ');
}

/** A protobuf message (canonical JSON) as a Go struct with Go field names (zero values filled in). */
export function protoStruct(msg: string, value: Record<string, unknown>): GoStruct {
  const fields: Record<string, unknown> = {};
  for (const fd of MESSAGES[msg] ?? []) {
    const v = value[fd.json];
    const t = fd.type;
    let goValue: unknown;
    if (v === undefined) goValue = zeroFor(fd);
    else if (t.k === 'msg' && fd.list) goValue = (v as Record<string, unknown>[]).map((x) => protoStruct(t.m, x));
    else if (t.k === 'msg' && fd.map) goValue = Object.fromEntries(Object.entries(v as Record<string, Record<string, unknown>>).map(([k, x]) => [k, protoStruct(t.m, x)]));
    else if (t.k === 'msg') goValue = protoStruct(t.m, v as Record<string, unknown>);
    else if (t.k === 'dur') goValue = durationStruct(v as string);
    else if (t.k === 'wrap') goValue = wrapperStruct(t.s === 'int64' ? Number(v) : v, v);
    else if (t.k === 'enum') goValue = fd.list ? (v as unknown[]).map((x) => enumValue(t.e.values, x)) : enumValue(t.e.values, v);
    else if (t.k === 'int64') goValue = Number(v);
    else goValue = v;
    fields[pascal(fd.proto)] = goValue;
  }
  return new GoStruct(fields, () => value, () => messageText(msg, value));
}

function metadataStruct(p: BootstrapParams): GoStruct {
  const typed = p.node.typed;
  const fields: Record<string, unknown> = {};
  for (const [json, def] of Object.entries(TYPED_FIELDS)) {
    const v = typed[json];
    switch (def.kind) {
      case 'proxyConfig':
        fields[def.go] = v === undefined ? null : protoStruct('ProxyConfig', v as Record<string, unknown>);
        break;
      case 'map':
        fields[def.go] = v ?? {};
        break;
      case 'stringList':
      case 'strings':
      case 'podPorts':
        fields[def.go] = v ?? [];
        break;
      case 'int':
        fields[def.go] = v ?? 0;
        break;
      case 'stringBool':
        fields[def.go] = v ?? false;
        break;
      case 'optStringBool':
        fields[def.go] = v ?? null;
        break;
      default:
        fields[def.go] = v ?? '';
    }
  }
  fields.XDSRootCert = typed.XDSRootCert ?? '';
  fields.Raw = p.node.raw;
  return new GoStruct(fields, () => typedMetadataJson(typed));
}

const addr = (a: SocketAddress): string => `{"address": "${a.address}", "port_value": ${a.port_value}}`;

/** The template parameters, by Istio's option names. */
export function goTemplateData(p: BootstrapParams): Record<string, unknown> {
  const d: Record<string, unknown> = {
    nodeID: p.nodeId,
    nodeType: p.nodeType,
    pilot_SAN: `[${p.pilotSan.map((s) => `{"exact":"${s}"}`).join(',')}]`,
    log_json: p.logJson,
    discovery_host: p.discoveryHost,
    metadata: metadataStruct(p),
    xds_type: p.xdsType,
    metadata_discovery: p.metadataDiscovery,
    metrics_localhost_access_only: p.metricsLocalhostAccessOnly,
    workload_identity_socket_file: p.workloadIdentitySocketFile,
    histogram_buckets: p.histogramBuckets.length
      ? p.histogramBuckets.map((b) => new GoStruct({ Match: new GoStruct({ Prefix: b.match.prefix }, () => b.match), Buckets: b.buckets }, () => b))
      : null,
    meta_json_str: goJson(p.metadata),
    runtime_flags: goJson(p.runtimeFlags),
    envoy_status_port: p.envoyStatusPort,
    envoy_prometheus_port: p.envoyPrometheusPort,
    global_downstream_max_connections: p.globalDownstreamMaxConnections,
    localhost: p.localhost,
    wildcard: p.wildcard,
    dns_lookup_family: p.dnsLookupFamily,
    config: protoStruct('ProxyConfig', proxyConfigToJson(p.proxyConfig)),
    cluster: p.cluster,
    discovery_address: p.discoveryAddress,
    xds_root_cert: p.xdsRootCert,
    envoy_metrics_stats_compression: p.statsCompression,
  };
  if (p.outlierLogPath) d.outlier_log_path = p.outlierLogPath;
  if (p.customFilePath) d.custom_file_path = p.customFilePath;
  if (p.stsPort > 0) {
    d.sts = true;
    d.sts_port = p.stsPort;
  }
  if (p.locality.region) d.region = p.locality.region;
  if (p.locality.zone) d.zone = p.locality.zone;
  if (p.locality.subZone) d.sub_zone = p.locality.subZone;
  if (p.inclusionPrefixes.length) d.inclusionPrefix = p.inclusionPrefixes;
  if (p.inclusionSuffixes.length) d.inclusionSuffix = p.inclusionSuffixes;
  if (p.inclusionRegexps.length) d.inclusionRegexps = p.inclusionRegexps;
  if (p.extraStatTags.length) d.extraStatTags = p.extraStatTags;
  if (p.statsFlushInterval) d.stats_flush_interval = p.statsFlushInterval;
  if (p.statsEvictionInterval) d.stats_eviction_interval = p.statsEvictionInterval;
  if (p.dualStack) {
    d.additional_localhost = p.additionalLocalhost;
    d.additional_wildcard = p.additionalWildcard;
    d.dual_stack = true;
  }
  if (p.envoyStatusPortEnableProxyProtocol) d.envoy_status_port_enable_proxy_protocol = true;
  if (p.pilotGrpcAddress) d.pilot_grpc_address = addr(p.pilotGrpcAddress);
  if (p.statsd) d.statsd = addr(p.statsd);
  if (p.tracer) {
    d[p.tracer.kind] = addr(p.tracer.address);
    if (p.tracer.kind === 'lightstep') d.lightstepToken = p.lightstepTokenFile;
  }
  if (p.proxyConfig.tracing?.tlsSettings) d.tracing_tls = p.tracer?.transportSocket ? goJson(p.tracer.transportSocket) : '';
  for (const [name, svc] of [['envoy_metrics_service', p.metricsService], ['envoy_accesslog_service', p.accessLogService]] as const) {
    if (!svc) continue;
    d[`${name}_address`] = addr(svc.address);
    const cfgSvc = name === 'envoy_metrics_service' ? p.proxyConfig.envoyMetricsService : p.proxyConfig.envoyAccessLogService;
    if (cfgSvc?.tlsSettings) d[`${name}_tls`] = svc.transportSocket ? goJson(svc.transportSocket) : '';
    if (svc.upstreamConnectionOptions) d[`${name}_tcp_keepalive`] = goJson(svc.upstreamConnectionOptions);
  }
  if (typeof p.node.raw.LOAD_STATS_CONFIG_JSON === 'string') d.load_stats_config_json_str = p.node.raw.LOAD_STATS_CONFIG_JSON;
  return d;
}
