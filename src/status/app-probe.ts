// Runs the application probes that the injector rewrote to :15020/app-health/... (HTTP, TCP, gRPC health), the
// way kubelet would, but from the agent: connections leave from 127.0.0.6 (::6 for IPv6) so the capture rules
// let them bypass Envoy. Every probe is bounded by its timeoutSeconds (Kubernetes' default 1s when unset).
//
// Whatever the app answers is untrusted input: every socket/http/http2 event handler here runs inside
// `Attempt.guard`, so an unexpected exception becomes a failed probe (logged), never an uncaught exception;
// every body read is capped; every connection an attempt opens is destroyed when the attempt settles.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { connect as h2Connect, constants as h2c, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { isIP } from 'node:net';
import { decodeGrpcMessage, isGrpcContentType, parseGrpcStatus } from '../lib/grpc-h2/status.js';
import type { Logger } from '../lib/log.js';
import type { AppProber, GrpcAction, HttpGetAction } from './config.js';

/** pilot-agent's maxRespBodyLength: at most this much of an HTTP probe's body is read and passed on. */
export const MAX_PROBE_BODY = 10 * 1024;
/** grpc-go's default maximum received message size (pilot-agent's gRPC probe client uses the default). */
export const MAX_GRPC_MESSAGE = 4 * 1024 * 1024;
const MAX_REDIRECTS = 10;
const DEFAULT_TIMEOUT_S = 1;
/** The longest timer Node keeps (a longer one fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ProbeReply {
  readonly status: number;
  readonly body?: Buffer;
}

export interface IncomingProbe {
  /** The Host header kubelet sent to the status port. */
  readonly host: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

export type BodyLimitKind = 'http' | 'grpc';

export interface AppProbeRunnerOptions {
  /** Where the app listens: the pod IP (or `localhost` with REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION). */
  readonly destination: string;
  /** Bound as the connection's source: 127.0.0.6 or ::6; undefined to let the kernel choose. */
  readonly sourceAddress: string | undefined;
  /** The status server's port (its bound port once listening). */
  readonly statusPort: () => number;
  /** The `probes` scope. */
  readonly log: Logger;
  /** Called when a probe response body was larger than its read limit (HTTP: truncated; gRPC: failed). */
  readonly onBodyLimit?: (kind: BodyLimitKind) => void;
}

// Headers that belong to the hop to the status server, not to the app request.
const HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'upgrade',
  'trailer',
  'content-length',
  'host',
]);

// Connection-specific headers that HTTP/2 forbids (RFC 9113 8.2.2); Node's http2 throws on any of them
// (`te` is allowed only as `trailers`).
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

function joinHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The probe's deadline in ms: timeoutSeconds (Kubernetes' 1s when unset), within what a Node timer can hold. */
export function timeoutMs(p: Pick<AppProber, 'timeoutSeconds'>): number {
  const s = p.timeoutSeconds > 0 && Number.isFinite(p.timeoutSeconds) ? p.timeoutSeconds : DEFAULT_TIMEOUT_S;
  return Math.min(Math.ceil(s * 1000), MAX_TIMER_MS);
}

/** gRPC's `grpc-timeout` header: at most 8 digits, in the finest unit that fits. */
export function grpcTimeoutHeader(ms: number): string {
  const v = Math.max(1, Math.ceil(ms));
  if (v <= 99_999_999) return `${v}m`;
  const s = Math.ceil(v / 1000);
  if (s <= 99_999_999) return `${s}S`;
  return `${Math.min(99_999_999, Math.ceil(s / 60))}M`;
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The Host header for the app: kubelet's, with the status port replaced by the app port. */
export function appHostHeader(incomingHost: string | undefined, statusPort: number, appPort: number): string | undefined {
  if (!incomingHost) return undefined;
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(incomingHost);
  if (m && Number(m[2]) === statusPort) return `${m[1]}:${appPort}`;
  return incomingHost;
}

/** Forwarded request headers (all but hop-by-hop ones), plus `Connection: close` (no keep-alive, as kubelet). */
export function forwardedHeaders(incoming: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || HOP_HEADERS.has(k) || k.startsWith(':')) continue;
    out[k] = v;
  }
  out['connection'] = 'close';
  return out;
}

/**
 * The forwarded headers as an HTTP/2 request may carry them: connection-specific headers dropped (Node's http2
 * refuses them), `te` only as `trailers`, repeated values joined (http2 refuses arrays for single-value headers).
 */
export function h2RequestHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [rawKey, v] of Object.entries(headers)) {
    const k = rawKey.toLowerCase();
    if (v === undefined || k.startsWith(':') || H2_FORBIDDEN.has(k)) continue;
    if (k === 'te' && String(v).trim().toLowerCase() !== 'trailers') continue;
    out[k] = Array.isArray(v) && k !== 'set-cookie' && k !== 'cookie' ? v.join(', ') : v;
  }
  return out;
}

// gRPC's status and content-type rules are shared with the agent's other gRPC ends
export { decodeGrpcMessage, isGrpcContentType, parseGrpcStatus } from '../lib/grpc-h2/status.js';

/** A header value as one string (first of repeated values). */
function headerText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) return v.length ? String(v[0]) : undefined;
  return String(v);
}

interface Hop {
  status: number;
  location: string | undefined;
  body: Buffer;
}

interface BodyRead {
  body: Buffer;
  /** More than `max` bytes were sent (the rest was not read). */
  truncated: boolean;
}

/** Reads at most `max` bytes, then destroys the stream; resolves on end, close or error (never rejects). */
function readAtMost(stream: NodeJS.ReadableStream & { destroy(): void }, max: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve({ body: Buffer.concat(chunks).subarray(0, max), truncated: size > max });
    };
    stream.on('data', (c: Buffer | string) => {
      if (done) return;
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      chunks.push(b);
      size += b.length;
      if (size >= max) {
        finish();
        stream.destroy();
      }
    });
    stream.on('end', finish);
    stream.on('close', finish);
    stream.on('error', finish);
  });
}

/**
 * One asynchronous probe step. It settles once; `guard` wraps event handlers so that an exception thrown in one
 * settles the step as failed instead of escaping into the event loop; cleanups (destroying what the step
 * opened) run when it settles, each on its own.
 */
class Attempt<T> {
  readonly promise: Promise<T>;
  private settled = false;
  private res!: (v: T) => void;
  private rej!: (e: Error) => void;
  private readonly cleanups: (() => void)[] = [];

  constructor(private readonly what: string) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.res = resolve;
      this.rej = reject;
    });
  }

  get done(): boolean {
    return this.settled;
  }

  onSettle(fn: () => void): void {
    if (this.settled) runQuietly(fn);
    else this.cleanups.push(fn);
  }

  resolve(v: T): void {
    if (this.settle()) this.res(v);
  }

  reject(e: unknown): void {
    if (this.settle()) this.rej(e instanceof Error ? e : new Error(String(e)));
  }

  /** Wraps an event handler: a throw fails the attempt (its message says where), and is never rethrown. */
  guard<A extends unknown[]>(where: string, fn: (...a: A) => void): (...a: A) => void {
    return (...a: A) => {
      try {
        fn(...a);
      } catch (e) {
        const err = new Error(`${this.what}: unexpected error in ${where} handler: ${errText(e)}`);
        (err as Error & { unexpected?: unknown }).unexpected = e;
        this.reject(err);
      }
    };
  }

  /** Runs `fn` now, with a throw failing the attempt. */
  run(where: string, fn: () => void): void {
    this.guard(where, fn)();
  }

  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    for (const c of this.cleanups.splice(0)) runQuietly(c);
    return true;
  }
}

function runQuietly(fn: () => void): void {
  try {
    fn();
  } catch {
    /* cleanup of an already failed connection */
  }
}

/** An error sink so that a late 'error' on a socket we handed over can never be unhandled. */
const swallow = (): void => undefined;

/** A deadline as an AbortSignal whose timer is always cleared (no timer outlives the probe). */
async function withDeadline<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`timeout after ${ms}ms`)), ms);
  try {
    return await fn(ac.signal);
  } finally {
    clearTimeout(timer);
    if (!ac.signal.aborted) ac.abort(new Error('probe finished'));
  }
}

/** The gRPC response messages of a unary call, read incrementally; at most one message of at most `max` bytes. */
export class GrpcResponseReader {
  private header = Buffer.alloc(0);
  private length = -1;
  private readonly chunks: Buffer[] = [];
  private got = 0;
  private complete = false;
  /** Set when the response broke a limit: what grpc-go would report. */
  error: { message: string; limit: boolean } | undefined;

  constructor(private readonly max = MAX_GRPC_MESSAGE) {}

  /** Feeds response DATA bytes; false once the response is invalid (see `error`): stop reading. */
  push(data: Buffer): boolean {
    if (this.error) return false;
    let c = data;
    while (c.length > 0) {
      if (this.complete) {
        this.error = { message: 'grpc: cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message', limit: false };
        return false;
      }
      if (this.length < 0) {
        const need = 5 - this.header.length;
        this.header = Buffer.concat([this.header, c.subarray(0, need)]);
        c = c.subarray(need);
        if (this.header.length < 5) return true;
        const flag = this.header[0]!;
        this.length = this.header.readUInt32BE(1);
        if (flag === 1) {
          this.error = { message: 'grpc: compressed flag set with identity or empty encoding (compressed gRPC response not supported)', limit: false };
          return false;
        }
        if (flag !== 0) {
          this.error = { message: `grpc: received unexpected payload format ${flag}`, limit: false };
          return false;
        }
        if (this.length > this.max) {
          this.error = { message: `grpc: received message larger than max (${this.length} vs. ${this.max})`, limit: true };
          return false;
        }
      }
      const take = c.subarray(0, this.length - this.got);
      if (take.length) this.chunks.push(take);
      this.got += take.length;
      c = c.subarray(take.length);
      if (this.got === this.length) this.complete = true;
    }
    return true;
  }

  /** The one message once the stream ended; throws when there is none or it is incomplete. */
  message(): Buffer {
    if (this.error) throw new Error(this.error.message);
    if (this.length < 0 && this.header.length === 0) throw new Error('grpc: cardinality violation: received no response message from non-streaming RPC');
    if (!this.complete) throw new Error(`grpc: truncated response message (${this.got + this.header.length} of ${this.length < 0 ? '?' : this.length + 5} bytes)`);
    return Buffer.concat(this.chunks);
  }
}

/** Per-server probe runner; remembers whether the bypass source address can be bound here. */
export class AppProbeRunner {
  private sourceUsable: boolean;
  private warned = false;

  constructor(private readonly o: AppProbeRunnerOptions) {
    this.sourceUsable = o.sourceAddress !== undefined;
  }

  /** Runs a probe; never rejects (an unexpected failure is logged and answered 500). */
  async run(prober: AppProber, incoming: IncomingProbe, originalPath: string): Promise<ProbeReply> {
    try {
      switch (prober.kind) {
        case 'httpGet':
          return await this.http(prober.httpGet, timeoutMs(prober), incoming, originalPath);
        case 'tcpSocket':
          return await this.tcp(prober.tcpSocket.port, timeoutMs(prober));
        case 'grpc':
          return await this.grpc(prober.grpc, timeoutMs(prober), incoming.headers['user-agent'], originalPath);
      }
    } catch (e) {
      this.o.log.error(`probe ${originalPath} failed unexpectedly: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return { status: 500 };
    }
  }

  private source(): string | undefined {
    return this.sourceUsable ? this.o.sourceAddress : undefined;
  }

  private bodyLimit(kind: BodyLimitKind, what: string): void {
    this.o.log.debug(`${what}: response body larger than the read limit`);
    try {
      this.o.onBodyLimit?.(kind);
    } catch {
      /* a metric must not fail a probe */
    }
  }

  /** Runs `attempt` with the bypass source; when the address cannot be bound here, once more without it. */
  private async withSource<T>(attempt: (localAddress: string | undefined) => Promise<T>): Promise<T> {
    const local = this.source();
    try {
      return await attempt(local);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (local !== undefined && (code === 'EADDRNOTAVAIL' || code === 'EINVAL' || code === 'EAFNOSUPPORT')) {
        this.sourceUsable = false;
        if (!this.warned) {
          this.warned = true;
          this.o.log.warn(`cannot bind probe source address ${local} (${code}); probing without it`);
        }
        return attempt(undefined);
      }
      throw e;
    }
  }

  /** A connected TCP socket; it carries an error sink from then on (its new owner adds its own handling). */
  private dial(host: string, port: number, localAddress: string | undefined, signal: AbortSignal): Promise<Socket> {
    const a = new Attempt<Socket>(`dial tcp ${joinHostPort(host, port)}`);
    a.run('dial', () => {
      const sock = netConnect({ host, port, ...(localAddress ? { localAddress } : {}) });
      sock.on('error', swallow);
      let connected = false;
      const onAbort = (): void => a.reject(new Error(`dial tcp ${joinHostPort(host, port)}: i/o timeout`));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      a.onSettle(() => signal.removeEventListener('abort', onAbort));
      a.onSettle(() => {
        if (!connected) sock.destroy();
      });
      sock.once(
        'connect',
        a.guard('connect', () => {
          connected = true;
          a.resolve(sock);
        }),
      );
      sock.once('error', a.guard('error', (e: Error) => a.reject(e)));
    });
    return a.promise;
  }

  async tcp(port: number, timeout: number): Promise<ProbeReply> {
    return withDeadline(timeout, async (signal) => {
      try {
        const sock = await this.withSource((local) => this.dial(this.o.destination, port, local, signal));
        sock.end();
        sock.destroySoon();
        return { status: 200 };
      } catch (e) {
        this.o.log.debug(`TCP probe to port ${port} failed: ${errText(e)}`);
        return { status: 500 };
      }
    });
  }

  async http(action: HttpGetAction, timeout: number, incoming: IncomingProbe, originalPath: string): Promise<ProbeReply> {
    return withDeadline(timeout, async (signal) => {
      try {
        const headers = forwardedHeaders(incoming.headers);
        const host = appHostHeader(incoming.host, this.o.statusPort(), action.port);
        const scheme = action.scheme === 'HTTPS' ? 'https' : 'http';
        let url = new URL(`${scheme}://${joinHostPort(this.o.destination, action.port)}${action.path}`);
        const firstHostname = url.hostname;
        for (let requests = 1; ; requests++) {
          const hop = await this.withSource((local) => this.httpOnce(url, headers, host, local, signal, originalPath));
          if (hop.status < 300 || hop.status >= 400) return { status: hop.status, body: hop.body };
          // A redirect: followed only to the same host (max 10 requests), as kubelet does; else it counts as success.
          if (hop.location === undefined) return { status: 200 };
          let next: URL;
          try {
            next = new URL(hop.location, url);
          } catch {
            throw new Error(`invalid redirect location ${JSON.stringify(hop.location.slice(0, 200))}`);
          }
          if (next.hostname !== firstHostname) return { status: 200 };
          if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new Error(`unsupported redirect scheme ${JSON.stringify(next.protocol)}`);
          if (requests >= MAX_REDIRECTS) throw new Error('stopped after 10 redirects');
          url = next;
        }
      } catch (e) {
        const msg = signal.aborted ? `timeout after ${timeout}ms` : errText(e);
        this.o.log.error(`Request to probe app failed: ${msg}, original URL path = ${originalPath}\napp URL path = ${action.path}`);
        return { status: 500 };
      }
    });
  }

  private async httpOnce(
    url: URL,
    headers: OutgoingHttpHeaders,
    host: string | undefined,
    localAddress: string | undefined,
    signal: AbortSignal,
    originalPath: string,
  ): Promise<Hop> {
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const path = `${url.pathname}${url.search}`;
    if (url.protocol === 'https:') {
      const tls = await this.tlsDial(hostname, port, localAddress, signal);
      try {
        if (tls.alpnProtocol === 'h2') return await this.h2Get(tls, url, path, headers, host, signal, originalPath);
        return await this.h1Get({ createConnection: () => tls }, hostname, port, path, headers, host, signal, originalPath);
      } finally {
        tls.destroy();
      }
    }
    return this.h1Get(localAddress ? { localAddress } : {}, hostname, port, path, headers, host, signal, originalPath);
  }

  private tlsDial(host: string, port: number, localAddress: string | undefined, signal: AbortSignal): Promise<TLSSocket> {
    const a = new Attempt<TLSSocket>(`TLS dial ${joinHostPort(host, port)}`);
    a.run('dial', () => {
      // kubelet skips verification for HTTPS probes; HTTP/2 is offered as kubelet does.
      const sock = tlsConnect({
        host,
        port,
        ...(localAddress ? { localAddress } : {}),
        ...(isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: false,
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      sock.on('error', swallow);
      let connected = false;
      const onAbort = (): void => a.reject(new Error('timeout'));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      a.onSettle(() => signal.removeEventListener('abort', onAbort));
      a.onSettle(() => {
        if (!connected) sock.destroy();
      });
      sock.once(
        'secureConnect',
        a.guard('secureConnect', () => {
          connected = true;
          a.resolve(sock);
        }),
      );
      sock.once('error', a.guard('error', (e: Error) => a.reject(e)));
    });
    return a.promise;
  }

  private h1Get(
    conn: { localAddress?: string; createConnection?: () => Socket },
    hostname: string,
    port: number,
    path: string,
    headers: OutgoingHttpHeaders,
    host: string | undefined,
    signal: AbortSignal,
    originalPath: string,
  ): Promise<Hop> {
    const a = new Attempt<Hop>(`GET ${path}`);
    a.run('request', () => {
      const h: OutgoingHttpHeaders = { ...headers };
      if (host !== undefined) h['host'] = host;
      const req = httpRequest(
        // `agent: false` would make Node ignore `createConnection` (it builds a fresh Agent instead)
        { hostname, port, path, method: 'GET', headers: h, signal, ...(conn.createConnection ? conn : { agent: false, ...conn }) },
        a.guard('response', (res: IncomingMessage) => {
          a.onSettle(() => res.destroy());
          const status = res.statusCode ?? 0;
          const location = headerText(res.headers.location);
          void readAtMost(res, MAX_PROBE_BODY).then(
            a.guard('body', ({ body, truncated }: BodyRead) => {
              if (truncated) this.bodyLimit('http', `probe ${originalPath}`);
              a.resolve({ status, location, body });
            }),
          );
        }),
      );
      a.onSettle(() => req.destroy());
      req.on('error', a.guard('error', (e: Error) => a.reject(e)));
      req.end();
    });
    return a.promise;
  }

  private h2Get(
    tls: TLSSocket,
    url: URL,
    path: string,
    headers: OutgoingHttpHeaders,
    host: string | undefined,
    signal: AbortSignal,
    originalPath: string,
  ): Promise<Hop> {
    const a = new Attempt<Hop>(`GET ${path} (h2)`);
    a.run('request', () => {
      const session: ClientHttp2Session = h2Connect(url.origin, { createConnection: () => tls });
      a.onSettle(() => session.destroy());
      session.on('error', a.guard('session error', (e: Error) => a.reject(e)));
      session.on('close', a.guard('session close', () => a.reject(new Error('connection closed before the response'))));
      const h = h2RequestHeaders(headers);
      h[h2c.HTTP2_HEADER_METHOD] = 'GET';
      h[h2c.HTTP2_HEADER_PATH] = path;
      if (host !== undefined) h[h2c.HTTP2_HEADER_AUTHORITY] = host;
      const stream: ClientHttp2Stream = session.request(h, { endStream: true, signal });
      stream.on('error', a.guard('stream error', (e: Error) => a.reject(e)));
      let responded = false;
      stream.on(
        'close',
        a.guard('stream close', () => {
          if (!responded) a.reject(new Error(`stream closed before the response (code ${stream.rstCode ?? '?'})`));
        }),
      );
      stream.on(
        'response',
        a.guard('response', (rh) => {
          responded = true;
          const status = Number(rh[h2c.HTTP2_HEADER_STATUS] ?? 0);
          const location = headerText(rh['location']);
          void readAtMost(stream, MAX_PROBE_BODY).then(
            a.guard('body', ({ body, truncated }: BodyRead) => {
              if (truncated) this.bodyLimit('http', `probe ${originalPath}`);
              a.resolve({ status, location, body });
            }),
          );
        }),
      );
    });
    return a.promise;
  }

  async grpc(action: GrpcAction, timeout: number, userAgent: string | undefined, originalPath = ''): Promise<ProbeReply> {
    return withDeadline(timeout, async (signal) => {
      try {
        const servingStatus = await this.withSource((local) => this.grpcCheck(action, local, userAgent, timeout, signal, originalPath));
        return { status: servingStatus === SERVING ? 200 : 500 };
      } catch (e) {
        const msg = signal.aborted ? `grpc request not finished within timeout: ${timeout}ms` : errText(e);
        this.o.log.error(`${msg}${originalPath ? `, original URL path = ${originalPath}` : ''}`);
        return { status: 500 };
      }
    });
  }

  private async grpcCheck(
    action: GrpcAction,
    localAddress: string | undefined,
    userAgent: string | undefined,
    timeout: number,
    signal: AbortSignal,
    originalPath: string,
  ): Promise<number> {
    const host = this.o.destination;
    const sock = await this.dial(host, action.port, localAddress, signal);
    const a = new Attempt<number>(`grpc probe to ${joinHostPort(host, action.port)}`);
    a.onSettle(() => sock.destroy());
    a.run('request', () => {
      const session = h2Connect(`http://${joinHostPort(host, action.port)}`, { createConnection: () => sock });
      a.onSettle(() => session.destroy());
      const onAbort = (): void => a.reject(new Error('timeout'));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      a.onSettle(() => signal.removeEventListener('abort', onAbort));
      session.on('error', a.guard('session error', (e: Error) => a.reject(new Error(`Failed to create grpc connection to probe app: ${errText(e)}`))));
      const stream = session.request({
        [h2c.HTTP2_HEADER_METHOD]: 'POST',
        [h2c.HTTP2_HEADER_PATH]: '/grpc.health.v1.Health/Check',
        [h2c.HTTP2_HEADER_SCHEME]: 'http',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': grpcTimeoutHeader(timeout),
        'user-agent': userAgent ?? 'meshagent-probe',
      });
      const reader = new GrpcResponseReader();
      let grpcStatus: string | undefined;
      let grpcMessage = '';
      let httpStatus = '';
      let contentType: string | undefined;
      const takeStatus = (h: Record<string, unknown>): void => {
        const st = headerText(h['grpc-status']);
        if (st !== undefined) grpcStatus = st;
        const m = headerText(h['grpc-message']);
        if (m !== undefined) grpcMessage = decodeGrpcMessage(m);
      };
      stream.on(
        'response',
        a.guard('response', (h) => {
          httpStatus = headerText(h[h2c.HTTP2_HEADER_STATUS]) ?? '';
          contentType = headerText(h['content-type']);
          takeStatus(h);
        }),
      );
      stream.on('trailers', a.guard('trailers', (h) => takeStatus(h)));
      stream.on(
        'data',
        a.guard('data', (c: Buffer) => {
          if (reader.push(c)) return;
          const err = reader.error!;
          if (err.limit) this.bodyLimit('grpc', `grpc probe ${originalPath}`);
          a.reject(new Error(`grpc probe failed: code 8: ${err.message}`));
        }),
      );
      stream.on('error', a.guard('stream error', (e: Error) => a.reject(new Error(`grpc probe failed: ${errText(e)}`))));
      stream.on(
        'close',
        a.guard('stream close', () => {
          // grpc-go's reading: a response is gRPC by its content-type (then its HTTP status is not looked at)
          if (contentType === undefined || !isGrpcContentType(contentType)) {
            const why = contentType === undefined ? 'malformed header: missing HTTP content-type' : `transport: received unexpected content-type ${JSON.stringify(contentType)}`;
            return a.reject(new Error(`grpc probe failed: unexpected HTTP status code received from server: ${httpStatus || '(none)'}; ${why}`));
          }
          if (grpcStatus === undefined) return a.reject(new Error('grpc probe failed: server closed the stream without sending trailers'));
          const code = parseGrpcStatus(grpcStatus);
          if (code === undefined) return a.reject(new Error(`grpc probe failed: transport: malformed grpc-status: ${JSON.stringify(grpcStatus)}`));
          if (code !== 0) {
            if (code === 12) return a.reject(new Error(`server does not implement the grpc health protocol (grpc.health.v1.Health): ${grpcMessage}`));
            if (code === 4) return a.reject(new Error(`grpc request not finished within timeout: ${grpcMessage}`));
            return a.reject(new Error(`grpc probe failed: code ${code}: ${grpcMessage}`));
          }
          try {
            a.resolve(decodeHealthResponse(reader.message()));
          } catch (e) {
            a.reject(new Error(`grpc probe failed: ${errText(e)}`));
          }
        }),
      );
      stream.end(frame(encodeHealthRequest(action.service)));
    });
    return a.promise;
  }
}

// --- grpc.health.v1 wire format (two one-field messages; encoded by hand) ---

export const SERVING = 1;

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** `HealthCheckRequest { string service = 1; }` */
export function encodeHealthRequest(service: string): Buffer {
  if (!service) return Buffer.alloc(0);
  const s = Buffer.from(service, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), varint(s.length), s]);
}

function readVarint(b: Buffer, pos: number): [number, number] {
  const start = pos;
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= b.length) throw new Error(`HealthCheckResponse (${b.length} bytes): truncated varint at byte ${start}`);
    const byte = b[pos++]!;
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 63) throw new Error(`HealthCheckResponse (${b.length} bytes): varint too long at byte ${start}`);
  }
}

/** `HealthCheckResponse { ServingStatus status = 1; }` => the status (0 when absent). */
export function decodeHealthResponse(b: Buffer): number {
  let pos = 0;
  let status = 0;
  while (pos < b.length) {
    const at = pos;
    const [key, p1] = readVarint(b, pos);
    pos = p1;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      const [v, p2] = readVarint(b, pos);
      pos = p2;
      if (field === 1) status = v;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, p2] = readVarint(b, pos);
      pos = p2 + len;
    } else throw new Error(`HealthCheckResponse (${b.length} bytes): unsupported wire type ${wire} at byte ${at}`);
    if (pos > b.length) throw new Error(`HealthCheckResponse (${b.length} bytes): truncated field ${field} at byte ${at}`);
  }
  return status;
}

/** gRPC length-prefixed message framing (uncompressed). */
export function frame(msg: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** The first message of a whole response body (tests and tools; the probe reads with GrpcResponseReader). */
export function unframe(b: Buffer): Buffer {
  const r = new GrpcResponseReader(Number.MAX_SAFE_INTEGER);
  r.push(b.subarray(0, 5 + (b.length >= 5 ? b.readUInt32BE(1) : 0)));
  return r.message();
}
