// Merged Prometheus exposition, as pilot-agent serves it on :15020/stats/prometheus: agent metrics first, then
// Envoy's :15090 stats, then the application's metrics last (an OpenMetrics `# EOF` must end the output).
// Series are concatenated verbatim. A failing source is logged and counted; the rest is still served.
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

const DEFAULT_SCRAPE_TIMEOUT_MS = 30_000;

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

/** `X-Prometheus-Scrape-Timeout-Seconds` ("1.5") => milliseconds; undefined when absent or bad. */
export function scrapeTimeoutMs(header: string | undefined, log?: Logger): number | undefined {
  if (header === undefined || header === '') return undefined;
  const s = Number(header.trim());
  if (!Number.isFinite(s) || s < 0) {
    log?.warn(`Failed to parse timeout header ${header}`);
    return undefined;
  }
  return s * 1000;
}

function scrape(url: string, incoming: IncomingHttpHeaders, accept: string, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept, connection: 'close' };
    const ua = incoming['user-agent'];
    if (ua) headers['user-agent'] = ua;
    const to = incoming['x-prometheus-scrape-timeout-seconds'];
    if (typeof to === 'string' && to) headers['x-prometheus-scrape-timeout-seconds'] = to;
    const req = httpRequest(url, { method: 'GET', headers, agent: false, signal }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        res.destroy();
        reject(new Error(`error scraping ${url}, status code: ${res.statusCode}`));
        return;
      }
      resolve(res);
    });
    req.on('error', (e) => reject(new Error(`error scraping ${url}: ${signal.aborted ? 'timeout' : e.message}`)));
    req.end();
  });
}

async function copy(from: IncomingMessage, to: Writable): Promise<void> {
  for await (const chunk of from) {
    if (!to.write(chunk as Buffer)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          to.off('drain', done);
          to.off('close', done);
          resolve();
        };
        to.once('drain', done);
        to.once('close', done);
      });
      if (to.destroyed) throw new Error('client went away');
    }
  }
}

export interface MergeOptions {
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** `http://localhost:15090/stats/prometheus`, or undefined when Envoy stats are not merged. */
  readonly envoyUrl: string | undefined;
  /** `localhost` plus the app's port and path, or undefined. */
  readonly app: (PrometheusScrapeConfig & { readonly host: string }) | undefined;
  /** Aborted when the server closes. */
  readonly signal: AbortSignal;
}

/**
 * Scrapes the sources and writes the merged exposition. `setContentType` is called before anything is written;
 * `out` is the (possibly gzip) body stream; it is ended on return.
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
  const timeout = scrapeTimeoutMs(incoming['x-prometheus-scrape-timeout-seconds'] as string | undefined, log) ?? DEFAULT_SCRAPE_TIMEOUT_MS;
  const signal = AbortSignal.any([o.signal, AbortSignal.timeout(timeout)]);
  const acceptIn = incoming['accept'];
  const envoyP = o.envoyUrl
    ? scrape(`${o.envoyUrl}${rawQuery ? `?${rawQuery}` : ''}`, incoming, allowedContentTypes(acceptIn, ALLOWED_ENVOY_TYPES, log), signal)
    : undefined;
  const appP = o.app
    ? scrape(`http://${o.app.host}:${o.app.port}${o.app.path}`, incoming, allowedContentTypes(acceptIn, ALLOWED_APP_TYPES, log), signal)
    : undefined;
  // Both scrapes run at once; settle both before judging either (no rejection is ever left unobserved).
  const [envoyR, appR] = await Promise.allSettled([envoyP, appP]);
  let envoy: IncomingMessage | undefined;
  let app: IncomingMessage | undefined;
  if (envoyP) {
    if (envoyR.status === 'fulfilled') envoy = envoyR.value;
    else {
      log.error(`failed scraping envoy metrics: ${(envoyR.reason as Error).message}`);
      metrics.scrapeFailuresTotal.inc({ type: 'envoy' });
    }
  }
  let format = FMT_TEXT;
  if (appP) {
    if (appR.status === 'fulfilled' && appR.value) {
      app = appR.value;
      format = negotiateMetricsFormat(app.headers['content-type']);
    } else if (appR.status === 'rejected') {
      log.error(`failed scraping application metrics: ${(appR.reason as Error).message}`);
      metrics.scrapeFailuresTotal.inc({ type: 'application' });
    }
  }
  setContentType(format);
  try {
    let agentText = '';
    try {
      agentText = await metrics.registry.metrics();
    } catch (e) {
      log.error(`failed scraping and writing agent metrics: ${(e as Error).message}`);
      metrics.scrapeFailuresTotal.inc({ type: 'agent' });
    }
    if (agentText) out.write(agentText.endsWith('\n') ? agentText : `${agentText}\n`);
    if (envoy) {
      try {
        await copy(envoy, out);
      } catch (e) {
        log.error(`failed to scraping and writing envoy metrics: ${(e as Error).message}`);
        metrics.scrapeFailuresTotal.inc({ type: 'envoy' });
      }
    }
    // App metrics last: an OpenMetrics `# EOF` ends the whole exposition.
    if (app) {
      try {
        await copy(app, out);
      } catch (e) {
        log.error(`failed to scraping and writing application metrics: ${(e as Error).message}`);
        metrics.scrapeFailuresTotal.inc({ type: 'application' });
      }
    }
  } finally {
    envoy?.destroy();
    app?.destroy();
    out.end();
  }
}
