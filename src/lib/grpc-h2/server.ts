// A gRPC server for raw messages on node:http2, for the agent's local sockets (XDS and SDS): Envoy connects,
// the agent answers. Messages stay Buffers (the callers read the few fields they need), a written message
// is its 5-byte prefix and the caller's Buffer (never copied into a frame), and a write completes once
// HTTP/2 flow control let it go, so a caller writing one message at a time holds at most one.
//
// Why not grpc-js's server: it is the largest part of the agent's CPU while Envoy starts (loading it,
// its per-connection and per-message work), and it copies every message into a frame. HTTP/2 itself stays
// with Node's nghttp2; this file only maps gRPC's few rules onto it.
//
// Everything from the socket is untrusted: a malformed or oversized message ends that call with a status,
// HTTP/2 errors end the connection, and nothing here throws into the caller.
import { constants as h2c, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { MessageReader, messagePrefix } from './frames.js';
import { Code, encodeGrpcMessage, isGrpcContentType, type CallStatus } from './status.js';

/** What a handler hears from one call. */
export interface ServerCallListener {
  /** One request message (a view that may point into a larger buffer: copy it to keep it past the next event). */
  onMessage(message: Buffer): void;
  /** The client half-closed (sent END_STREAM): no more messages. */
  onHalfClose(): void;
  /** The call ended without this side's status: the client reset it or its connection went away. */
  onCancel(reason: string): void;
  /** A request broke the rules (too large, compressed): the call ends with this status right after. */
  onInvalid(status: CallStatus): void;
}

/** One incoming call. */
export class ServerCall {
  private listener: ServerCallListener | undefined;
  private headersSent = false;
  private statusSent = false;
  private closed = false;
  private readonly reader: MessageReader;
  /** Callbacks of writes not completed yet (failed when the stream closes first). */
  private readonly pending = new Set<(err?: Error) => void>();

  constructor(
    private readonly stream: ServerHttp2Stream,
    readonly path: string,
    readonly headers: IncomingHttpHeaders,
    maxRecvBytes: number,
  ) {
    this.reader = new MessageReader(maxRecvBytes, (m) => this.listener?.onMessage(m));
    stream.on('error', () => undefined); // 'close' follows and reports it
    stream.on('close', () => this.onClose());
  }

  /** The call was cancelled or its status sent. */
  get ended(): boolean {
    return this.closed || this.statusSent;
  }

  /** Starts delivering events. */
  start(listener: ServerCallListener): void {
    this.listener = listener;
    this.stream.on('data', (chunk: Buffer) => {
      if (this.statusSent) return;
      const err = this.reader.push(chunk);
      if (err) {
        this.listener?.onInvalid(err);
        this.end(err.code, err.details);
      }
    });
    this.stream.on('end', () => {
      // A reset also ends the readable side, and Node reports it as an end before the stream's close:
      // looked at a turn later, a reset is a closed stream (a cancellation, reported by 'close').
      setImmediate(() => {
        if (!this.statusSent && !this.closed && !this.stream.closed) this.listener?.onHalfClose();
      });
    });
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond({ [h2c.HTTP2_HEADER_STATUS]: 200, [h2c.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc' }, { waitForTrailers: true });
  }

  /**
   * Sends one message; `done` runs once HTTP/2 has taken it (flow control included), or with an error when
   * the call ended first. The buffer must not change until then.
   */
  write(message: Buffer, done?: (err?: Error) => void): void {
    if (this.ended || this.stream.destroyed) {
      const err = new Error('the call has ended');
      if (done) queueMicrotask(() => done(err));
      return;
    }
    this.sendHeaders();
    let settled = false;
    const settle = (err?: Error | null): void => {
      if (settled) return;
      settled = true;
      this.pending.delete(settle);
      done?.(err ?? undefined);
    };
    this.pending.add(settle);
    this.stream.write(messagePrefix(message.length));
    this.stream.write(message, settle);
  }

  /** Ends the call with a status (trailers; a trailers-only response when nothing was sent). Idempotent. */
  end(code: number, details = ''): void {
    if (this.ended) return;
    this.statusSent = true;
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    const trailers: Record<string, string> = { 'grpc-status': String(code) };
    if (details) trailers['grpc-message'] = encodeGrpcMessage(details);
    try {
      if (!this.headersSent) {
        this.headersSent = true;
        s.respond({ [h2c.HTTP2_HEADER_STATUS]: 200, [h2c.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', ...trailers }, { endStream: true });
      } else {
        s.once('wantTrailers', () => {
          try {
            s.sendTrailers(trailers);
          } catch {
            s.close(h2c.NGHTTP2_INTERNAL_ERROR);
          }
        });
        s.end();
      }
    } catch {
      s.close(h2c.NGHTTP2_INTERNAL_ERROR);
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pending]) p(new Error('the stream closed before the write completed'));
    if (this.statusSent) return;
    const rst = this.stream.rstCode;
    this.listener?.onCancel(rst === h2c.NGHTTP2_CANCEL || rst === undefined ? 'client disconnected' : `stream reset with code ${rst}`);
  }
}

export type ServerHandler = (call: ServerCall) => void;

export interface GrpcH2ServerOptions {
  /** Handlers by path (`/package.Service/Method`); any other path gets UNIMPLEMENTED. */
  readonly routes: Readonly<Record<string, ServerHandler>>;
  /** Largest request message accepted; a larger one ends its call with RESOURCE_EXHAUSTED. */
  readonly maxRecvBytes: number;
  readonly maxConcurrentStreams?: number;
  /** Ping each connection this often (0/undefined: never); no answer within the timeout closes it. */
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
}

export interface GrpcH2Server {
  /** Serves one accepted connection (plaintext HTTP/2: the sockets are local and owner-only). */
  adopt(socket: Socket): void;
  /** Connections being served. */
  readonly connections: number;
  /** Sends GOAWAY on every connection and waits for their calls to end, then closes what is left after `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>;
}

function headerText(v: string | string[] | undefined): string {
  return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
}

export function createGrpcH2Server(o: GrpcH2ServerOptions): GrpcH2Server {
  const sessions = new Set<ServerHttp2Session>();
  const h2: Http2Server = createServer({
    settings: { maxConcurrentStreams: o.maxConcurrentStreams ?? 100_000 },
    // the callers bound what they hold (one message in flight per call); Node's default of 10 MB would
    // refuse new streams while a large response is being written
    maxSessionMemory: Number.MAX_SAFE_INTEGER,
  });
  h2.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('error', () => undefined); // 'close' follows
    let keepalive: NodeJS.Timeout | undefined;
    if (o.keepaliveTimeMs && o.keepaliveTimeMs > 0) {
      const timeoutMs = o.keepaliveTimeoutMs ?? 20_000;
      keepalive = setInterval(() => {
        if (session.destroyed) return;
        const timer = setTimeout(() => session.destroy(), timeoutMs);
        timer.unref();
        try {
          session.ping((err) => {
            clearTimeout(timer);
            if (err) session.destroy();
          });
        } catch {
          clearTimeout(timer);
        }
      }, o.keepaliveTimeMs);
      keepalive.unref();
    }
    session.on('close', () => {
      if (keepalive) clearInterval(keepalive);
      sessions.delete(session);
    });
  });
  h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined);
    try {
      const method = headerText(headers[h2c.HTTP2_HEADER_METHOD]);
      const path = headerText(headers[h2c.HTTP2_HEADER_PATH]);
      if (method !== 'POST') {
        stream.respond({ [h2c.HTTP2_HEADER_STATUS]: 405 }, { endStream: true });
        return;
      }
      if (!isGrpcContentType(headerText(headers[h2c.HTTP2_HEADER_CONTENT_TYPE]))) {
        stream.respond({ [h2c.HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
        return;
      }
      const handler = Object.hasOwn(o.routes, path) ? o.routes[path] : undefined;
      const call = new ServerCall(stream, path, headers, o.maxRecvBytes);
      if (!handler) {
        call.end(Code.UNIMPLEMENTED, `The server does not implement the method ${path}`);
        return;
      }
      handler(call);
    } catch {
      if (!stream.destroyed) stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
    }
  });

  return {
    adopt(socket) {
      h2.emit('connection', socket);
      socket.resume();
    },
    get connections() {
      return sessions.size;
    },
    shutdown(timeoutMs) {
      return new Promise<void>((resolve) => {
        if (sessions.size === 0) {
          resolve();
          return;
        }
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
          resolve();
        }, timeoutMs);
        timer.unref();
        let left = sessions.size;
        for (const s of [...sessions]) {
          const done = (): void => {
            if (--left === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
          if (s.closed || s.destroyed) done();
          else {
            s.once('close', done);
            s.close();
          }
        }
      });
    },
  };
}
