// Runs the application probes that the injector rewrote to :15020/app-health/... (HTTP, TCP, gRPC health), the
// way kubelet would, but from the agent: connections leave from 127.0.0.6 (::6 for IPv6) so the capture rules
// let them bypass Envoy. Every probe is bounded by its timeoutSeconds (Kubernetes' default 1s when unset).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { connect as h2Connect, constants as h2c, type ClientHttp2Session } from 'node:http2';
import { isIP } from 'node:net';
import type { Logger } from '../lib/log.js';
import type { AppProber, GrpcAction, HttpGetAction } from './config.js';

export const MAX_PROBE_BODY = 10 * 1024;
const MAX_REDIRECTS = 10;
const DEFAULT_TIMEOUT_S = 1;

export interface ProbeReply {
  readonly status: number;
  readonly body?: Buffer;
}

export interface IncomingProbe {
  /** The Host header kubelet sent to the status port. */
  readonly host: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

export interface AppProbeRunnerOptions {
  /** Where the app listens: the pod IP (or `localhost` with REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION). */
  readonly destination: string;
  /** Bound as the connection's source: 127.0.0.6 or ::6; undefined to let the kernel choose. */
  readonly sourceAddress: string | undefined;
  /** The status server's port (its bound port once listening). */
  readonly statusPort: () => number;
  /** The `probes` scope. */
  readonly log: Logger;
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

function joinHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function timeoutMs(p: AppProber): number {
  return (p.timeoutSeconds > 0 ? p.timeoutSeconds : DEFAULT_TIMEOUT_S) * 1000;
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

interface Hop {
  status: number;
  location: string | undefined;
  body: Buffer;
}

function readAtMost(stream: NodeJS.ReadableStream & { destroy(): void }, max: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks).subarray(0, max));
    };
    stream.on('data', (c: Buffer) => {
      chunks.push(c);
      size += c.length;
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

/** Per-server probe runner; remembers whether the bypass source address can be bound here. */
export class AppProbeRunner {
  private sourceUsable: boolean;
  private warned = false;

  constructor(private readonly o: AppProbeRunnerOptions) {
    this.sourceUsable = o.sourceAddress !== undefined;
  }

  async run(prober: AppProber, incoming: IncomingProbe, originalPath: string): Promise<ProbeReply> {
    switch (prober.kind) {
      case 'httpGet':
        return this.http(prober.httpGet, timeoutMs(prober), incoming, originalPath);
      case 'tcpSocket':
        return this.tcp(prober.tcpSocket.port, timeoutMs(prober));
      case 'grpc':
        return this.grpc(prober.grpc, timeoutMs(prober), incoming.headers['user-agent']);
    }
  }

  private source(): string | undefined {
    return this.sourceUsable ? this.o.sourceAddress : undefined;
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

  private dial(host: string, port: number, localAddress: string | undefined, signal: AbortSignal): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host, port, ...(localAddress ? { localAddress } : {}) });
      const onAbort = (): void => {
        sock.destroy();
        reject(new Error(`dial tcp ${joinHostPort(host, port)}: i/o timeout`));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      sock.once('connect', () => {
        signal.removeEventListener('abort', onAbort);
        resolve(sock);
      });
      sock.once('error', (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      });
    });
  }

  async tcp(port: number, timeout: number): Promise<ProbeReply> {
    const signal = AbortSignal.timeout(timeout);
    try {
      const sock = await this.withSource((local) => this.dial(this.o.destination, port, local, signal));
      sock.end();
      sock.destroySoon();
      return { status: 200 };
    } catch (e) {
      this.o.log.debug(`TCP probe to port ${port} failed: ${errText(e)}`);
      return { status: 500 };
    }
  }

  async http(action: HttpGetAction, timeout: number, incoming: IncomingProbe, originalPath: string): Promise<ProbeReply> {
    const signal = AbortSignal.timeout(timeout);
    const headers = forwardedHeaders(incoming.headers);
    const host = appHostHeader(incoming.host, this.o.statusPort(), action.port);
    const scheme = action.scheme === 'HTTPS' ? 'https' : 'http';
    let url = new URL(`${scheme}://${joinHostPort(this.o.destination, action.port)}${action.path}`);
    const firstHostname = url.hostname;
    try {
      for (let requests = 1; ; requests++) {
        const hop = await this.withSource((local) => this.httpOnce(url, headers, host, local, signal));
        if (hop.status < 300 || hop.status >= 400) return { status: hop.status, body: hop.body };
        // A redirect: followed only to the same host (max 10 requests), as kubelet does; else it counts as success.
        if (hop.location === undefined) return { status: 200 };
        const next = new URL(hop.location, url);
        if (next.hostname !== firstHostname) return { status: 200 };
        if (requests >= MAX_REDIRECTS) throw new Error('stopped after 10 redirects');
        url = next;
      }
    } catch (e) {
      const msg = signal.aborted ? `timeout after ${timeout}ms` : errText(e);
      this.o.log.error(`Request to probe app failed: ${msg}, original URL path = ${originalPath}\napp URL path = ${action.path}`);
      return { status: 500 };
    }
  }

  private async httpOnce(
    url: URL,
    headers: OutgoingHttpHeaders,
    host: string | undefined,
    localAddress: string | undefined,
    signal: AbortSignal,
  ): Promise<Hop> {
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const path = `${url.pathname}${url.search}`;
    if (url.protocol === 'https:') {
      const tls = await this.tlsDial(hostname, port, localAddress, signal);
      if (tls.alpnProtocol === 'h2') return this.h2Get(tls, url, path, headers, host, signal);
      return this.h1Get({ createConnection: () => tls }, hostname, port, path, headers, host, signal);
    }
    return this.h1Get(localAddress ? { localAddress } : {}, hostname, port, path, headers, host, signal);
  }

  private tlsDial(host: string, port: number, localAddress: string | undefined, signal: AbortSignal): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      // kubelet skips verification for HTTPS probes; HTTP/2 is offered as kubelet does.
      const sock = tlsConnect({
        host,
        port,
        ...(localAddress ? { localAddress } : {}),
        ...(isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: false,
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      const onAbort = (): void => {
        sock.destroy();
        reject(new Error('timeout'));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      sock.once('secureConnect', () => {
        signal.removeEventListener('abort', onAbort);
        resolve(sock);
      });
      sock.once('error', (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      });
    });
  }

  private h1Get(
    conn: { localAddress?: string; createConnection?: () => Socket },
    hostname: string,
    port: number,
    path: string,
    headers: OutgoingHttpHeaders,
    host: string | undefined,
    signal: AbortSignal,
  ): Promise<Hop> {
    return new Promise((resolve, reject) => {
      const h: OutgoingHttpHeaders = { ...headers };
      if (host !== undefined) h['host'] = host;
      const req = httpRequest(
        // `agent: false` would make Node ignore `createConnection` (it builds a fresh Agent instead)
        { hostname, port, path, method: 'GET', headers: h, signal, ...(conn.createConnection ? conn : { agent: false, ...conn }) },
        (res: IncomingMessage) => {
          const status = res.statusCode ?? 0;
          const location = res.headers.location;
          void readAtMost(res, MAX_PROBE_BODY).then((body) => {
            res.destroy();
            resolve({ status, location, body });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  private h2Get(
    tls: TLSSocket,
    url: URL,
    path: string,
    headers: OutgoingHttpHeaders,
    host: string | undefined,
    signal: AbortSignal,
  ): Promise<Hop> {
    return new Promise((resolve, reject) => {
      const session: ClientHttp2Session = h2Connect(url.origin, { createConnection: () => tls });
      const close = (): void => {
        session.destroy();
      };
      session.on('error', (e) => {
        close();
        reject(e);
      });
      const h: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(headers)) if (k !== 'connection') h[k] = v;
      h[h2c.HTTP2_HEADER_METHOD] = 'GET';
      h[h2c.HTTP2_HEADER_PATH] = path;
      if (host !== undefined) h[h2c.HTTP2_HEADER_AUTHORITY] = host;
      const stream = session.request(h, { endStream: true, signal });
      stream.on('error', (e) => {
        close();
        reject(e);
      });
      stream.on('response', (rh) => {
        const status = Number(rh[h2c.HTTP2_HEADER_STATUS] ?? 0);
        const loc = rh['location'];
        void readAtMost(stream, MAX_PROBE_BODY).then((body) => {
          close();
          resolve({ status, location: Array.isArray(loc) ? loc[0] : loc, body });
        });
      });
    });
  }

  async grpc(action: GrpcAction, timeout: number, userAgent: string | undefined): Promise<ProbeReply> {
    const signal = AbortSignal.timeout(timeout);
    try {
      const servingStatus = await this.withSource((local) => this.grpcCheck(action, local, userAgent, timeout, signal));
      return { status: servingStatus === SERVING ? 200 : 500 };
    } catch (e) {
      const msg = signal.aborted ? `grpc request not finished within timeout: ${timeout}ms` : errText(e);
      this.o.log.error(msg);
      return { status: 500 };
    }
  }

  private async grpcCheck(
    action: GrpcAction,
    localAddress: string | undefined,
    userAgent: string | undefined,
    timeout: number,
    signal: AbortSignal,
  ): Promise<number> {
    const host = this.o.destination;
    const sock = await this.dial(host, action.port, localAddress, signal);
    return new Promise<number>((resolve, reject) => {
      const session = h2Connect(`http://${joinHostPort(host, action.port)}`, { createConnection: () => sock });
      let settled = false;
      const done = (err: Error | undefined, v?: number): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        session.destroy();
        if (err) reject(err);
        else resolve(v!);
      };
      const onAbort = (): void => done(new Error('timeout'));
      signal.addEventListener('abort', onAbort, { once: true });
      session.on('error', (e) => done(new Error(`Failed to create grpc connection to probe app: ${errText(e)}`)));
      const stream = session.request({
        [h2c.HTTP2_HEADER_METHOD]: 'POST',
        [h2c.HTTP2_HEADER_PATH]: '/grpc.health.v1.Health/Check',
        [h2c.HTTP2_HEADER_SCHEME]: 'http',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${Math.max(1, Math.ceil(timeout))}m`,
        'user-agent': userAgent ?? 'meshagent-probe',
      });
      const chunks: Buffer[] = [];
      let grpcStatus: string | undefined;
      let grpcMessage = '';
      let httpStatus = 0;
      const takeStatus = (h: Record<string, unknown>): void => {
        if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
        if (h['grpc-message'] !== undefined) grpcMessage = decodeURIComponent(String(h['grpc-message']));
      };
      stream.on('response', (h) => {
        httpStatus = Number(h[h2c.HTTP2_HEADER_STATUS] ?? 0);
        takeStatus(h);
      });
      stream.on('trailers', (h) => takeStatus(h));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (e) => done(new Error(`grpc probe failed: ${errText(e)}`)));
      stream.on('close', () => {
        if (httpStatus !== 200) return done(new Error(`grpc probe failed: HTTP status ${httpStatus}`));
        if (grpcStatus === undefined) return done(new Error('grpc probe failed: no grpc-status'));
        if (grpcStatus !== '0') {
          const code = Number(grpcStatus);
          if (code === 12) return done(new Error(`server does not implement the grpc health protocol (grpc.health.v1.Health): ${grpcMessage}`));
          if (code === 4) return done(new Error(`grpc request not finished within timeout: ${grpcMessage}`));
          return done(new Error(`grpc probe failed: code ${code}: ${grpcMessage}`));
        }
        try {
          done(undefined, decodeHealthResponse(unframe(Buffer.concat(chunks))));
        } catch (e) {
          done(new Error(`grpc probe failed: ${errText(e)}`));
        }
      });
      stream.end(frame(encodeHealthRequest(action.service)));
    });
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
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const byte = b[pos++]!;
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 63) throw new Error('varint too long');
  }
}

/** `HealthCheckResponse { ServingStatus status = 1; }` => the status (0 when absent). */
export function decodeHealthResponse(b: Buffer): number {
  let pos = 0;
  let status = 0;
  while (pos < b.length) {
    const [key, p1] = readVarint(b, pos);
    pos = p1;
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      const [v, p2] = readVarint(b, pos);
      pos = p2;
      if (field === 1) status = v;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, p2] = readVarint(b, pos);
      pos = p2 + len;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (pos > b.length) throw new Error('truncated message');
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

export function unframe(b: Buffer): Buffer {
  if (b.length < 5) throw new Error('empty gRPC response');
  if (b[0] !== 0) throw new Error('compressed gRPC response not supported');
  const len = b.readUInt32BE(1);
  if (b.length < 5 + len) throw new Error('truncated gRPC response');
  return b.subarray(5, 5 + len);
}
