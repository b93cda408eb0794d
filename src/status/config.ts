// Start-up validation of the status server's environment inputs, as pilot-agent does it:
// ISTIO_KUBE_APP_PROBERS (probes the injector rewrote to :15020/app-health/...) and ISTIO_PROMETHEUS_ANNOTATIONS
// (the app's original prometheus.io/* annotations, for metrics merging). Problems are collected into an IssueList
// so the composition root can report them with every other configuration problem.
import { ConfigError, IssueList } from '../lib/errors.js';

export const KUBE_APP_PROBERS_ENV = 'ISTIO_KUBE_APP_PROBERS';
export const PROMETHEUS_ANNOTATIONS_ENV = 'ISTIO_PROMETHEUS_ANNOTATIONS';

export const APP_PROBER_PATH = /^\/(app-health|app-lifecycle)\/[^/]+\/(livez|readyz|startupz|prestopz|poststartz)$/;

export interface HttpGetAction {
  readonly path: string;
  readonly port: number;
  readonly scheme: 'HTTP' | 'HTTPS';
}
export interface TcpSocketAction {
  readonly port: number;
}
export interface GrpcAction {
  readonly port: number;
  readonly service: string;
}

/** One app prober; `timeoutSeconds` 0 means "not given" (Kubernetes' default of 1s is used). */
export type AppProber =
  | { readonly kind: 'httpGet'; readonly httpGet: HttpGetAction; readonly timeoutSeconds: number }
  | { readonly kind: 'tcpSocket'; readonly tcpSocket: TcpSocketAction; readonly timeoutSeconds: number }
  | { readonly kind: 'grpc'; readonly grpc: GrpcAction; readonly timeoutSeconds: number };

export type KubeAppProbers = ReadonlyMap<string, AppProber>;

export interface PrometheusScrapeConfig {
  readonly path: string;
  readonly port: string;
}

const SOURCE_PROBERS = `env ${KUBE_APP_PROBERS_ENV}`;
const SOURCE_PROM = `env ${PROMETHEUS_ANNOTATIONS_ENV}`;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Go's int32 (Kubernetes' timeoutSeconds and gRPC port fields). */
const INT32_MAX = 2 ** 31 - 1;
const SHOWN_MAX = 120;

/** A JSON value for a message: bounded in length, and never throws (deeply nested values included). */
export function describe(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = Array.isArray(v) ? '[...]' : typeof v === 'object' && v !== null ? '{...}' : String(v);
  }
  return text.length > SHOWN_MAX ? `${text.slice(0, SHOWN_MAX)}...` : text;
}

/** A path or key for a message: quoted, bounded. */
function quote(s: string): string {
  return JSON.stringify(s.length > SHOWN_MAX ? `${s.slice(0, SHOWN_MAX)}...` : s);
}

function intPort(v: unknown, where: string, issues: IssueList): number | undefined {
  if (typeof v === 'string') {
    issues.add(SOURCE_PROBERS, `${where}: the port must be int type (got ${quote(v)})`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    issues.add(SOURCE_PROBERS, `${where}: port must be an integer (got ${describe(v)})`);
    return undefined;
  }
  if (v < 1 || v > 65535) {
    issues.add(SOURCE_PROBERS, `${where}: port ${v} is out of range 1-65535`);
    return undefined;
  }
  return v;
}

function parseOne(path: string, v: unknown, issues: IssueList): AppProber | undefined {
  const at = quote(path);
  const before = issues.items.length;
  if (!APP_PROBER_PATH.test(path)) {
    issues.add(SOURCE_PROBERS, `${at}: invalid path, must be in form of regex pattern ${APP_PROBER_PATH.source}`);
  }
  if (!isObject(v)) {
    issues.add(SOURCE_PROBERS, `${at}: prober must be a JSON object`);
    return undefined;
  }
  let timeoutSeconds = 0;
  if (v['timeoutSeconds'] !== undefined && v['timeoutSeconds'] !== null) {
    const t = v['timeoutSeconds'];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > INT32_MAX) {
      issues.add(SOURCE_PROBERS, `${at}: timeoutSeconds must be an integer in 0-${INT32_MAX} (got ${describe(t)})`);
    } else timeoutSeconds = t;
  }
  const present = (['httpGet', 'tcpSocket', 'grpc'] as const).filter((k) => v[k] !== undefined && v[k] !== null);
  if (present.length !== 1) {
    issues.add(SOURCE_PROBERS, `${at}: invalid prober type, must be one of type httpGet, tcpSocket or gRPC`);
    return undefined;
  }
  const kind = present[0]!;
  const action = v[kind];
  if (!isObject(action)) {
    issues.add(SOURCE_PROBERS, `${at}: ${kind} must be a JSON object`);
    return undefined;
  }
  let result: AppProber | undefined;
  if (kind === 'httpGet') {
    const port = intPort(action['port'], `${at} httpGet`, issues);
    const p = action['path'] ?? '';
    const scheme = action['scheme'] ?? 'HTTP';
    if (typeof p !== 'string') issues.add(SOURCE_PROBERS, `${at}: httpGet.path must be a string`);
    if (scheme !== 'HTTP' && scheme !== 'HTTPS') issues.add(SOURCE_PROBERS, `${at}: httpGet.scheme must be HTTP or HTTPS (got ${describe(scheme)})`);
    if (port !== undefined && typeof p === 'string' && (scheme === 'HTTP' || scheme === 'HTTPS')) {
      result = { kind, httpGet: { path: p.startsWith('/') ? p : `/${p}`, port, scheme }, timeoutSeconds };
    }
  } else if (kind === 'tcpSocket') {
    const port = intPort(action['port'], `${at} tcpSocket`, issues);
    if (port !== undefined) result = { kind, tcpSocket: { port }, timeoutSeconds };
  } else {
    const port = action['port'];
    const service = action['service'] ?? '';
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      issues.add(SOURCE_PROBERS, `${at}: grpc.port must be an integer in 1-65535 (got ${describe(port)})`);
    } else if (typeof service !== 'string') {
      issues.add(SOURCE_PROBERS, `${at}: grpc.service must be a string`);
    } else {
      result = { kind, grpc: { port, service }, timeoutSeconds };
    }
  }
  return issues.items.length === before ? result : undefined;
}

/** Parses ISTIO_KUBE_APP_PROBERS; problems go to `issues`. Unset or empty => no probers. */
export function parseKubeAppProbers(raw: string | undefined, issues: IssueList): Map<string, AppProber> {
  const out = new Map<string, AppProber>();
  if (raw === undefined || raw === '') return out;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    issues.add(SOURCE_PROBERS, `failed to decode app prober JSON: ${(e as Error).message}`);
    return out;
  }
  if (json === null) return out;
  if (!isObject(json)) {
    issues.add(SOURCE_PROBERS, 'app probers must be a JSON object keyed by /app-health/<container>/<probe> paths');
    return out;
  }
  for (const [path, v] of Object.entries(json)) {
    const p = parseOne(path, v, issues);
    if (p) out.set(path, p);
  }
  return out;
}

/**
 * Parses ISTIO_PROMETHEUS_ANNOTATIONS (`{"scrape","path","port"}`, all strings). Unset => no app scraping;
 * `scrape: "false"` disables it; defaults path `/metrics`, port `80`; the status port itself is refused
 * (it would scrape itself in a loop).
 */
export function parsePrometheusAnnotations(
  raw: string | undefined,
  statusPort: number,
  issues: IssueList,
): PrometheusScrapeConfig | undefined {
  if (raw === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    issues.add(SOURCE_PROM, `failed to unmarshal ${PROMETHEUS_ANNOTATIONS_ENV}: ${(e as Error).message}`);
    return undefined;
  }
  if (json === null) json = {};
  if (!isObject(json)) {
    issues.add(SOURCE_PROM, `failed to unmarshal ${PROMETHEUS_ANNOTATIONS_ENV}: want a JSON object`);
    return undefined;
  }
  const field = (k: string): string | undefined => {
    const v = json[k];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') {
      issues.add(SOURCE_PROM, `failed to unmarshal ${PROMETHEUS_ANNOTATIONS_ENV}: "${k}" must be a string (got ${describe(v)})`);
      return undefined;
    }
    return v;
  };
  const scrape = field('scrape');
  const path = field('path');
  const port = field('port');
  if (scrape === undefined || path === undefined || port === undefined) return undefined;
  if (scrape === 'false') return undefined;
  const cfg = { path: path || '/metrics', port: port || '80' };
  if (cfg.port === String(statusPort)) {
    issues.add(
      SOURCE_PROM,
      `invalid prometheus scrape configuration: application port is the same as agent port, which may lead to a recursive loop. ` +
        `Ensure pod does not have prometheus.io/port=${statusPort} label, or that injection is not happening multiple times`,
    );
    return undefined;
  }
  return cfg;
}

export interface StatusEnvConfig {
  readonly appProbers: Map<string, AppProber>;
  readonly prometheus: PrometheusScrapeConfig | undefined;
}

/** Both inputs at once; throws one ConfigError listing every problem. */
export function parseStatusEnv(o: {
  kubeAppProbers?: string | undefined;
  prometheusAnnotations?: string | undefined;
  statusPort: number;
}): StatusEnvConfig {
  const issues = new IssueList();
  const appProbers = parseKubeAppProbers(o.kubeAppProbers, issues);
  const prometheus = parsePrometheusAnnotations(o.prometheusAnnotations, o.statusPort, issues);
  if (!issues.empty) throw new ConfigError(issues.items);
  return { appProbers, prometheus };
}
