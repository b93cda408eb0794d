// The agent's status server on :<statusPort> (15020), with pilot-agent's routes and semantics:
//   /healthz/ready                    Envoy readiness (see readiness.ts) + extra checks
//   /stats/prometheus, /metrics        merged agent + Envoy + app metrics
//   /app-health/..., /app-lifecycle/.. kubelet probes rewritten by the injector
//   POST /quitquitquit, POST /drain    loopback only
// and ours: loopback-only POST /restart (Envoy hot restart) and GET /debug/status (operator status view).
// Responses are gzip-compressed when the client accepts it and the body is worth it (like pilot-agent's gzhttp).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList, isIP, type AddressInfo, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import type { Gzip } from 'node:zlib';
import { pipeline, type Writable } from 'node:stream';
import { Counter } from 'prom-client';
import type { EnvoyAdmin } from '../envoy/admin.js';
import { formatGoDuration } from '../lib/duration.js';
import type { Logger } from '../lib/log.js';
import type { AgentMetrics } from '../lib/metrics.js';
import { AGENT_NAME, AGENT_VERSION, ISTIO_VERSION } from '../version.js';
import { AppProbeRunner, type BodyLimitKind } from './app-probe.js';
import { parseStatusEnv, type AppProber, type PrometheusScrapeConfig, type StatusEnvConfig } from './config.js';
import { writeMergedMetrics } from './prom-merge.js';
import { ReadinessProbe, notReadyText, type LastNacks, type NamedReadinessCheck, type ReadinessCheck, type ReadinessResult } from './readiness.js';

export const FORBIDDEN_MESSAGE = 'Only requests from localhost are allowed';
/** gzhttp's default minimum size worth compressing. */
export const GZIP_MIN_SIZE = 1024;
const CLOSE_GRACE_MS = 1000;

/** What the Envoy supervisor reports for the status view. */
export interface EnvoyProcessStatus {
  readonly epoch: number;
  readonly pid: number | undefined;
  /** Supervisor state, e.g. `starting`, `running`, `draining`, `restarting`, `exited`. */
  readonly state: string;
  readonly restarts: number;
  readonly [extra: string]: unknown;
}

export interface StatusServerDeps {
  /** kubeAppProbers and prometheusAnnotations already parsed (status/config.ts parseStatusEnv); parsed here when absent. */
  readonly parsedEnv?: StatusEnvConfig;
  /** The default scope: probe results go to its `probes` child scope. */
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** Status port (15020); 0 picks a free port (tests). */
  readonly statusPort: number;
  /** Listen address; default all interfaces (like pilot-agent's `:15020`). */
  readonly listenHost?: string;
  /** Envoy admin client, for readiness and the status view. */
  readonly admin?: EnvoyAdmin;
  /** No Envoy managed (pilot-agent's NoEnvoy): readiness is the extra checks only, no Envoy stats merged. */
  readonly noEnvoy?: boolean;
  /** Envoy's Prometheus port (15090). */
  readonly envoyPrometheusPort?: number;
  /** Host for the Envoy and app scrapes (pilot-agent: `localhost`). */
  readonly scrapeHost?: string;
  /** PILOT_AGENT_MERGE_ENVOY_STATS (default true): merge Envoy :15090 stats into the agent endpoint. */
  readonly mergeEnvoyStats?: boolean;
  /** METRICS_LOCALHOST_ACCESS_ONLY: merged metrics only for loopback clients. */
  readonly metricsLocalhostOnly?: boolean;
  /** Raw ISTIO_KUBE_APP_PROBERS. */
  readonly kubeAppProbers?: string | undefined;
  /** Raw ISTIO_PROMETHEUS_ANNOTATIONS (sidecars only: pass undefined for gateways). */
  readonly prometheusAnnotations?: string | undefined;
  /** INSTANCE_IP: where app probes go; also picks IPv6 loopback/probe source when it is IPv6. */
  readonly podIP?: string | undefined;
  /** IPv6-only pod. */
  readonly ipv6?: boolean;
  /** REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION: probe `localhost` instead of the pod IP. */
  readonly legacyLocalhostProbeDestination?: boolean;
  /** Probe source address; default 127.0.0.6 (::6 for IPv6); null to not bind one. */
  readonly probeSourceAddress?: string | null;
  /** Extra readiness checks after Envoy's, in order (gRPC bootstrap file, DNS table, ...). */
  readonly readinessChecks?: ReadonlyArray<ReadinessCheck | NamedReadinessCheck>;
  /** The last CDS/LDS NACK messages (xDS proxy), named in the not-ready explanation. */
  readonly lastNacks?: () => LastNacks;
  /** `/quitquitquit`: exit at once without draining (disable drain, then cancel the agent). */
  readonly onQuit?: (cause: string) => void;
  /** `/drain`: drain Envoy now (skip_exit) and mark it drained. */
  readonly onDrain?: () => void;
  /** `/restart`: hot-restart Envoy; resolves to the new epoch. */
  readonly onRestart?: () => Promise<number>;
  readonly getEnvoyStatus?: () => EnvoyProcessStatus | undefined;
  readonly getXdsStatus?: () => unknown;
  /** Workload identity (SPIFFE ID, certificate, roots, last CA error, SDS streams). */
  readonly getIdentityStatus?: () => unknown;
  /** Called once, when readiness first succeeds (after the startup duration is recorded). */
  readonly onFirstReady?: () => void;
  /** Start-up phases and recent events (status view and page). */
  readonly getTimeline?: () => unknown;
  /** The DNS proxy (table received, names, last update, upstreams); absent when DNS capture is off. */
  readonly getDnsStatus?: () => unknown;
  /** `/debug/ndsz`: the DNS name table (undefined before the first one, or when DNS capture is off). */
  readonly getDnsTable?: () => unknown;
  /** An unexpected serve error after start (pilot-agent then SIGTERMs itself). */
  readonly onServeError?: (err: Error) => void;
  /** Process start time (ms since epoch), for startup duration and uptime. */
  readonly processStartMs?: number;
  readonly now?: () => number;
}

/** What the server holds right now (tests and the status view: each returns to 0 when idle). */
export interface StatusInflight {
  /** Open client connections. */
  readonly connections: number;
  /** Requests whose handler has not finished. */
  readonly requests: number;
  /** Response body streams (gzip) not yet closed. */
  readonly streams: number;
}

export const BODY_LIMIT_METRIC = 'istio_agent_app_probe_body_limit_exceeded_total';

export interface StatusServer {
  start(): Promise<void>;
  inflight(): StatusInflight;
  close(): Promise<void>;
  setShuttingDown(reason: string): void;
  readiness(): Promise<ReadinessResult>;
  /** The bound port once started (undefined if not listening). */
  port(): number | undefined;
  /** Forget the readiness latches: a fresh Envoy that is not a hot-restart child (crash restart in place). */
  resetReadiness(): void;
  /** Plugs in a readiness blocker (e.g. the DNS proxy's "DNS table not yet received"); a name already registered is replaced. */
  addReadinessCheck(check: ReadinessCheck | NamedReadinessCheck): void;
}

/** True for loopback peers, including IPv4-mapped IPv6 (`::ffff:127.0.0.1`). */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  let a = addr.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) a = mapped[1]!;
  if (isIP(a) === 4) return a.startsWith('127.');
  if (isIP(a) === 6) {
    const loopback6 = new BlockList();
    loopback6.addAddress('::1', 'ipv6');
    return loopback6.check(a, 'ipv6');
  }
  return false;
}

/** The Envoy admin host and the probe source for the pod's IP family (pilot-agent's choice). */
export function localAddressesFor(o: { ipv6?: boolean; podIP?: string | undefined }): { localhost: string; probeSource: string } {
  const v6 = o.ipv6 || (o.podIP !== undefined && isIP(o.podIP) === 6 && !/^fe[89ab]/i.test(o.podIP));
  return v6 ? { localhost: '::1', probeSource: '::6' } : { localhost: '127.0.0.1', probeSource: '127.0.0.6' };
}

/** True when an `Accept-Encoding` value accepts gzip (`gzip` or `*`, with a q-value above 0). Never throws. */
export function acceptsGzip(ae: string | string[] | undefined): boolean {
  if (typeof ae !== 'string') return false;
  return ae.split(',').some((part) => {
    const [coding, ...params] = part.trim().split(';');
    if (coding?.trim().toLowerCase() !== 'gzip' && coding?.trim() !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export type RequestTarget = { readonly path: string; readonly query: string } | { readonly error: string };

const STATUS_ORIGIN = 'http://status.local';

/**
 * The path (dot segments resolved, as WHATWG URL does) and raw query of a request target. Origin-form
 * (`/p?q`) is read against a fixed origin, so `//x` stays a path; absolute-form (`http://h/p`) is accepted;
 * anything else is an error naming the target. Never throws.
 */
export function parseRequestTarget(raw: string | undefined): RequestTarget {
  const target = raw ?? '/';
  try {
    const u = target.startsWith('/') ? new URL(`${STATUS_ORIGIN}${target}`) : new URL(target);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`scheme ${u.protocol}`);
    return { path: u.pathname || '/', query: u.search.slice(1) };
  } catch {
    const shown = target.length > 200 ? `${target.slice(0, 200)}...` : target;
    return { error: `invalid request target ${JSON.stringify(shown)}` };
  }
}

// node:zlib is loaded with the first compressed response (a scrape), not while Envoy starts: it takes 1-4 ms
let zlib: typeof import('node:zlib') | undefined;
const loadZlib = (): typeof import('node:zlib') => (zlib ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));

/** A gzip stream into `res`, with `res` ended when it ends and both destroyed when either fails or closes early. */
function gzipInto(res: ServerResponse, track?: (gz: Gzip) => void): Gzip {
  const gz = loadZlib().createGzip();
  track?.(gz);
  pipeline(gz, res, () => undefined);
  return gz;
}

/** Writes a whole response, gzip-compressed when accepted and large enough. */
function send(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  body: string | Buffer = '',
  contentType?: string,
  track?: (gz: Gzip) => void,
): void {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  res.setHeader('Vary', 'Accept-Encoding');
  if (contentType) res.setHeader('Content-Type', contentType);
  else if (buf.length) res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  if (buf.length >= GZIP_MIN_SIZE && acceptsGzip(req.headers['accept-encoding'])) {
    res.setHeader('Content-Encoding', 'gzip');
    res.writeHead(status);
    gzipInto(res, track).end(buf);
    return;
  }
  res.setHeader('Content-Length', buf.length);
  res.writeHead(status);
  res.end(buf);
}

/** Go's http.Error: text body with a trailing newline. */
function sendError(req: IncomingMessage, res: ServerResponse, status: number, msg: string, track?: (gz: Gzip) => void): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  send(req, res, status, `${msg}\n`, undefined, track);
}

/** `istio_agent_app_probe_body_limit_exceeded_total{type}` on the agent registry (created once per registry). */
function bodyLimitCounter(metrics: AgentMetrics): (kind: BodyLimitKind) => void {
  const existing = metrics.registry.getSingleMetric(BODY_LIMIT_METRIC) as Counter<'type'> | undefined;
  const counter =
    existing ??
    new Counter<'type'>({
      name: BODY_LIMIT_METRIC,
      help: 'Application probe responses larger than the read limit (HTTP: the body passed on is truncated; gRPC: the probe fails).',
      labelNames: ['type'],
      registers: [metrics.registry],
    });
  return (kind) => counter.inc({ type: kind });
}

/** Parses the environment inputs; throws ConfigError (naming ISTIO_KUBE_APP_PROBERS / ISTIO_PROMETHEUS_ANNOTATIONS). */
export function createStatusServer(deps: StatusServerDeps): StatusServer {
  const env =
    deps.parsedEnv ??
    parseStatusEnv({
      kubeAppProbers: deps.kubeAppProbers,
      prometheusAnnotations: deps.prometheusAnnotations,
      statusPort: deps.statusPort,
    });
  return new StatusServerImpl(deps, env.appProbers, env.prometheus);
}

class StatusServerImpl implements StatusServer {
  private readonly log: Logger;
  private readonly probe: ReadinessProbe;
  private readonly appProbes: AppProbeRunner;
  private readonly closing = new AbortController();
  private readonly sockets = new Set<Socket>();
  private readonly now: () => number;
  private readonly processStartMs: number;
  private server: Server | undefined;
  private boundPort: number | undefined;
  private lastProbeSuccessful = false;
  private startupRecorded = false;
  private closed = false;
  private requests = 0;
  private streams = 0;
  private readonly track = (gz: Gzip): void => {
    this.streams++;
    gz.once('close', () => this.streams--);
  };

  constructor(
    private readonly deps: StatusServerDeps,
    private readonly appProbers: ReadonlyMap<string, AppProber>,
    private readonly prometheus: PrometheusScrapeConfig | undefined,
  ) {
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.processStartMs = deps.processStartMs ?? this.now() - process.uptime() * 1000;
    const { probeSource } = localAddressesFor(deps);
    this.probe = new ReadinessProbe({
      ...(deps.admin ? { admin: deps.admin } : {}),
      noEnvoy: deps.noEnvoy ?? false,
      checks: deps.readinessChecks ?? [],
      onFirstReady: () => this.recordStartup(),
      ...(deps.lastNacks ? { lastNacks: deps.lastNacks } : {}),
    });
    const source = deps.probeSourceAddress === null ? undefined : (deps.probeSourceAddress ?? probeSource);
    this.appProbes = new AppProbeRunner({
      destination: deps.legacyLocalhostProbeDestination ? 'localhost' : deps.podIP || (source === '::6' ? '::1' : '127.0.0.1'),
      sourceAddress: source,
      statusPort: () => this.boundPort ?? deps.statusPort,
      log: deps.log.scope('probes'),
      onBodyLimit: bodyLimitCounter(deps.metrics),
    });
  }

  inflight(): StatusInflight {
    return { connections: this.sockets.size, requests: this.requests, streams: this.streams };
  }

  private recordStartup(): void {
    if (this.startupRecorded) return;
    this.startupRecorded = true;
    const ms = this.now() - this.processStartMs;
    this.deps.metrics.startupDurationSeconds.set(ms / 1000);
    this.log.info(`Readiness succeeded in ${formatGoDuration(ms)}`);
    try {
      this.deps.onFirstReady?.();
    } catch (e) {
      this.log.warn(`onFirstReady failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  port(): number | undefined {
    return this.boundPort;
  }

  setShuttingDown(reason: string): void {
    this.probe.setShuttingDown(reason);
  }

  resetReadiness(): void {
    this.probe.reset();
  }

  addReadinessCheck(check: ReadinessCheck | NamedReadinessCheck): void {
    this.probe.addCheck(check);
  }

  readiness(): Promise<ReadinessResult> {
    return this.probe.check();
  }

  start(): Promise<void> {
    if (this.server || this.closed) return Promise.resolve();
    this.log.info(`Opening status port ${this.deps.statusPort}`);
    const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => this.handle(req, res));
    this.server = server;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    return new Promise<void>((resolve) => {
      const onListenError = (e: Error): void => {
        this.log.error(`Error listening on status port: ${e.message}`);
        this.server = undefined;
        resolve();
      };
      server.once('error', onListenError);
      const opts = this.deps.listenHost ? { port: this.deps.statusPort, host: this.deps.listenHost } : { port: this.deps.statusPort };
      server.listen(opts, () => {
        server.off('error', onListenError);
        this.boundPort = (server.address() as AddressInfo).port;
        server.on('error', (e: Error) => {
          this.log.error(`status server error: ${e.message}`);
          if (!this.closed) this.deps.onServeError?.(e);
        });
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const s of this.sockets) s.destroy();
        resolve();
      }, CLOSE_GRACE_MS);
      timer.unref();
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      server.closeIdleConnections();
    });
    for (const s of this.sockets) s.destroy();
    this.boundPort = undefined;
    this.log.info('Status server has successfully terminated');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    let route: Promise<void>;
    try {
      route = this.route(req, res);
    } catch (e) {
      route = Promise.reject(e);
    }
    route
      .catch((e: unknown) => {
        this.log.error(`status server: ${req.method} ${JSON.stringify(req.url)}: ${e instanceof Error ? e.message : String(e)}`);
        if (!res.headersSent) sendError(req, res, 500, 'internal error', this.track);
        else res.destroy();
      })
      .catch(() => res.destroy())
      .finally(() => this.requests--);
  }

  private fromLocalhost(req: IncomingMessage): boolean {
    return isLoopbackAddress(req.socket.remoteAddress);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = parseRequestTarget(req.url);
    if ('error' in target) return this.sendError(req, res, 400, target.error);
    const path = target.path;
    switch (path) {
      case '/healthz/ready':
        return this.handleReady(req, res);
      case '/metrics':
      case '/stats/prometheus':
        return this.handleStats(req, res, target.query);
      case '/quitquitquit':
        return this.handleAdminPost(req, res, () => {
          this.log.info('handling /quitquitquit, notifying pilot-agent to exit');
          this.deps.onQuit?.('/quitquitquit called');
          return 'OK';
        });
      case '/drain':
        return this.handleAdminPost(req, res, () => {
          this.log.info('handling /drain, starting drain');
          this.deps.onDrain?.();
          return 'OK';
        });
      case '/restart':
        return this.handleRestart(req, res);
      case '/debug/status':
        return this.handleDebugStatus(req, res);
      case '/debug/ndsz':
        return this.handleNdsz(req, res);
      case '/':
        return this.handleStatusPage(req, res);
      case '/debug/pprof/profile':
      case '/debug/pprof/heap':
      case '/logging':
        return this.handleDebug(req, res, path, target.query);
    }
    if (path.startsWith('/scopej/')) return this.handleDebug(req, res, path, target.query);
    if (path.startsWith('/app-health/') || path.startsWith('/app-lifecycle/')) return this.handleAppProbe(req, res, path);
    this.sendError(req, res, 404, '404 page not found');
  }

  private send(req: IncomingMessage, res: ServerResponse, status: number, body: string | Buffer = '', contentType?: string): void {
    send(req, res, status, body, contentType, this.track);
  }

  private sendError(req: IncomingMessage, res: ServerResponse, status: number, msg: string): void {
    sendError(req, res, status, msg, this.track);
  }

  private async handleReady(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const r = await this.probe.check();
    if (!r.ready) {
      this.log.warn(`Envoy proxy is NOT ready: ${r.reason ?? ''}`);
      this.lastProbeSuccessful = false;
      // pilot-agent answers 503 with no body; ours names every blocker (the kubelet ignores the body)
      this.send(req, res, 503, `${notReadyText(r)}\n`);
      return;
    }
    if (!this.lastProbeSuccessful) this.log.info('Envoy proxy is ready');
    this.lastProbeSuccessful = true;
    this.send(req, res, 200);
  }

  private async handleAdminPost(req: IncomingMessage, res: ServerResponse, act: () => string): Promise<void> {
    if (!this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    if (req.method !== 'POST') return this.sendError(req, res, 405, 'Method Not Allowed');
    this.send(req, res, 200, act());
  }

  private async handleRestart(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    if (req.method !== 'POST') return this.sendError(req, res, 405, 'Method Not Allowed');
    if (!this.deps.onRestart) return this.sendError(req, res, 501, 'hot restart is not available');
    this.log.info('handling /restart, hot-restarting Envoy');
    try {
      const epoch = await this.deps.onRestart();
      this.send(req, res, 200, `${JSON.stringify({ epoch })}\n`, 'application/json');
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.log.warn(`/restart failed: ${msg}`);
      this.sendError(req, res, 503, `restart failed: ${msg}`);
    }
  }

  /** pilot-agent's `/debug/ndsz`: loopback only; 404 `{}` without a table. */
  private handleNdsz(req: IncomingMessage, res: ServerResponse): void {
    if (!this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    const table = this.deps.getDnsTable?.();
    if (table === undefined) return this.send(req, res, 404, '{}', 'application/json');
    this.send(req, res, 200, JSON.stringify(table), 'application/json');
  }

  private async handleDebugStatus(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    const body = await this.statusDocument();
    this.send(req, res, 200, `${JSON.stringify(body, null, 2)}\n`, 'application/json');
  }

  /** Profiling and log levels (debug.ts, loaded on first use); loopback only. */
  private async handleDebug(req: IncomingMessage, res: ServerResponse, path: string, rawQuery: string): Promise<void> {
    if (!this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    const d = await import('./debug.js');
    const query = new URLSearchParams(rawQuery.startsWith('?') ? rawQuery.slice(1) : rawQuery);
    let reply: { status: number; body: string; contentType?: string } | undefined;
    if (path === '/debug/pprof/heap') {
      if (req.method !== 'GET') return this.sendError(req, res, 405, 'Method Not Allowed');
      return d.heapSnapshot(res, this.log);
    }
    if (path === '/debug/pprof/profile') {
      if (req.method !== 'GET') return this.sendError(req, res, 405, 'Method Not Allowed');
      reply = await d.cpuProfile(req, res, query, this.log);
      if (!reply) return;
    } else if (path === '/logging') reply = d.logging(req.method, query, this.log);
    else reply = await d.scopej(req, path, this.log);
    this.send(req, res, reply.status, reply.body, reply.contentType);
  }

  /** GET / : the status page (page.ts), loaded on first use. */
  private async handleStatusPage(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.sendError(req, res, 405, 'Method Not Allowed');
    const [{ renderStatusPage }, doc] = await Promise.all([import('./page.js'), this.statusDocument()]);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
    this.send(req, res, 200, renderStatusPage(doc, new Date(this.now())), 'text/html; charset=utf-8');
  }

  /** The data of /debug/status and of the status page. */
  private async statusDocument(): Promise<Record<string, unknown>> {
    const [readiness, server] = await Promise.all([
      this.probe.check(),
      this.deps.admin && !this.deps.noEnvoy
        ? this.deps.admin.serverInfo({ timeoutMs: 1000 }).then(
            (i) => ({ state: i.state, version: i.version, restartEpoch: i.restartEpoch, uptimeCurrentEpochSeconds: i.uptimeCurrentEpochSeconds, uptimeAllEpochsSeconds: i.uptimeAllEpochsSeconds }),
            (e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }),
          )
        : Promise.resolve(undefined),
    ]);
    const section = (get: (() => unknown) | undefined): unknown => {
      try {
        return get?.() ?? null;
      } catch (e) {
        return { error: e instanceof Error ? e.message : String(e) };
      }
    };
    const xds = section(this.deps.getXdsStatus);
    const identity = section(this.deps.getIdentityStatus);
    const timeline = section(this.deps.getTimeline);
    const dns = section(this.deps.getDnsStatus);
    const body = {
      agent: {
        name: AGENT_NAME,
        version: AGENT_VERSION,
        istioVersion: ISTIO_VERSION,
        pid: process.pid,
        uptimeSeconds: Math.round((this.now() - this.processStartMs) / 10) / 100,
        shuttingDown: this.probe.shuttingDown,
      },
      envoy: { process: this.deps.getEnvoyStatus?.() ?? null, server: server ?? null },
      readiness: { ready: readiness.ready, ...(readiness.reason !== undefined ? { reason: readiness.reason } : {}), ...(readiness.blockers ? { blockers: readiness.blockers } : {}) },
      xds,
      identity,
      timeline,
      dns,
    };
    return body;
  }

  private async handleStats(req: IncomingMessage, res: ServerResponse, rawQuery: string): Promise<void> {
    if (this.deps.metricsLocalhostOnly && !this.fromLocalhost(req)) return this.sendError(req, res, 403, FORBIDDEN_MESSAGE);
    const host = this.deps.scrapeHost ?? 'localhost';
    const mergeEnvoy = !this.deps.noEnvoy && (this.deps.mergeEnvoyStats ?? true);
    // The scrape stops at once when the client goes away (Prometheus closes on its scrape timeout) or the
    // server closes: upstream scrapes aborted, every stream destroyed.
    const stop = new AbortController();
    const onResClose = (): void => {
      if (!res.writableFinished) stop.abort(new Error('client went away'));
    };
    const onClosing = (): void => stop.abort(new Error('status server closing'));
    res.once('close', onResClose);
    if (this.closing.signal.aborted) onClosing();
    this.closing.signal.addEventListener('abort', onClosing, { once: true });
    try {
      res.setHeader('Vary', 'Accept-Encoding');
      const out: Writable = acceptsGzip(req.headers['accept-encoding']) ? gzipInto(res, this.track) : res;
      await writeMergedMetrics(
        {
          log: this.log,
          metrics: this.deps.metrics,
          envoyUrl: mergeEnvoy ? `http://${host}:${this.deps.envoyPrometheusPort ?? 15090}/stats/prometheus` : undefined,
          app: this.prometheus ? { ...this.prometheus, host } : undefined,
          signal: stop.signal,
        },
        rawQuery,
        req.headers,
        (ct) => {
          if (res.headersSent || res.destroyed) return;
          res.setHeader('Content-Type', ct);
          if (out !== res) res.setHeader('Content-Encoding', 'gzip');
          res.writeHead(200);
        },
        out,
      );
    } finally {
      res.off('close', onResClose);
      this.closing.signal.removeEventListener('abort', onClosing);
    }
  }

  private async handleAppProbe(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const prober = this.appProbers.get(path);
    if (!prober) {
      this.log.error(`Prober does not exists url ${path}`);
      this.send(req, res, 400, `app prober config does not exists for ${path}`);
      return;
    }
    const reply = await this.appProbes.run(prober, { host: req.headers.host, headers: req.headers }, path);
    this.send(req, res, reply.status, reply.body ?? '');
  }
}
