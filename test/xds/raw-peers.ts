// Byte-level peers for the xDS proxy tests: an istiod stand-in and an Envoy stand-in that carry raw
// message bytes (no protobuf decoding, so any bytes can be sent either way), a Go-style refusing istiod
// that writes `grpc-message` exactly as grpc-go does, and an HTTP/2 client that reads the proxy's raw
// status headers or stops reading mid-response.
import { execFileSync } from 'node:child_process';
import { connect as h2connect, createServer as h2createServer, constants as h2c, type ClientHttp2Session, type ClientHttp2Stream, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import {
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  makeGenericClientConstructor,
  type ClientDuplexStream,
  type ServerDuplexStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { Writer } from '../../src/lib/protowire.js';
import { DELTA_METHOD, SOTW_METHOD } from '../../src/xds/types.js';
import { summarizeRequest } from '../../src/xds/wire.js';

const identity = (b: Buffer): Buffer => b;
const method = (path: string) => ({
  path,
  requestStream: true,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const RAW_ADS = { StreamAggregatedResources: method(SOTW_METHOD), DeltaAggregatedResources: method(DELTA_METHOD) };

/** Bounded wait on a condition re-checked whenever `wake` runs. */
class Waiters {
  private readonly list: Array<() => void> = [];
  wake(): void {
    for (const w of this.list.splice(0)) w();
  }
  until<T>(what: string, pick: () => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.list.indexOf(check);
        if (i >= 0) this.list.splice(i, 1);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
      }, timeoutMs);
      const check = (): void => {
        let v: T | undefined;
        try {
          v = pick();
        } catch (e) {
          clearTimeout(timer);
          reject(e as Error);
          return;
        }
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
        } else this.list.push(check);
      };
      check();
    });
  }
}

// ---- messages ----

/** A SotW DiscoveryResponse (fields 1 version, 2 resources, 4 type_url, 5 nonce) with `n` resources of `size` bytes. */
export function sotwResponse(typeUrl: string, nonce: string, version = '1', n = 1, size = 8): Buffer {
  const w = new Writer().string(1, version);
  for (let i = 0; i < n; i++) w.message(2, new Writer().string(1, typeUrl).bytes(2, Buffer.alloc(size, i & 0xff)));
  return w.string(4, typeUrl).string(5, nonce).finish();
}

/** A Delta DeltaDiscoveryResponse (1 system_version, 2 resources{name=3, resource=2}, 4 type_url, 5 nonce). */
export function deltaResponse(typeUrl: string, nonce: string, n = 1, size = 8): Buffer {
  const w = new Writer().string(1, 'v1');
  for (let i = 0; i < n; i++) w.message(2, new Writer().string(3, `r${i}`).message(2, new Writer().string(1, typeUrl).bytes(2, Buffer.alloc(size, 1))));
  return w.string(4, typeUrl).string(5, nonce).finish();
}

/** A SotW DiscoveryRequest (3 resource_names, 4 type_url, 5 response_nonce). */
export function sotwRequest(typeUrl: string, nonce = ''): Buffer {
  return new Writer().string(4, typeUrl).string(5, nonce).finish();
}

/** A Delta DeltaDiscoveryRequest (2 type_url, 6 response_nonce). */
export function deltaRequest(typeUrl: string, nonce = ''): Buffer {
  return new Writer().string(2, typeUrl).string(6, nonce).finish();
}

/** gRPC's percent-encoding of `grpc-message`, as grpc-go writes it: only bytes outside 0x20-0x7E, and '%', are escaped. */
export function grpcSpecEncode(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

// ---- istiod stand-ins ----

export interface RawUpstreamStream {
  readonly id: number;
  readonly delta: boolean;
  readonly call: ServerDuplexStream<Buffer, Buffer>;
  readonly requests: Buffer[];
  readonly metadata: Metadata;
  ended?: StatusObject | 'cancelled';
  write(buf: Buffer): Promise<void>;
}

export interface RawUpstreamOptions {
  /** Called for every request; default: answer each valid request that carries no nonce with a small response of its type. */
  readonly onRequest?: (s: RawUpstreamStream, req: Buffer) => void;
}

/** An istiod that speaks ADS with raw bytes: it records what it receives and sends whatever it is told to. */
export class RawUpstream {
  readonly streams: RawUpstreamStream[] = [];
  private readonly waiters = new Waiters();
  private server: Server | undefined;
  private port = 0;
  private nextId = 0;
  private nonce = 0;

  constructor(private readonly opts: RawUpstreamOptions = {}) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Client connections to this istiod now established (counted by the kernel: `ss`). */
  connections(): number {
    const out = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${this.port} )`], { encoding: 'utf8' });
    return out.split('\n').filter((l) => l.trim() !== '').length;
  }

  /** Streams not yet ended. */
  get open(): RawUpstreamStream[] {
    return this.streams.filter((s) => !s.ended);
  }

  async start(): Promise<this> {
    const server = new Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
    server.addService(RAW_ADS, {
      StreamAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => this.onStream(call, false),
      DeltaAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => this.onStream(call, true),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
    return this;
  }

  private onStream(call: ServerDuplexStream<Buffer, Buffer>, delta: boolean): void {
    const s: RawUpstreamStream = {
      id: ++this.nextId,
      delta,
      call,
      requests: [],
      metadata: call.metadata,
      write: (buf) =>
        new Promise<void>((resolve, reject) => {
          if (call.destroyed || call.writableEnded) {
            reject(new Error('upstream stream already ended'));
            return;
          }
          call.write(buf, (err?: Error | null) => (err ? reject(err) : resolve()));
        }),
    };
    this.streams.push(s);
    call.on('data', (req: Buffer) => {
      s.requests.push(req);
      (this.opts.onRequest ?? ((st, r) => this.answer(st, r)))(s, req);
      this.waiters.wake();
    });
    call.on('cancelled', () => {
      s.ended ??= 'cancelled';
      this.waiters.wake();
    });
    call.on('error', () => undefined);
    call.on('close', () => {
      s.ended ??= 'cancelled';
      this.waiters.wake();
    });
    this.waiters.wake();
  }

  /** The default answer: a response of the requested type for every request that is not an ACK. */
  answer(s: RawUpstreamStream, req: Buffer): void {
    let typeUrl: string;
    let nonce: string;
    try {
      ({ typeUrl, nonce } = summarizeRequest(req, s.delta));
    } catch {
      return;
    }
    if (nonce !== '') return;
    const n = `n${++this.nonce}`;
    s.write(s.delta ? deltaResponse(typeUrl, n) : sotwResponse(typeUrl, n)).catch(() => undefined);
  }

  /** Ends a stream with a status. */
  end(s: RawUpstreamStream, code: number, details: string): void {
    s.ended = { code, details, metadata: new Metadata() };
    s.call.emit('error', { code, details, metadata: new Metadata() });
  }

  waitFor<T>(what: string, pick: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    return this.waiters.until(what, () => pick() || undefined, timeoutMs);
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    s?.forceShutdown();
  }
}

/**
 * An istiod that refuses every ADS stream as a grpc-go server does: a trailers-only response with
 * `grpc-status` and `grpc-message` percent-encoded per the gRPC spec (spaces, brackets, parentheses stay as they are).
 */
export async function startRefusingUpstream(code: number, message: string): Promise<{ address: string; refused: number; stop(): Promise<void> }> {
  const state = { refused: 0 };
  const server: Http2Server = h2createServer();
  server.on('stream', (stream: ServerHttp2Stream) => {
    state.refused++;
    stream.on('error', () => undefined);
    stream.respond(
      {
        [h2c.HTTP2_HEADER_STATUS]: 200,
        [h2c.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        'grpc-status': String(code),
        'grpc-message': grpcSpecEncode(message),
      },
      { endStream: true },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    get refused() {
      return state.refused;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // close() waits for sessions; the proxy's connections go when its channels close
        setTimeout(resolve, 500).unref();
      }),
  };
}

// ---- Envoy stand-ins ----

/** An ADS client on the proxy's socket that sends and receives raw bytes. */
export class RawAdsClient {
  readonly received: Buffer[] = [];
  finalStatus: StatusObject | undefined;
  private readonly waiters = new Waiters();
  private readonly client: InstanceType<ReturnType<typeof makeGenericClientConstructor>>;
  readonly stream: ClientDuplexStream<Buffer, Buffer>;

  constructor(
    udsPath: string,
    readonly delta: boolean,
  ) {
    const Ctor = makeGenericClientConstructor(RAW_ADS, 'RawAds');
    this.client = new Ctor(`unix:${udsPath}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.use_local_subchannel_pool': 1 });
    const call = (this.client as unknown as Record<string, () => ClientDuplexStream<Buffer, Buffer>>)[delta ? 'DeltaAggregatedResources' : 'StreamAggregatedResources']!;
    this.stream = call.call(this.client);
    this.stream.on('data', (b: Buffer) => {
      this.received.push(b);
      this.waiters.wake();
    });
    this.stream.on('status', (s: StatusObject) => {
      this.finalStatus = s;
      this.waiters.wake();
    });
    this.stream.on('error', (e: ServiceError) => {
      this.finalStatus ??= { code: e.code, details: e.details, metadata: e.metadata };
      this.waiters.wake();
    });
  }

  send(buf: Buffer): void {
    if (!this.finalStatus) this.stream.write(buf);
  }

  /** The next message received (in order), or a rejection if the stream ends first. */
  next(timeoutMs = 10_000): Promise<Buffer> {
    return this.waiters.until(
      'a response',
      () => {
        const b = this.received.shift();
        if (b) return b;
        if (this.finalStatus) throw new Error(`stream ended (${this.finalStatus.code} ${this.finalStatus.details}) while waiting for a response`);
        return undefined;
      },
      timeoutMs,
    );
  }

  status(timeoutMs = 10_000): Promise<StatusObject> {
    return this.waiters.until('the stream status', () => this.finalStatus, timeoutMs);
  }

  get ended(): boolean {
    return this.finalStatus !== undefined;
  }

  close(): void {
    if (!this.finalStatus) this.stream.cancel();
    this.client.close();
  }
}

/** A gRPC frame: compressed flag 0, 32-bit length, message. */
export function grpcFrame(msg: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

/**
 * An ADS stream opened with node:http2 on the proxy's socket, to see the raw `grpc-status`/`grpc-message`
 * the proxy sends, or to stop reading so a response stays unwritten, then break the connection.
 */
export class H2AdsStream {
  readonly session: ClientHttp2Session;
  readonly req: ClientHttp2Stream;
  /** Response headers then trailers, merged (a trailers-only response has its status in the headers). */
  readonly headers: IncomingHttpHeaders = {};
  private readonly waiters = new Waiters();
  closed = false;
  bytesRead = 0;
  private readonly socket: Socket;

  constructor(udsPath: string, delta: boolean, opts: { read?: boolean } = {}) {
    const socket = netConnect(udsPath);
    socket.on('error', () => undefined);
    this.socket = socket;
    this.session = h2connect('http://localhost', { createConnection: () => socket });
    this.session.on('error', () => undefined);
    this.req = this.session.request({
      [h2c.HTTP2_HEADER_METHOD]: 'POST',
      [h2c.HTTP2_HEADER_PATH]: delta ? DELTA_METHOD : SOTW_METHOD,
      [h2c.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      te: 'trailers',
    });
    this.req.on('error', () => undefined);
    this.req.on('response', (h) => {
      Object.assign(this.headers, h);
      this.waiters.wake();
    });
    this.req.on('trailers', (h) => {
      Object.assign(this.headers, h);
      this.waiters.wake();
    });
    this.req.on('close', () => {
      this.closed = true;
      this.waiters.wake();
    });
    if (opts.read === false) this.req.pause();
    else
      this.req.on('data', (d: Buffer) => {
        this.bytesRead += d.length;
        this.waiters.wake();
      });
  }

  send(msg: Buffer): void {
    this.req.write(grpcFrame(msg));
  }

  /** Resolves with the raw grpc-status and grpc-message headers once they arrive. */
  grpcStatus(timeoutMs = 10_000): Promise<{ code: number; message: string | undefined }> {
    return this.waiters.until(
      'grpc-status',
      () => {
        const code = this.headers['grpc-status'];
        if (code === undefined) {
          if (this.closed) throw new Error('stream closed without grpc-status');
          return undefined;
        }
        const m = this.headers['grpc-message'];
        return { code: Number(code), message: Array.isArray(m) ? m.join(',') : m };
      },
      timeoutMs,
    );
  }

  /** Resolves once the response headers arrived (the proxy has begun answering). */
  responded(timeoutMs = 10_000): Promise<void> {
    return this.waiters.until('response headers', () => (this.headers[':status'] !== undefined ? true : undefined), timeoutMs).then(() => undefined);
  }

  /** Breaks the connection abruptly (as a crashing Envoy would). */
  destroy(): void {
    this.socket.destroy();
    this.session.destroy();
  }
}

/**
 * Makes the next write of a response to a client of a Unix-socket server (the proxy's Envoy side) fail at
 * the HTTP/2 layer, as a broken pipe would: grpc-js then ends the call itself (INTERNAL) and never completes
 * the write it was given. Returns a function that removes the fault.
 */
export async function failNextUdsResponseWrite(): Promise<{ fired(): boolean; restore(): void }> {
  const proto = await serverHttp2StreamPrototype();
  const hadOwn = Object.prototype.hasOwnProperty.call(proto, 'write');
  const orig = proto.write as (this: unknown, ...args: unknown[]) => boolean;
  let armed = true;
  let fired = false;
  proto.write = function (this: { session?: { socket?: { remotePort?: number } } }, ...args: unknown[]): boolean {
    const chunk = args[0];
    if (armed && this.session?.socket?.remotePort === undefined && Buffer.isBuffer(chunk) && chunk.length > 5) {
      armed = false;
      fired = true;
      const cb = args.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
      const err = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' });
      process.nextTick(() => cb?.(err));
      return false;
    }
    return orig.apply(this, args);
  };
  return {
    fired: () => fired,
    restore() {
      if (hadOwn) proto.write = orig;
      else delete proto.write;
    },
  };
}

/** ServerHttp2Stream.prototype (node:http2 does not export the class): taken from a throwaway exchange. */
async function serverHttp2StreamPrototype(): Promise<{ write?: unknown }> {
  const server = h2createServer();
  const got = new Promise<{ write?: unknown }>((resolve) =>
    server.once('stream', (st: ServerHttp2Stream) => {
      resolve(Object.getPrototypeOf(st) as { write?: unknown });
      st.respond({ [h2c.HTTP2_HEADER_STATUS]: 200 }, { endStream: true });
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = h2connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  client.on('error', () => undefined);
  const req = client.request({ [h2c.HTTP2_HEADER_PATH]: '/' });
  req.on('error', () => undefined);
  req.resume();
  const proto = await got;
  client.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return proto;
}

