// Merged Prometheus exposition, as pilot-agent serves it on :15020/stats/prometheus: agent metrics first, then
// Envoy's :15090 stats, then the application's metrics last (an OpenMetrics `# EOF` must end the output).
// Series are concatenated verbatim. A failing source is logged and counted; the rest is still served.
// A scrape owns everything it opens: when the scraper goes away (Prometheus closes the connection on its scrape
// timeout), the deadline passes or the server closes, the upstream scrapes are aborted and every stream is
// destroyed at once; nothing waits on a reader that is gone.
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Writable } from 'node:stream';
import type { Logger } from '../lib/log.js';
import type { AgentMetrics } from '../lib/metrics.js';
import type { PrometheusScrapeConfig } from './config.js';

export const FMT_TEXT = 'text/plain; version=0.0.4; charset=utf-8';
export const FMT_OPENMETRICS_001 = 'application/openmetrics-text; version=0.0.1; charset=utf-8';
export const FMT_OPENMETRICS_100 = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** Envoy's output cannot be OpenMetrics (its `# EOF` would end the merged output early). */
export const ALLOWED_ENVOY_TYPES = ['text/*', 'text/plain'] as const;
export const ALLOWED_APP_TYPES = ['text/*', 'text/plain', 'application/openmetrics-text'] as const;

/** Ours: a scrape without `X-Prometheus-Scrape-Timeout-Seconds` is bounded too (pilot-agent: unbounded). */
export const DEFAULT_SCRAPE_TIMEOUT_MS = 30_000;
/** The largest scrape timeout honoured (a larger header value is clamped to it). */
export const MAX_SCRAPE_TIMEOUT_MS = 300_000;

interface MediaType {
  type: string;
  params: Map<string, string>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseMediaType(text: string): MediaType {
  const parts = text.split(';');
  const type = parts[0]!.trim().toLowerCase();
  if (!type) throw new Error('no media type');
  const slash = type.indexOf('/');
  if (slash < 0 ? !TOKEN.test(type) : !TOKEN.test(type.slice(0, slash)) || !TOKEN.test(type.slice(slash + 1))) {
    throw new Error(`invalid media type "${type}"`);
  }
  const params = new Map<string, string>();
  for (const raw of parts.slice(1)) {
    const p = raw.trim();
    if (!p) continue;
    const eq = p.indexOf('=');
    if (eq <= 0) throw new Error(`invalid media parameter "${p}"`);
    const key = p.slice(0, eq).trim().toLowerCase();
    let value = p.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    else if (!TOKEN.test(value)) throw new Error(`invalid media parameter value "${value}"`);
    if (!TOKEN.test(key) || params.has(key)) throw new Error(`invalid or duplicate media parameter "${key}"`);
    params.set(key, value);
  }
  return { type, params };
}

function formatMediaType(m: MediaType): string {
  const keys = [...m.params.keys()].sort();
  return [m.type, ...keys.map((k) => {
    const v = m.params.get(k)!;
    return `${k}=${TOKEN.test(v) ? v : `"${v.replace(/(["\\])/g, '\\$1')}"`}`;
  })].join('; ');
}

/** The key Go's encoding.String() produces (params sorted, joined by ';'). */
function key(m: MediaType): string {
  return [m.type, ...[...m.params.keys()].sort().map((k) => `${k}=${m.params.get(k)!}`)].join(';');
}

const TEXT_004 = (): MediaType => ({ type: 'text/plain', params: new Map([['version', '0.0.4']]) });
const OPENMETRICS_001 = (): MediaType => ({ type: 'application/openmetrics-text', params: new Map([['version', '0.0.1']]) });

/**
 * Re-negotiates a scraper's Accept header for one upstream: drops types the upstream may not answer with
 * (protobuf, and OpenMetrics for Envoy), maps wildcards to the basic text/OpenMetrics types, and rewrites
 * q-values by position. Unparseable or empty => `text/plain;version=0.0.4`.
 */
export function allowedContentTypes(accept: string | undefined, allowed: readonly string[], log?: Logger): string {
  const fallback = key(TEXT_004());
  let encodings: MediaType[];
  try {
    encodings = (accept ?? '').split(',').map(parseMediaType);
  } catch (e) {
    log?.warn(`Failed to parse Accept header "${accept ?? ''}": ${(e as Error).message}`);
    return fallback;
  }
  const kept: MediaType[] = [];
  const used = new Set<string>();
  for (const e of encodings) {
    e.params.delete('q');
    let m = e;
    if (e.type === '*/*' || e.type === '*') {
      if (!allowed.includes('text/plain')) continue;
      m = TEXT_004();
    } else if (e.type === 'application/*') {
      if (!allowed.includes('application/openmetrics-text')) continue;
      m = OPENMETRICS_001();
    } else if (!allowed.includes(e.type)) {
      continue;
    } else {
      used.add(key(m));
      kept.push(m);
      continue;
    }
    if (used.has(key(m))) continue;
    used.add(key(m));
    kept.push(m);
  }
  if (kept.length === 0) {
    log?.warn(`No recognized encodings found in Accept header "${accept ?? ''}"`);
    return fallback;
  }
  return kept
    .map((m, i) => {
      m.params.set('q', `0.${kept.length - i}`);
      return formatMediaType(m);
    })
    .join(',');
}

/** The merged response's Content-Type: the app's OpenMetrics version if it answered so, else text 0.0.4. */
export function negotiateMetricsFormat(contentType: string | undefined): string {
  if (!contentType) return FMT_TEXT;
  let m: MediaType;
  try {
    m = parseMediaType(contentType);
  } catch {
    return FMT_TEXT;
  }
  if (m.type !== 'application/openmetrics-text') return FMT_TEXT;
  const v = m.params.get('version') ?? '';
  if (v === '1.0.0') return FMT_OPENMETRICS_100;
  if (v === '0.0.1' || v === '') return FMT_OPENMETRICS_001;
  return FMT_TEXT;
}

// Go's strconv.ParseFloat grammar (base 10, and hexadecimal with a binary exponent); no underscores.
const DECIMAL_FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const HEX_FLOAT = /^([+-]?)0[xX]((?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+))[pP]([+-]?\d+)$/;
const INFINITY = /^[+]?(?:inf|infinity)$/i;

/** Go's strconv.ParseFloat(s, 64) for what it accepts; undefined for what it rejects (incl. out of range). */
export function parseGoFloat(s: string): number | undefined {
  if (DECIMAL_FLOAT.test(s)) {
    const v = Number(s);
    return Number.isFinite(v) ? v : undefined; // Go: ErrRange
  }
  const hex = HEX_FLOAT.exec(s);
  if (hex) {
    const [int = '', frac = ''] = hex[2]!.split('.');
    let mant = 0;
    for (const d of int + frac) mant = mant * 16 + parseInt(d, 16);
    const exp = Number(hex[3]) - 4 * frac.length;
    const v = (hex[1] === '-' ? -1 : 1) * mant * 2 ** exp;
    return Number.isFinite(v) ? v : undefined;
  }
  if (INFINITY.test(s)) return Infinity;
  if (/^-(?:inf|infinity)$/i.test(s)) return -Infinity;
  if (/^nan$/i.test(s)) return NaN;
  return undefined;
}

/**
 * `X-Prometheus-Scrape-Timeout-Seconds` (a float number of seconds, as pilot-agent reads it) => whole
 * milliseconds in [1, MAX_SCRAPE_TIMEOUT_MS]; undefined when absent, unparseable, not positive or NaN (the
 * caller falls back to its default: a bad value is never an error). Never throws.
 */
export function scrapeTimeoutMs(header: string | undefined, log?: Logger): number | undefined {
  if (header === undefined || header === '') return undefined;
  const s = parseGoFloat(header.trim());
  if (s === undefined || Number.isNaN(s) || s <= 0) {
    log?.warn(`Failed to parse timeout header ${JSON.stringify(header.length > 100 ? `${header.slice(0, 100)}...` : header)}: want a positive number of seconds`);
    return undefined;
  }
  const ms = s * 1000;
  if (ms >= MAX_SCRAPE_TIMEOUT_MS) return MAX_SCRAPE_TIMEOUT_MS;
  return Math.max(1, Math.round(ms));
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Resolves to the upstream's 200 response (with an error sink attached), or rejects naming the URL. */
function scrape(url: string, incoming: IncomingHttpHeaders, accept: string, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const fail = (e: unknown): void => reject(new Error(`error scraping ${url}: ${signal.aborted ? errText(signal.reason) : errText(e)}`));
    try {
      const headers: Record<string, string> = { accept, connection: 'close' };
      const ua = headerValue(incoming['user-agent']);
      if (ua) headers['user-agent'] = ua;
      const to = headerValue(incoming['x-prometheus-scrape-timeout-seconds']);
      if (to) headers['x-prometheus-scrape-timeout-seconds'] = to;
      const req = httpRequest(url, { method: 'GET', headers, agent: false, signal }, (res) => {
        res.on('error', () => undefined); // read (or destroyed) by the merge; an error here ends its copy
        if (res.statusCode !== 200) {
          res.destroy();
          reject(new Error(`error scraping ${url}, status code: ${res.statusCode}`));
          return;
        }
        resolve(res);
      });
      req.on('error', fail);
      req.end();
    } catch (e) {
      fail(e);
    }
  });
}

class Gone extends Error {}

/** Waits until `to` drains; rejects when it closes or errors first, or when `signal` aborts. */
function drained(to: Writable, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      to.off('drain', onDrain);
      to.off('close', onGone);
      to.off('error', onGone);
      signal.removeEventListener('abort', onAbort);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onGone = (): void => {
      cleanup();
      reject(new Gone('client went away'));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    };
    if (signal.aborted) return onAbort();
    if (to.destroyed) return onGone();
    to.on('drain', onDrain);
    to.on('close', onGone);
    to.on('error', onGone);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function copy(from: IncomingMessage, to: Writable, signal: AbortSignal): Promise<void> {
  for await (const chunk of from) {
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
    if (to.destroyed || to.writableEnded) throw new Gone('client went away');
    if (!to.write(chunk as Buffer)) await drained(to, signal);
  }
}

export interface MergeOptions {
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** `http://localhost:15090/stats/prometheus`, or undefined when Envoy stats are not merged. */
  readonly envoyUrl: string | undefined;
  /** `localhost` plus the app's port and path, or undefined. */
  readonly app: (PrometheusScrapeConfig & { readonly host: string }) | undefined;
  /** Aborted when the scrape must stop at once: the client went away, or the server closes. */
  readonly signal: AbortSignal;
}

/**
 * Scrapes the sources and writes the merged exposition. `setContentType` is called before anything is written;
 * `out` is the (possibly gzip) body stream; it is ended on return, unless the client went away (then the
 * scrape stops at once, its upstream scrapes aborted and their responses destroyed). Never rejects.
 */
export async function writeMergedMetrics(
  o: MergeOptions,
  rawQuery: string,
  incoming: IncomingHttpHeaders,
  setContentType: (ct: string) => void,
  out: Writable,
): Promise<void> {
  const { log, metrics } = o;
  metrics.scrapesTotal.inc();
  const timeout = scrapeTimeoutMs(headerValue(incoming['x-prometheus-scrape-timeout-seconds']), log) ?? DEFAULT_SCRAPE_TIMEOUT_MS;
  // one signal for everything this scrape opens: the deadline, the caller's stop, or `out` closing early
  const ac = new AbortController();
  let gone = false;
  const stop = (why: Error, clientGone: boolean): void => {
    if (ac.signal.aborted) return;
    gone = clientGone;
    ac.abort(why);
  };
  const timer = setTimeout(() => stop(new Error(`timeout after ${timeout}ms`), false), timeout);
  const onStop = (): void => stop(o.signal.reason instanceof Error ? o.signal.reason : new Error('scrape cancelled'), true);
  const onOutGone = (): void => stop(new Gone('client went away'), true);
  if (o.signal.aborted) onStop();
  o.signal.addEventListener('abort', onStop, { once: true });
  out.on('close', onOutGone);
  out.on('error', onOutGone);
  const signal = ac.signal;
  const opened: IncomingMessage[] = [];
  const destroyOpened = (): void => {
    for (const r of opened) r.destroy();
  };
  signal.addEventListener('abort', destroyOpened, { once: true });
  const track = (p: Promise<IncomingMessage>): Promise<IncomingMessage> =>
    p.then((r) => {
      opened.push(r);
      if (signal.aborted) r.destroy();
      return r;
    });
  try {
    const acceptIn = headerValue(incoming['accept']);
    const envoyP = o.envoyUrl
      ? track(scrape(`${o.envoyUrl}${rawQuery ? `?${rawQuery}` : ''}`, incoming, allowedContentTypes(acceptIn, ALLOWED_ENVOY_TYPES, log), signal))
      : undefined;
    const appP = o.app
      ? track(scrape(`http://${o.app.host}:${o.app.port}${o.app.path}`, incoming, allowedContentTypes(acceptIn, ALLOWED_APP_TYPES, log), signal))
      : undefined;
    // Both scrapes run at once; settle both before judging either (no rejection is ever left unobserved).
    const [envoyR, appR] = await Promise.allSettled([envoyP, appP]);
    if (gone) {
      log.debug(`scrape stopped before the upstreams answered: ${errText(signal.reason)}`);
      return;
    }
    let envoy: IncomingMessage | undefined;
    let app: IncomingMessage | undefined;
    if (envoyP) {
      if (envoyR.status === 'fulfilled') envoy = envoyR.value;
      else {
        log.error(`failed scraping envoy metrics: ${errText(envoyR.reason)}`);
        metrics.scrapeFailuresTotal.inc({ type: 'envoy' });
      }
    }
    let format = FMT_TEXT;
    if (appP) {
      if (appR.status === 'fulfilled' && appR.value) {
        app = appR.value;
        format = negotiateMetricsFormat(headerValue(app.headers['content-type']));
      } else if (appR.status === 'rejected') {
        log.error(`failed scraping application metrics: ${errText(appR.reason)}`);
        metrics.scrapeFailuresTotal.inc({ type: 'application' });
      }
    }
    setContentType(format);
    let agentText = '';
    try {
      agentText = await metrics.registry.metrics();
    } catch (e) {
      log.error(`failed scraping and writing agent metrics: ${errText(e)}`);
      metrics.scrapeFailuresTotal.inc({ type: 'agent' });
    }
    if (gone) return;
    if (agentText) out.write(agentText.endsWith('\n') ? agentText : `${agentText}\n`);
    // App metrics last: an OpenMetrics `# EOF` ends the whole exposition.
    for (const [res, type, what] of [
      [envoy, 'envoy', 'envoy'],
      [app, 'application', 'application'],
    ] as const) {
      if (!res) continue;
      try {
        await copy(res, out, signal);
      } catch (e) {
        if (gone) {
          log.debug(`scrape stopped while writing ${what} metrics: ${errText(signal.reason ?? e)}`);
          return;
        }
        log.error(`failed to scraping and writing ${what} metrics: ${errText(e)}`);
        metrics.scrapeFailuresTotal.inc({ type });
      }
    }
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener('abort', onStop);
    signal.removeEventListener('abort', destroyOpened);
    out.off('close', onOutGone);
    destroyOpened();
    if (gone) out.destroy();
    else if (!out.destroyed && !out.writableEnded) out.end();
    // the scrape is over: anything still holding the signal (a request not yet answered) is released
    if (!signal.aborted) ac.abort(new Error('scrape finished'));
    out.off('error', onOutGone);
    out.on('error', () => undefined);
  }
}
