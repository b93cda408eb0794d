// Typed client for Envoy's admin API on 127.0.0.1:<proxyAdminPort> (or [::1]). Every call is bounded by a
// timeout and fails with an EnvoyAdminError naming the URL; nothing is left running after a call settles.
// Connections are not pooled (Connection: close), so no socket outlives its call.
import type { ClientRequest } from 'node:http';
import { createRequire } from 'node:module';

// node:http is loaded on the first call, not with this module: the agent creates its admin client before
// spawning Envoy and calls it only afterwards, and compiling node:http takes several ms of start-up.
let http: typeof import('node:http') | undefined;
const loadHttp = (): typeof import('node:http') => (http ??= createRequire(import.meta.url)('node:http') as typeof import('node:http'));

export const DEFAULT_ADMIN_TIMEOUT_MS = 2000;

export interface EnvoyAdminOptions {
  /** Envoy's admin port (ProxyConfig `proxyAdminPort`, 15000). */
  readonly port: number;
  /** `127.0.0.1` (default) or `::1` when the pod is IPv6. */
  readonly host?: string;
  /** Default timeout of each call. */
  readonly timeoutMs?: number;
  /** Envoy's readiness listener port (15021): excluded from active connections. */
  readonly envoyStatusPort?: number;
  /** Envoy's Prometheus listener port (15090): excluded from active connections. */
  readonly prometheusPort?: number;
}

export interface CallOptions {
  readonly timeoutMs?: number;
}

export interface StatsOptions extends CallOptions {
  /** Adds `usedonly` (default true, as every pilot-agent stats call does). */
  readonly usedOnly?: boolean;
}

export interface DrainListenersOptions extends CallOptions {
  /** Only inbound listeners (`inboundonly`): sidecars. */
  readonly inboundOnly: boolean;
  /** Graceful drain (`graceful`, default true). */
  readonly graceful?: boolean;
  /** Keep Envoy running after the drain (`skip_exit`): used by `/drain`. */
  readonly skipExit?: boolean;
}

/** The parts of `/server_info` the agent uses. */
export interface ServerInfo {
  readonly version: string;
  /** `LIVE`, `DRAINING`, `PRE_INITIALIZING` or `INITIALIZING`. */
  readonly state: string;
  readonly hotRestartVersion: string;
  /** `--restart-epoch` of the answering Envoy (admin is shared across epochs: this is the newest). */
  readonly restartEpoch: number;
  readonly uptimeCurrentEpochSeconds: number;
  readonly uptimeAllEpochsSeconds: number;
  /** The whole decoded JSON, for status views. */
  readonly raw: Record<string, unknown>;
}

export interface EnvoyAdmin {
  readonly baseUrl: string;
  /** `GET /stats?usedonly&filter=<regex>` as text. */
  statsText(filter?: string, opts?: StatsOptions): Promise<string>;
  /** `GET /stats?usedonly&filter=<regex>` parsed into name => value (counters and gauges; histograms are skipped). */
  getStats(filter?: string, opts?: StatsOptions): Promise<Map<string, number>>;
  /** `POST /drain_listeners?[inboundonly&]graceful[&skip_exit]`. */
  drainListeners(opts: DrainListenersOptions): Promise<void>;
  /** Active downstream connections by pilot-agent's rule; -1 when Envoy reports no such stat at all. */
  activeConnections(opts?: CallOptions): Promise<number>;
  /** `GET /server_info`. */
  serverInfo(opts?: CallOptions): Promise<ServerInfo>;
  /** `POST /quitquitquit`: Envoy exits (all epochs share the admin socket of the newest one). */
  quitquitquit(opts?: CallOptions): Promise<void>;
}

export class EnvoyAdminError extends Error {
  readonly url: string;
  /** HTTP status when Envoy answered. */
  readonly status: number | undefined;
  constructor(message: string, url: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EnvoyAdminError';
    this.url = url;
    this.status = status;
  }
}

interface RawResponse {
  status: number;
  body: string;
}

/** `http://host:port` with IPv6 hosts bracketed. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The largest admin answer read. The agent asks only for small documents (filtered stats, server info);
 * a larger one is a fault, not something to hold in memory.
 */
export const MAX_ADMIN_RESPONSE_BYTES = 8 * 1024 * 1024;

function doRequest(method: 'GET' | 'POST', url: string, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const fail = (e: unknown): void => {
      const msg = signal.aborted ? `timed out after ${timeoutMs}ms` : e instanceof Error ? e.message : String(e);
      reject(new EnvoyAdminError(`${method} ${url}: ${msg}`, url, undefined, { cause: e }));
    };
    let req: ClientRequest | undefined;
    try {
      req = loadHttp().request(url, { method, agent: false, signal, headers: { connection: 'close' } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ADMIN_RESPONSE_BYTES) {
            res.destroy();
            req?.destroy();
            fail(new Error(`answer larger than ${MAX_ADMIN_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', fail);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
    } catch (e) {
      fail(e);
      return;
    }
    req.on('error', fail);
    req.end();
  });
}

async function expectOk(method: 'GET' | 'POST', url: string, timeoutMs: number): Promise<string> {
  const r = await doRequest(method, url, timeoutMs);
  if (r.status !== 200) {
    throw new EnvoyAdminError(`${method} ${url}: unexpected status ${r.status}: ${r.body.trim()}`, url, r.status);
  }
  return r.body;
}

/**
 * Parses Envoy's `/stats` text (`name: value` per line). Only integer values are kept (counters, gauges);
 * histogram lines (`P0(...) P25(...)`) and malformed lines are skipped. The first occurrence of a name wins.
 */
export function parseStatsText(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const idx = line.lastIndexOf(':');
    if (idx <= 0) continue;
    const name = line.slice(0, idx).trim();
    const value = line.slice(idx + 1).trim();
    if (!/^\d+$/.test(value) || out.has(name)) continue;
    out.set(name, Number(value));
  }
  return out;
}

/** The listener stats pilot-agent never counts as client connections. */
export function knownIstioListenerStats(envoyStatusPort: number, prometheusPort: number): ReadonlySet<string> {
  return new Set([
    `listener.0.0.0.0_${envoyStatusPort}.downstream_cx_active`,
    `listener.0.0.0.0_${prometheusPort}.downstream_cx_active`,
    'listener.admin.downstream_cx_active',
    'listener.admin.main_thread.downstream_cx_active',
  ]);
}

/**
 * pilot-agent's active connection rule over `/stats?usedonly&filter=downstream_cx_active$` text: the sum of
 * `listener.*` lines, leaving out per-worker lines, Envoy internal listeners and Istio's own listeners.
 * Returns -1 when the text is empty (the stat is not available).
 */
export function countActiveConnections(text: string, known: ReadonlySet<string>): number {
  if (text.length === 0) return -1;
  let total = 0;
  for (const line of text.split('\n')) {
    const parts = line.split(':');
    if (parts.length !== 2) continue;
    const name = parts[0]!;
    if (!name.startsWith('listener.') || name.includes('worker_')) continue;
    if (name.startsWith('listener.envoy_internal_')) continue;
    if (known.has(name)) continue;
    const value = parts[1]!.trim();
    if (!/^\d+$/.test(value)) continue;
    total += Number(value);
  }
  return total;
}

function secondsOf(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const m = /^(-?\d+(?:\.\d+)?)s$/.exec(v);
    if (m) return Number(m[1]);
  }
  return 0;
}

/** Decodes `/server_info` JSON. */
export function parseServerInfo(json: string): ServerInfo {
  const raw = JSON.parse(json) as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null) throw new Error('server_info is not a JSON object');
  const opts = (raw['command_line_options'] ?? {}) as Record<string, unknown>;
  return {
    version: String(raw['version'] ?? ''),
    state: String(raw['state'] ?? ''),
    hotRestartVersion: String(raw['hot_restart_version'] ?? ''),
    restartEpoch: Number(opts['restart_epoch'] ?? 0),
    uptimeCurrentEpochSeconds: secondsOf(raw['uptime_current_epoch']),
    uptimeAllEpochsSeconds: secondsOf(raw['uptime_all_epochs']),
    raw,
  };
}

export function createEnvoyAdmin(o: EnvoyAdminOptions): EnvoyAdmin {
  const baseUrl = `http://${hostPort(o.host ?? '127.0.0.1', o.port)}`;
  const defaultTimeout = o.timeoutMs ?? DEFAULT_ADMIN_TIMEOUT_MS;
  const known = knownIstioListenerStats(o.envoyStatusPort ?? 15021, o.prometheusPort ?? 15090);
  const statsUrl = (filter: string | undefined, usedOnly: boolean): string => {
    const q: string[] = [];
    if (usedOnly) q.push('usedonly');
    if (filter !== undefined) q.push(`filter=${encodeURIComponent(filter)}`);
    return `${baseUrl}/stats${q.length ? `?${q.join('&')}` : ''}`;
  };
  const statsText = (filter?: string, opts: StatsOptions = {}): Promise<string> =>
    expectOk('GET', statsUrl(filter, opts.usedOnly ?? true), opts.timeoutMs ?? defaultTimeout);
  return {
    baseUrl,
    statsText,
    async getStats(filter, opts) {
      return parseStatsText(await statsText(filter, opts));
    },
    async drainListeners(opts) {
      const q = [opts.inboundOnly ? 'inboundonly' : '', (opts.graceful ?? true) ? 'graceful' : '', opts.skipExit ? 'skip_exit' : '']
        .filter(Boolean)
        .join('&');
      await expectOk('POST', `${baseUrl}/drain_listeners${q ? `?${q}` : ''}`, opts.timeoutMs ?? defaultTimeout);
    },
    async activeConnections(opts = {}) {
      const text = await statsText('downstream_cx_active$', { timeoutMs: opts.timeoutMs ?? 2000 });
      return countActiveConnections(text, known);
    },
    async serverInfo(opts = {}) {
      const url = `${baseUrl}/server_info`;
      const body = await expectOk('GET', url, opts.timeoutMs ?? defaultTimeout);
      try {
        return parseServerInfo(body);
      } catch (e) {
        throw new EnvoyAdminError(`GET ${url}: bad JSON: ${e instanceof Error ? e.message : String(e)}`, url, 200, { cause: e });
      }
    },
    async quitquitquit(opts = {}) {
      await expectOk('POST', `${baseUrl}/quitquitquit`, opts.timeoutMs ?? defaultTimeout);
    },
  };
}
