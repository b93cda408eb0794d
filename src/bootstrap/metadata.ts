// Envoy node metadata, as pilot-agent builds it (Istio pkg/bootstrap GetNodeMetaData):
//  1. ISTIO_META_* keys of ProxyConfig.proxyMetadata (prefix stripped), then ISTIO_META_* environment
//     variables (strings), then every ISTIO_METAJSON_* variable's JSON object merged at the top level;
//  2. that map is decoded into the typed record (NodeMetadata + BootstrapNodeMetadata): field names
//     match case-insensitively, type errors are fatal;
//  3. fixed inputs overwrite typed fields (version, IPs, ports, ProxyConfig, ...), the labels and
//     annotations files are merged in, the locality label is sanitised;
//  4. output = typed fields (empty ones omitted) plus every untyped key that is not already present,
//     all keys sorted (Go map order).
import type { ProxyConfig } from '../config/proxy-config.js';
import { proxyConfigToJson, sortKeysDeep } from '../config/proxy-config.js';
import { goParseBool } from '../config/gocompat.js';
import { clip, MAX_NESTING_DEPTH, nestingExceeds, setOwn, valueSizeProblem } from '../config/limits.js';

type Kind = 'string' | 'map' | 'stringList' | 'podPorts' | 'stringBool' | 'optStringBool' | 'int' | 'strings' | 'proxyConfig';

/** The typed metadata fields: JSON name -> Go field name and kind (Istio 1.30 pkg/model/proxy.go). */
export const TYPED_FIELDS: Readonly<Record<string, { readonly go: string; readonly kind: Kind }>> = {
  PROXY_CONFIG: { go: 'ProxyConfig', kind: 'proxyConfig' },
  ISTIO_VERSION: { go: 'IstioVersion', kind: 'string' },
  ISTIO_REVISION: { go: 'IstioRevision', kind: 'string' },
  LABELS: { go: 'Labels', kind: 'map' },
  STATIC_LABELS: { go: 'StaticLabels', kind: 'map' },
  ANNOTATIONS: { go: 'Annotations', kind: 'map' },
  INSTANCE_IPS: { go: 'InstanceIPs', kind: 'stringList' },
  NAMESPACE: { go: 'Namespace', kind: 'string' },
  NODE_NAME: { go: 'NodeName', kind: 'string' },
  WORKLOAD_NAME: { go: 'WorkloadName', kind: 'string' },
  INTERCEPTION_MODE: { go: 'InterceptionMode', kind: 'string' },
  SERVICE_ACCOUNT: { go: 'ServiceAccount', kind: 'string' },
  HTTP_PROXY_PORT: { go: 'HTTPProxyPort', kind: 'string' },
  MESH_ID: { go: 'MeshID', kind: 'string' },
  CLUSTER_ID: { go: 'ClusterID', kind: 'string' },
  NETWORK: { go: 'Network', kind: 'string' },
  REQUESTED_NETWORK_VIEW: { go: 'RequestedNetworkView', kind: 'stringList' },
  POD_PORTS: { go: 'PodPorts', kind: 'podPorts' },
  TLS_SERVER_CERT_CHAIN: { go: 'TLSServerCertChain', kind: 'string' },
  TLS_SERVER_KEY: { go: 'TLSServerKey', kind: 'string' },
  TLS_SERVER_ROOT_CERT: { go: 'TLSServerRootCert', kind: 'string' },
  TLS_CLIENT_CERT_CHAIN: { go: 'TLSClientCertChain', kind: 'string' },
  TLS_CLIENT_KEY: { go: 'TLSClientKey', kind: 'string' },
  TLS_CLIENT_ROOT_CERT: { go: 'TLSClientRootCert', kind: 'string' },
  BASE: { go: 'CertBaseDir', kind: 'string' },
  IDLE_TIMEOUT: { go: 'IdleTimeout', kind: 'string' },
  HTTP10: { go: 'HTTP10', kind: 'string' },
  GENERATOR: { go: 'Generator', kind: 'string' },
  DNS_CAPTURE: { go: 'DNSCapture', kind: 'stringBool' },
  DNS_AUTO_ALLOCATE: { go: 'DNSAutoAllocate', kind: 'stringBool' },
  ENABLE_HBONE: { go: 'EnableHBONE', kind: 'stringBool' },
  DISABLE_HBONE_SEND: { go: 'DisableHBONESend', kind: 'stringBool' },
  AUTO_REGISTER_GROUP: { go: 'AutoRegisterGroup', kind: 'string' },
  WORKLOAD_ENTRY: { go: 'WorkloadEntry', kind: 'string' },
  UNPRIVILEGED_POD: { go: 'UnprivilegedPod', kind: 'string' },
  PLATFORM_METADATA: { go: 'PlatformMetadata', kind: 'map' },
  STS_PORT: { go: 'StsPort', kind: 'string' },
  ENVOY_STATUS_PORT: { go: 'EnvoyStatusPort', kind: 'int' },
  ENVOY_PROMETHEUS_PORT: { go: 'EnvoyPrometheusPort', kind: 'int' },
  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: { go: 'ExitOnZeroActiveConnections', kind: 'stringBool' },
  INBOUND_LISTENER_EXACT_BALANCE: { go: 'InboundListenerExactBalance', kind: 'stringBool' },
  OUTBOUND_LISTENER_EXACT_BALANCE: { go: 'OutboundListenerExactBalance', kind: 'stringBool' },
  CLOUDRUN_ADDR: { go: 'CloudrunAddr', kind: 'string' },
  METADATA_DISCOVERY: { go: 'MetadataDiscovery', kind: 'optStringBool' },
  ENVOY_SKIP_DEPRECATED_LOGS: { go: 'EnvoySkipDeprecatedLogs', kind: 'stringBool' },
  WORKLOAD_IDENTITY_SOCKET_FILE: { go: 'WorkloadIdentitySocketFile', kind: 'string' },
  NAME: { go: 'InstanceName', kind: 'string' },
  OWNER: { go: 'Owner', kind: 'string' },
  PILOT_SAN: { go: 'PilotSubjectAltName', kind: 'strings' },
  OUTLIER_LOG_PATH: { go: 'OutlierLogPath', kind: 'string' },
  APP_CONTAINERS: { go: 'AppContainers', kind: 'string' },
  ISTIO_PROXY_SHA: { go: 'IstioProxySHA', kind: 'string' },
};

export interface PodPort {
  name?: string;
  containerPort: number;
  protocol: string;
}

/** Typed metadata values, keyed by JSON name (absent = Go zero value). LABELS and STATIC_LABELS may alias. */
export type TypedMetadata = Record<string, unknown>;

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
}

export interface NodeMetadataInput {
  readonly nodeId: string;
  /** The process environment (ISTIO_META_*, ISTIO_METAJSON_*, POD_NAME, POD_NAMESPACE, SERVICE_ACCOUNT). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly proxyConfig: ProxyConfig;
  readonly instanceIps: readonly string[];
  readonly stsPort: number;
  readonly pilotSubjectAltNames: readonly string[];
  readonly credentialSocketExists: boolean;
  readonly customCredentialsFileExists: boolean;
  readonly xdsRootCert: string;
  readonly outlierLogPath: string;
  readonly envoyStatusPort: number;
  readonly envoyPrometheusPort: number;
  readonly exitOnZeroActiveConnections: boolean;
  readonly metadataDiscovery: boolean | undefined;
  readonly envoySkipDeprecatedLogs: boolean;
  readonly workloadIdentitySocketFile: string;
  /** Contents of the labels / annotations files; undefined when the file does not exist. */
  readonly podLabels: Readonly<Record<string, string>> | undefined;
  readonly podAnnotations: Readonly<Record<string, string>> | undefined;
  /** Version reported when ISTIO_META_ISTIO_VERSION is not given. */
  readonly istioVersion: string;
}

export interface NodeInfo {
  readonly id: string;
  readonly typed: TypedMetadata;
  /** The untyped map (before typed decoding), plus `credential` / `file-credential`. */
  readonly raw: Record<string, unknown>;
  readonly locality: Locality;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const jsType = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? 'number' : typeof v);

/** A problem with the metadata inputs, reported as `<source><path>: <message>`. */
export interface MetadataProblem {
  /** `env ISTIO_METAJSON_X`, or `node metadata KEY (from <origin>)` for a typed field. */
  readonly source: string;
  /** The metadata key of a typed field ('' for a problem with an ISTIO_METAJSON_* value as a whole). */
  readonly key: string;
  /** Where inside the value (`.key`, `[0].containerPort`), or ''. */
  readonly path: string;
  readonly message: string;
  /** The input the value came from: `env NAME` or `ProxyConfig proxyMetadata NAME`. */
  readonly origin: string;
}

type AddProblem = (path: string, message: string) => void;

function decodeTyped(kind: Kind, v: unknown, add: AddProblem): unknown {
  const bad = (want: string): undefined => {
    add('', `cannot unmarshal ${jsType(v)} into ${want}`);
    return undefined;
  };
  switch (kind) {
    case 'string':
      return typeof v === 'string' ? v : bad('a string');
    case 'map': {
      if (!isObj(v)) return bad('a map of strings');
      const out: Record<string, string> = {};
      for (const [k, x] of Object.entries(v)) {
        if (typeof x !== 'string') add(`.${k}`, `cannot unmarshal ${jsType(x)} into a string`);
        else setOwn(out, k, x);
      }
      return out;
    }
    case 'stringList':
      if (typeof v !== 'string') return bad('a comma-separated string');
      return v === '' ? [] : v.split(',');
    case 'strings':
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' && x !== null)) return bad('a list of strings');
      return v.map((x) => (x === null ? '' : x));
    case 'int':
      return typeof v === 'number' && Number.isInteger(v) ? v : bad('an integer');
    case 'stringBool':
    case 'optStringBool': {
      if (typeof v !== 'string') return bad('a quoted boolean ("true"/"false")');
      const b = goParseBool(v);
      if (b === undefined) add('', `invalid boolean ${JSON.stringify(clip(v))}`);
      return b;
    }
    case 'podPorts': {
      if (typeof v !== 'string') return bad('a JSON string holding a list of ports');
      let list: unknown;
      try {
        list = JSON.parse(v);
      } catch (e) {
        add('', `invalid JSON: ${(e as Error).message}`);
        return undefined;
      }
      if (list === null) return [];
      if (!Array.isArray(list)) return bad('a JSON list of ports');
      const ports: PodPort[] = [];
      list.forEach((p: unknown, i) => {
        if (p === null) {
          ports.push({ containerPort: 0, protocol: '' });
          return;
        }
        if (!isObj(p)) {
          add(`[${i}]`, 'want an object');
          return;
        }
        const port: PodPort = { containerPort: 0, protocol: '' };
        for (const [k, x] of Object.entries(p)) {
          const key = k.toLowerCase();
          if (key === 'name' && x !== null) {
            if (typeof x === 'string') port.name = x;
            else add(`[${i}].name`, 'want a string');
          } else if (key === 'containerport' && x !== null) {
            if (typeof x === 'number' && Number.isInteger(x)) port.containerPort = x;
            else add(`[${i}].containerPort`, 'want an integer');
          } else if (key === 'protocol' && x !== null) {
            if (typeof x === 'string') port.protocol = x;
            else add(`[${i}].protocol`, 'want a string');
          }
        }
        ports.push(port);
      });
      return ports;
    }
    case 'proxyConfig':
      return isObj(v) ? v : bad('a ProxyConfig object');
  }
}

/** Finds the typed field a raw key decodes into (exact match first, then case-insensitive, as Go does). */
function typedFieldFor(key: string): string | undefined {
  if (Object.hasOwn(TYPED_FIELDS, key)) return key;
  const upper = key.toUpperCase();
  return Object.keys(TYPED_FIELDS).find((k) => k.toUpperCase() === upper);
}

function sanitizeLocality(label: string): string {
  if (label === '') return '';
  return label.includes('/') ? label : label.replaceAll('.', '/');
}

/** Steps 1-2: the untyped map from proxyMetadata and the environment, and its typed decoding. */
function rawAndTyped(env: Readonly<Record<string, string | undefined>>, pc: ProxyConfig, errs: MetadataProblem[]): { raw: Obj; typed: TypedMetadata } {
  const raw: Obj = {};
  const origin = new Map<string, string>();
  for (const [k, v] of Object.entries(pc.proxyMetadata ?? {})) {
    if (!k.startsWith('ISTIO_META_')) continue;
    setOwn(raw, k.slice('ISTIO_META_'.length), v);
    origin.set(k.slice('ISTIO_META_'.length), `ProxyConfig proxyMetadata ${k}`);
  }
  const envEntries = Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined);
  for (const [k, v] of envEntries) {
    if (!k.startsWith('ISTIO_META_')) continue;
    setOwn(raw, k.slice('ISTIO_META_'.length), v);
    origin.set(k.slice('ISTIO_META_'.length), `env ${k}`);
  }
  for (const [k, v] of envEntries) {
    if (!k.startsWith('ISTIO_METAJSON_')) continue;
    const envProblem = (message: string): void => void errs.push({ source: `env ${k}`, key: '', path: '', message, origin: `env ${k}` });
    const tooBig = valueSizeProblem(v);
    if (tooBig) {
      envProblem(tooBig);
      continue;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch (e) {
      envProblem(`invalid JSON: ${(e as Error).message}`);
      continue;
    }
    if (parsed === null) continue;
    if (!isObj(parsed)) {
      envProblem(`want a JSON object, got ${jsType(parsed)}`);
      continue;
    }
    // the value ends up in the bootstrap, which is built (and written) recursively
    if (nestingExceeds(parsed, MAX_NESTING_DEPTH)) {
      envProblem(`JSON nested deeper than ${MAX_NESTING_DEPTH} levels`);
      continue;
    }
    for (const [key, x] of Object.entries(parsed)) {
      setOwn(raw, key, x);
      origin.set(key, `env ${k}`);
    }
  }
  // typed decoding (keys in Go's marshalled order: sorted; a later key for the same field wins)
  const typed: TypedMetadata = {};
  for (const key of Object.keys(raw).sort()) {
    const field = typedFieldFor(key);
    if (!field) continue;
    const v = raw[key];
    if (v === null) continue;
    const from = origin.get(key) ?? 'metadata';
    const source = `node metadata ${key} (from ${from})`;
    const decoded = decodeTyped(TYPED_FIELDS[field]!.kind, v, (path, message) => errs.push({ source, key, path, message, origin: from }));
    if (decoded !== undefined) typed[field] = decoded;
  }
  return { raw, typed };
}

const problemText = (p: MetadataProblem): string => `${p.source}${p.path}: ${p.message}`;

/**
 * Problems pilot-agent would hit when it builds the node metadata (malformed ISTIO_METAJSON_*,
 * ISTIO_META_* values of the wrong type), so that start-up can report them with everything else.
 */
export function nodeMetadataIssues(env: Readonly<Record<string, string | undefined>>, pc: ProxyConfig): MetadataProblem[] {
  const errs: MetadataProblem[] = [];
  rawAndTyped(env, pc, errs);
  return errs;
}

/** nodeMetadataIssues as `<source><path>: <message>` lines. */
export function nodeMetadataProblems(env: Readonly<Record<string, string | undefined>>, pc: ProxyConfig): string[] {
  return nodeMetadataIssues(env, pc).map(problemText);
}

/** Builds the node (id, typed + raw metadata, locality). Throws an Error listing every typed-decoding problem. */
export function buildNodeMetadata(input: NodeMetadataInput): NodeInfo {
  const errs: MetadataProblem[] = [];
  const { raw, typed } = rawAndTyped(input.env, input.proxyConfig, errs);
  if (errs.length) throw new Error(`failed to generate bootstrap metadata: ${errs.map(problemText).join('; ')}`);
  const envEntries = Object.entries(input.env).filter((e): e is [string, string] => e[1] !== undefined);

  if (!typed.ISTIO_VERSION) typed.ISTIO_VERSION = input.istioVersion;
  typed.INSTANCE_IPS = [...new Set(input.instanceIps)];
  if (input.stsPort !== 0) typed.STS_PORT = String(input.stsPort);
  else delete typed.STS_PORT;
  typed.ENVOY_STATUS_PORT = input.envoyStatusPort;
  typed.ENVOY_PROMETHEUS_PORT = input.envoyPrometheusPort;
  typed.EXIT_ON_ZERO_ACTIVE_CONNECTIONS = input.exitOnZeroActiveConnections;
  if (input.metadataDiscovery === undefined) delete typed.METADATA_DISCOVERY;
  else typed.METADATA_DISCOVERY = input.metadataDiscovery;
  typed.ENVOY_SKIP_DEPRECATED_LOGS = input.envoySkipDeprecatedLogs;
  typed.WORKLOAD_IDENTITY_SOCKET_FILE = input.workloadIdentitySocketFile;
  typed.PROXY_CONFIG = input.proxyConfig;

  for (const [k, v] of envEntries) {
    switch (k) {
      case 'ISTIO_METAJSON_LABELS': {
        let m: unknown;
        try {
          m = JSON.parse(v);
        } catch {
          m = undefined;
        }
        if (isObj(m)) {
          const labels: Record<string, string> = {};
          for (const [lk, lv] of Object.entries(m)) if (typeof lv === 'string') setOwn(labels, lk, lv);
          if (Object.keys(labels).length) {
            typed.LABELS = labels;
            typed.STATIC_LABELS = labels; // the same map, as in Istio
          }
        }
        break;
      }
      case 'POD_NAME':
        typed.NAME = v;
        break;
      case 'POD_NAMESPACE':
        typed.NAMESPACE = v;
        break;
      case 'SERVICE_ACCOUNT':
        typed.SERVICE_ACCOUNT = v;
        break;
    }
  }
  // the "Unknown" platform is Kubernetes-like: no instance labels, empty platform metadata

  if (input.podLabels) {
    const labels: Record<string, string> = { ...((typed.STATIC_LABELS as Record<string, string> | undefined) ?? {}) };
    for (const [k, v] of Object.entries(input.podLabels)) if (k !== 'pod-template-hash') setOwn(labels, k, v);
    typed.LABELS = labels;
  }
  if (input.podAnnotations) {
    typed.ANNOTATIONS = { ...((typed.ANNOTATIONS as Record<string, string> | undefined) ?? {}), ...input.podAnnotations };
  }

  const labels = typed.LABELS as Record<string, string> | undefined;
  const localityLabel = labels?.['topology.istio.io/locality'] ?? labels?.['istio-locality'] ?? '';
  let locality: Locality = { region: '', zone: '', subZone: '' };
  const sanitized = sanitizeLocality(localityLabel);
  if (sanitized !== '' && labels) {
    labels['istio-locality'] = sanitized;
    const parts = sanitized.split('/');
    locality = { region: parts[0] ?? '', zone: parts[1] ?? '', subZone: parts[2] ?? '' };
  }

  typed.PILOT_SAN = [...input.pilotSubjectAltNames];
  typed.XDSRootCert = input.xdsRootCert;
  typed.OUTLIER_LOG_PATH = input.outlierLogPath;
  if (input.credentialSocketExists) raw.credential = 'true';
  if (input.customCredentialsFileExists) raw['file-credential'] = 'true';
  if (input.metadataDiscovery === undefined) typed.METADATA_DISCOVERY = typed.ENABLE_HBONE === true;

  return { id: input.nodeId, typed, raw, locality };
}

/** The typed fields as Go's encoding/json writes them (omitempty applied), keys sorted. */
export function typedMetadataJson(typed: TypedMetadata): Record<string, unknown> {
  const out: Obj = {};
  for (const [name, def] of Object.entries(TYPED_FIELDS)) {
    const v = typed[name];
    if (v === undefined) continue;
    switch (def.kind) {
      case 'string':
        if (v !== '') out[name] = v;
        break;
      case 'map':
      case 'proxyConfig':
        if (def.kind === 'proxyConfig') out[name] = proxyConfigToJson(v as ProxyConfig);
        else if (Object.keys(v as Obj).length) out[name] = { ...(v as Obj) };
        break;
      case 'stringList':
        if ((v as string[]).length) out[name] = (v as string[]).join(',');
        break;
      case 'strings':
        if ((v as string[]).length) out[name] = [...(v as string[])];
        break;
      case 'podPorts':
        if ((v as PodPort[]).length) {
          out[name] = JSON.stringify((v as PodPort[]).map((p) => ({ ...(p.name ? { name: p.name } : {}), containerPort: p.containerPort, protocol: p.protocol })));
        }
        break;
      case 'int':
        if (v !== 0) out[name] = v;
        break;
      case 'stringBool':
        if (v === true) out[name] = 'true';
        break;
      case 'optStringBool':
        out[name] = v ? 'true' : 'false';
        break;
    }
  }
  return sortKeysDeep(out);
}

/** The `node.metadata` object of the bootstrap: typed fields plus untyped keys not already present. */
export function nodeMetadataJson(node: NodeInfo): Record<string, unknown> {
  const out = typedMetadataJson(node.typed);
  for (const [k, v] of Object.entries(node.raw)) if (!Object.hasOwn(out, k)) setOwn(out, k, v);
  return sortKeysDeep(out);
}
