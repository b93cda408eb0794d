// A gRPC client connection for raw messages on node:http2: the agent's connections to istiod (xDS upstream,
// CA). One HTTP/2 connection per object, dialled at once and never re-dialled (a caller that needs a new
// connection makes a new object, as pilot-agent dials one per Envoy stream). Messages stay Buffers; a call
// hands out one response message per `startRead()`, and stops reading the stream until asked for the next,
// so HTTP/2 flow control holds istiod back while the previous message is being relayed.
//
// Why not grpc-js's channel: between creating a channel and its first connection attempt grpc-js spends
// 25-35 ms in its resolver and load-balancing machinery on a busy start-up, and loading it is the largest
// module of the agent; the relay needs none of its features (no retries, no balancing, one address).
import { constants as h2c, connect as h2Connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, isIP } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type SecureContext } from 'node:tls';
import { MessageReader, messagePrefix } from './frames.js';
import { Code, codeForHttpStatus, decodeGrpcMessage, parseGrpcStatus, statusForReset, type CallStatus } from './status.js';

export type ConnectivityState = 'CONNECTING' | 'READY' | 'TRANSIENT_FAILURE' | 'SHUTDOWN';

export interface GrpcConnectionOptions {
  /** host:port (`[v6]:port` for an IPv6 literal). */
  readonly address: string;
  /** TLS, or null for plaintext. */
  readonly tls: { readonly secureContext: SecureContext; readonly serverName: string } | null;
  /** `:authority` of every call (default: the address). */
  readonly authority?: string;
  /** Ping this often (0/undefined: never); no answer within the timeout closes the connection. */
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** Initial HTTP/2 stream and connection receive window (default 1 MiB, as pilot-agent toward istiod). */
  readonly windowBytes?: number;
}

export interface ClientCallListener {
  /** One response message (after each `startRead()`). */
  onMessage(message: Buffer): void;
  /** The call's end, once: after every message read was delivered. */
  onStatus(status: CallStatus): void;
}

export interface CallOptions {
  /** Largest response message accepted. */
  readonly maxRecvBytes: number;
  /** Absolute deadline (ms since the epoch); the call ends with DEADLINE_EXCEEDED then. */
  readonly deadline?: number;
}

/** Metadata: text values, or Buffers for `-bin` keys (sent base64). */
export type CallMetadata = Readonly<Record<string, string | Buffer>>;

/** Splits host:port as Go's net.SplitHostPort does. */
export function splitHostPort(address: string): { host: string; port: number } {
  const m = /^\[([^\]]*)\]:(\d+)$/.exec(address) ?? /^([^:[\]]*):(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`address ${JSON.stringify(address)}: expected host:port`);
  return { host: m[1]!, port };
}

/** Why HTTP/2 (or gRPC) refuses this metadata entry, or undefined when it can be sent. */
export function metadataProblem(key: string, value: string | Buffer): string | undefined {
  const k = key.toLowerCase();
  if (!/^[0-9a-z_.-]+$/.test(k)) return 'not a valid metadata key';
  if (k.startsWith('grpc-') || k === 'te' || k === 'content-type' || k === 'user-agent') return 'a reserved key';
  if (k.endsWith('-bin')) return undefined;
  const text = typeof value === 'string' ? value : value.toString('latin1');
  if (!/^[\x20-\x7e]*$/.test(text)) return 'the value has characters outside printable ASCII';
  return undefined;
}

/** Metadata as HTTP/2 headers (keys lower-cased, `-bin` values base64); entries metadataProblem refuses are left out. */
function metadataHeaders(md: CallMetadata): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [rawKey, v] of Object.entries(md)) {
    if (metadataProblem(rawKey, v) !== undefined) continue;
    const key = rawKey.toLowerCase();
    out[key] = key.endsWith('-bin') ? (typeof v === 'string' ? Buffer.from(v) : v).toString('base64') : typeof v === 'string' ? v : v.toString('latin1');
  }
  return out;
}

const USER_AGENT = 'meshagent-grpc';

/** One HTTP/2 connection to a gRPC server. */
export class GrpcConnection {
  private readonly session: ClientHttp2Session;
  private st: ConnectivityState = 'CONNECTING';
  private lastError: Error | undefined;
  private readonly watchers = new Set<(s: ConnectivityState) => void>();
  private keepalive: NodeJS.Timeout | undefined;
  private readonly authority: string;
  private readonly scheme: string;

  constructor(private readonly o: GrpcConnectionOptions) {
    const { host, port } = splitHostPort(o.address);
    this.authority = o.authority ?? o.address;
    this.scheme = o.tls ? 'https' : 'http';
    const tls = o.tls;
    const window = o.windowBytes ?? 1024 * 1024;
    this.session = h2Connect(`${this.scheme}://${o.address}`, {
      settings: { enablePush: false, initialWindowSize: window },
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      createConnection: () => {
        if (!tls) return netConnect({ host, port, noDelay: true });
        const sni = isIP(tls.serverName) === 0 ? tls.serverName : undefined;
        return tlsConnect({
          host,
          port,
          secureContext: tls.secureContext,
          ALPNProtocols: ['h2'],
          ...(sni ? { servername: sni } : {}),
          checkServerIdentity: (_host, cert) => checkServerIdentity(tls.serverName, cert),
        });
      },
    });
    const s = this.session;
    s.on('connect', () => {
      try {
        s.setLocalWindowSize(window);
      } catch {
        // the default window then
      }
      this.setState('READY');
      this.startKeepalive();
    });
    s.on('error', (err: Error) => {
      this.lastError = err;
    });
    s.on('goaway', () => {
      if (this.st !== 'SHUTDOWN') this.setState('TRANSIENT_FAILURE');
    });
    s.on('close', () => {
      if (this.keepalive) clearInterval(this.keepalive);
      if (this.st !== 'SHUTDOWN') this.setState('TRANSIENT_FAILURE');
    });
  }

  get state(): ConnectivityState {
    return this.st;
  }

  /** Still able to carry new calls. */
  get usable(): boolean {
    return this.st === 'CONNECTING' || this.st === 'READY';
  }

  /** Calls `fn` at every state change until it returns true (or the connection shuts down). */
  watch(fn: (s: ConnectivityState) => boolean | void): void {
    const w = (s: ConnectivityState): void => {
      if (fn(s) === true || s === 'SHUTDOWN') this.watchers.delete(w);
    };
    this.watchers.add(w);
  }

  /** Resolves once connected; rejects with the connection's error when it fails first. */
  whenReady(): Promise<void> {
    if (this.st === 'READY') return Promise.resolve();
    if (!this.usable) return Promise.reject(this.failure());
    return new Promise<void>((resolve, reject) => {
      this.watch((s) => {
        if (s === 'READY') resolve();
        else reject(this.failure());
        return true;
      });
    });
  }

  private failure(): Error {
    return new Error(this.lastError ? `connection failed: ${this.lastError.message}` : 'the connection closed');
  }

  private setState(s: ConnectivityState): void {
    if (this.st === s) return;
    this.st = s;
    for (const w of [...this.watchers]) w(s);
  }

  private startKeepalive(): void {
    const every = this.o.keepaliveTimeMs;
    if (!every || every <= 0) return;
    const timeoutMs = this.o.keepaliveTimeoutMs ?? 20_000;
    this.keepalive = setInterval(() => {
      const s = this.session;
      if (s.destroyed || s.closed) return;
      const timer = setTimeout(() => {
        this.lastError = new Error('keepalive ping not answered');
        s.destroy();
      }, timeoutMs);
      timer.unref();
      try {
        s.ping((err) => {
          clearTimeout(timer);
          if (err && !s.destroyed) {
            this.lastError = err;
            s.destroy();
          }
        });
      } catch {
        clearTimeout(timer);
      }
    }, every);
    this.keepalive.unref();
  }

  /** Starts a call; its events go to `listener` (never synchronously). */
  call(path: string, metadata: CallMetadata, opts: CallOptions, listener: ClientCallListener): ClientCall {
    return new ClientCall(this, path, metadata, opts, listener);
  }

  /** @internal */
  openStream(path: string, md: OutgoingHttpHeaders, deadline: number | undefined): ClientHttp2Stream {
    const headers: OutgoingHttpHeaders = {
      ...md,
      [h2c.HTTP2_HEADER_METHOD]: 'POST',
      [h2c.HTTP2_HEADER_PATH]: path,
      [h2c.HTTP2_HEADER_AUTHORITY]: this.authority,
      [h2c.HTTP2_HEADER_SCHEME]: this.scheme,
      [h2c.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [h2c.HTTP2_HEADER_TE]: 'trailers',
      [h2c.HTTP2_HEADER_USER_AGENT]: USER_AGENT,
    };
    if (deadline !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(deadline - Date.now()))}m`;
    return this.session.request(headers, { endStream: false });
  }

  /** @internal the connection's last error, for a call's status */
  describeFailure(): string | undefined {
    return this.lastError?.message;
  }

  /** Closes the connection (open calls end with UNAVAILABLE). Idempotent. */
  close(): void {
    if (this.st === 'SHUTDOWN') return;
    this.setState('SHUTDOWN');
    this.watchers.clear();
    if (this.keepalive) clearInterval(this.keepalive);
    if (!this.session.destroyed) this.session.destroy();
  }
}

/** One call on a GrpcConnection. */
export class ClientCall {
  private readonly stream: ClientHttp2Stream | undefined;
  private readonly reader: MessageReader;
  private readonly queue: Buffer[] = [];
  private reads = 0;
  private status: CallStatus | undefined;
  private statusDelivered = false;
  private trailersStatus: CallStatus | undefined;
  private httpStatus = 0;
  private streamError: Error | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly conn: GrpcConnection,
    path: string,
    metadata: CallMetadata,
    opts: CallOptions,
    private readonly listener: ClientCallListener,
  ) {
    this.reader = new MessageReader(opts.maxRecvBytes, (m) => this.queue.push(m));
    let stream: ClientHttp2Stream;
    try {
      if (!conn.usable) throw new Error(conn.describeFailure() ?? 'the connection is closed');
      stream = conn.openStream(path, metadataHeaders(metadata), opts.deadline);
    } catch (e) {
      this.stream = undefined;
      this.end({ code: Code.UNAVAILABLE, details: `No connection established. Last error: ${(e as Error).message}` });
      return;
    }
    this.stream = stream;
    stream.pause();
    stream.on('error', (err: Error) => {
      this.streamError ??= err;
    });
    stream.on('response', (h: IncomingHttpHeaders) => {
      this.httpStatus = Number(h[h2c.HTTP2_HEADER_STATUS] ?? 0);
      // trailers-only response: the status is in the headers
      if (h['grpc-status'] !== undefined) this.trailersStatus = statusFrom(h);
    });
    stream.on('trailers', (h: IncomingHttpHeaders) => {
      this.trailersStatus = statusFrom(h);
    });
    stream.on('data', (chunk: Buffer) => {
      if (this.status) return;
      const err = this.reader.push(chunk);
      if (err) {
        this.cancel(err.code, err.details);
        return;
      }
      this.deliver();
    });
    // the server's side ended (its status came with it): the call is over; close ours too
    stream.on('end', () => {
      if (this.status) return;
      this.end(this.finalStatus());
      if (!stream.destroyed) stream.close(h2c.NGHTTP2_NO_ERROR);
    });
    stream.on('close', () => this.onClose());
    if (opts.deadline !== undefined) {
      this.deadlineTimer = setTimeout(() => this.cancel(Code.DEADLINE_EXCEEDED, 'Deadline exceeded'), Math.max(0, opts.deadline - Date.now()));
      this.deadlineTimer.unref();
    }
  }

  /** Asks for the next response message. */
  startRead(): void {
    this.reads++;
    this.deliver();
  }

  private deliver(): void {
    while (this.reads > 0 && this.queue.length > 0) {
      this.reads--;
      const m = this.queue.shift()!;
      this.listener.onMessage(m);
    }
    if (this.status && this.queue.length === 0) {
      this.deliverStatus();
      return;
    }
    const s = this.stream;
    if (!s || s.destroyed) return;
    // read on only while a message is wanted and none is waiting
    if (this.reads > 0 && this.queue.length === 0) s.resume();
    else s.pause();
  }

  /** Sends one request message; `done` runs once HTTP/2 has taken it, or with an error. */
  sendMessage(message: Buffer, done: (err?: Error) => void): void {
    const s = this.stream;
    if (!s || this.status || s.destroyed || s.writableEnded) {
      queueMicrotask(() => done(new Error('the call has ended')));
      return;
    }
    s.write(messagePrefix(message.length));
    s.write(message, (err?: Error | null) => done(err ?? undefined));
  }

  /** No more request messages. */
  halfClose(): void {
    const s = this.stream;
    if (s && !s.destroyed && !s.writableEnded) s.end();
  }

  /** Ends the call from this side with `code` (RST_STREAM CANCEL to the server); the listener gets that status. */
  cancel(code: number = Code.CANCELLED, details = 'Cancelled on client'): void {
    if (this.status) return;
    this.queue.length = 0;
    this.end({ code, details });
    const s = this.stream;
    if (s && !s.destroyed) s.close(h2c.NGHTTP2_CANCEL);
  }

  private onClose(): void {
    if (this.status) return;
    this.end(this.finalStatus());
  }

  private finalStatus(): CallStatus {
    const rst = this.stream?.rstCode;
    if (this.trailersStatus) {
      if (this.trailersStatus.code === Code.OK && this.reader.pendingBytes > 0) return { code: Code.INTERNAL, details: 'the stream ended inside a message' };
      return this.trailersStatus;
    }
    if (this.httpStatus !== 0 && this.httpStatus !== 200) return { code: codeForHttpStatus(this.httpStatus), details: `Received HTTP status code ${this.httpStatus}` };
    // the connection's error, or the stream's (a stream is destroyed before its connection reports the error)
    const cause = this.conn.describeFailure() ?? this.streamError?.message;
    if (this.httpStatus === 0 && cause) return { code: Code.UNAVAILABLE, details: `No connection established. Last error: ${cause}` };
    if (cause) return { code: Code.UNAVAILABLE, details: `Connection dropped: ${cause}` };
    if (rst !== undefined && rst !== h2c.NGHTTP2_NO_ERROR) return statusForReset(rst);
    if (this.httpStatus === 0) return { code: Code.UNAVAILABLE, details: 'Connection dropped before the server answered' };
    return { code: Code.INTERNAL, details: 'Received RST_STREAM with code 0 (the server ended the stream without a status)' };
  }

  private end(st: CallStatus): void {
    if (this.status) return;
    this.status = st;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    // messages already read are still handed out when asked for, then the status
    queueMicrotask(() => this.deliver());
  }

  private deliverStatus(): void {
    if (this.statusDelivered || !this.status) return;
    this.statusDelivered = true;
    this.listener.onStatus(this.status);
  }
}

function statusFrom(h: IncomingHttpHeaders): CallStatus {
  const raw = h['grpc-status'];
  const code = parseGrpcStatus(Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? ''));
  const msg = h['grpc-message'];
  const details = decodeGrpcMessage(Array.isArray(msg) ? (msg[0] ?? '') : (msg ?? ''));
  if (code === undefined) return { code: Code.UNKNOWN, details: `malformed grpc-status ${JSON.stringify(raw)}${details ? `: ${details}` : ''}` };
  return { code, details };
}

/** One request, one response (the CA's CreateCertificate). Rejects with the call's status. */
export function unaryCall(conn: GrpcConnection, path: string, metadata: CallMetadata, request: Buffer, opts: CallOptions): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    let response: Buffer | undefined;
    let extra = false;
    const call = conn.call(
      path,
      metadata,
      opts,
      {
        onMessage(m) {
          if (response) extra = true;
          else response = Buffer.from(m);
          call.startRead();
        },
        onStatus(st) {
          if (st.code !== Code.OK) reject(Object.assign(new Error(st.details), st));
          else if (!response) reject(Object.assign(new Error('received no response message'), { code: Code.INTERNAL, details: 'received no response message' }));
          else if (extra) reject(Object.assign(new Error('received more than one response message'), { code: Code.INTERNAL, details: 'received more than one response message' }));
          else resolve(response);
        },
      },
    );
    call.sendMessage(request, () => undefined);
    call.halfClose();
    call.startRead();
  });
}
