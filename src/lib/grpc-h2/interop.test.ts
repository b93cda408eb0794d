// The raw gRPC layer against grpc-js as the peer: grpc-js clients call our server, our client calls a
// grpc-js server. (Envoy and istiod are the peers of the agent's tests; these pin the gRPC rules alone.)
import assert from 'node:assert/strict';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  Client,
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  status,
  type ClientDuplexStream,
  type ServerDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { GrpcConnection, unaryCall, type ClientCallListener } from './client.js';
import { createGrpcH2Server, type ServerCall } from './server.js';
import { Code, type CallStatus } from './status.js';

const id = (b: Buffer): Buffer => b;
const ECHO = '/test.Echo/Stream';

function listen(s: NetServer): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)));
}

void describe('grpc-js client -> our server', () => {
  let net: NetServer;
  let port: number;
  const cancelled: string[] = [];
  const invalid: CallStatus[] = [];
  const seenMetadata: string[] = [];
  const srv = createGrpcH2Server({
    maxRecvBytes: 1024,
    routes: {
      [ECHO]: (call: ServerCall) => {
        seenMetadata.push(String(call.headers['x-tenant'] ?? ''));
        call.start({
          onMessage: (m) => {
            const text = m.toString();
            if (text === 'fail') call.end(Code.FAILED_PRECONDITION, 'nope: 100% [wrong] (très)');
            else call.write(Buffer.from(`echo:${text}`));
          },
          onHalfClose: () => call.end(Code.OK),
          onCancel: (why) => cancelled.push(why),
          onInvalid: (st) => invalid.push(st),
        });
      },
    },
  });
  let client: Client;
  before(async () => {
    net = createNetServer((sock) => srv.adopt(sock));
    port = await listen(net);
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await srv.shutdown(1000);
    net.close();
  });

  function stream(md = new Metadata()): ClientDuplexStream<Buffer, Buffer> {
    return client.makeBidiStreamRequest(ECHO, id, id, md);
  }
  function statusOf(s: ClientDuplexStream<Buffer, Buffer>): Promise<{ code: number; details: string; got: string[] }> {
    const got: string[] = [];
    s.on('data', (b: Buffer) => got.push(b.toString()));
    return new Promise((resolve) => {
      s.on('error', () => undefined);
      s.on('status', (st: { code: number; details: string }) => resolve({ code: st.code, details: st.details, got }));
    });
  }

  test('messages are echoed in order and a half-close ends the call with OK; metadata arrives', async () => {
    const md = new Metadata();
    md.set('x-tenant', 'blue');
    const s = stream(md);
    const done = statusOf(s);
    s.write(Buffer.from('a'));
    s.write(Buffer.from('b'));
    s.end();
    const st = await done;
    assert.equal(st.code, status.OK);
    assert.deepEqual(st.got, ['echo:a', 'echo:b']);
    assert.ok(seenMetadata.includes('blue'));
  });

  test('a status with text outside printable ASCII reaches the client unchanged', async () => {
    const s = stream();
    const done = statusOf(s);
    s.write(Buffer.from('fail'));
    const st = await done;
    assert.equal(st.code, status.FAILED_PRECONDITION);
    assert.equal(st.details, 'nope: 100% [wrong] (très)');
  });

  test('an unknown method is UNIMPLEMENTED', async () => {
    const st = await new Promise<ServiceError | null>((resolve) => client.makeUnaryRequest('/test.Echo/Nope', id, id, Buffer.alloc(0), (err) => resolve(err)));
    assert.equal(st?.code, status.UNIMPLEMENTED);
    assert.match(st?.details ?? '', /\/test\.Echo\/Nope/);
  });

  test('an oversized request ends its call with RESOURCE_EXHAUSTED and is reported to the handler', async () => {
    const s = stream();
    const done = statusOf(s);
    s.write(Buffer.alloc(2000));
    const st = await done;
    assert.equal(st.code, status.RESOURCE_EXHAUSTED);
    assert.match(st.details, /larger than max \(2000 vs\. 1024\)/);
    assert.equal(invalid.at(-1)?.code, Code.RESOURCE_EXHAUSTED);
  });

  test('a client that cancels is reported as a cancellation', async () => {
    const s = stream();
    const done = statusOf(s);
    s.write(Buffer.from('x'));
    await new Promise((r) => s.once('data', r));
    const before = cancelled.length;
    s.cancel();
    await done;
    for (let i = 0; i < 50 && cancelled.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(cancelled.length, before + 1);
  });
});

void describe('our client -> grpc-js server', () => {
  let server: Server;
  let port: number;
  const gotMetadata: Record<string, unknown>[] = [];
  before(async () => {
    server = new Server();
    server.addService(
      {
        Stream: { path: ECHO, requestStream: true, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
        Unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
        Slow: { path: '/test.Echo/Slow', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
      },
      {
        Stream: (call: ServerDuplexStream<Buffer, Buffer>) => {
          gotMetadata.push(call.metadata.getMap());
          call.on('data', (b: Buffer) => {
            const n = Number(b.toString());
            if (n === -1) {
              call.emit('error', { code: status.PERMISSION_DENIED, details: 'denied', metadata: new Metadata() });
              return;
            }
            for (let i = 0; i < n; i++) call.write(Buffer.from(`m${i}`));
            call.end();
          });
        },
        Unary: (call: { request: Buffer }, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.from(`got ${call.request.length}`)),
        Slow: () => undefined, // never answers
      },
    );
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  });
  after(() => {
    server.forceShutdown();
  });

  function collect(conn: GrpcConnection, first: Buffer, md = {}): { listener: ClientCallListener; messages: string[]; status: Promise<CallStatus>; call: ReturnType<GrpcConnection['call']> } {
    const messages: string[] = [];
    let resolve!: (s: CallStatus) => void;
    const status = new Promise<CallStatus>((r) => (resolve = r));
    const listener: ClientCallListener = { onMessage: (m) => messages.push(m.toString()), onStatus: resolve };
    const call = conn.call(ECHO, md, { maxRecvBytes: 1024 }, listener);
    call.sendMessage(first, () => undefined);
    return { listener, messages, status, call };
  }

  test('one message per startRead: the rest wait (flow control), then the status comes after the last', async () => {
    const conn = new GrpcConnection({ address: `127.0.0.1:${port}`, tls: null });
    try {
      const c = collect(conn, Buffer.from('3'), { ClusterID: 'Kubernetes', 'x-id-bin': Buffer.from([0, 1, 2]) });
      c.call.startRead();
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(c.messages, ['m0'], 'only the message asked for');
      let ended = false;
      void c.status.then(() => (ended = true));
      c.call.startRead();
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(c.messages, ['m0', 'm1']);
      assert.equal(ended, false, 'no status while a message is still unread');
      c.call.startRead();
      c.call.startRead();
      assert.equal((await c.status).code, Code.OK);
      assert.deepEqual(c.messages, ['m0', 'm1', 'm2']);
      assert.equal(conn.state, 'READY');
      assert.equal(gotMetadata.at(-1)?.clusterid, 'Kubernetes');
      assert.deepEqual(gotMetadata.at(-1)?.['x-id-bin'], Buffer.from([0, 1, 2]));
    } finally {
      conn.close();
    }
  });

  test("the server's error status (trailers-only) is the call's status", async () => {
    const conn = new GrpcConnection({ address: `127.0.0.1:${port}`, tls: null });
    try {
      const c = collect(conn, Buffer.from('-1'));
      c.call.startRead();
      const st = await c.status;
      assert.equal(st.code, Code.PERMISSION_DENIED);
      assert.equal(st.details, 'denied');
    } finally {
      conn.close();
    }
  });

  test('a response over the limit ends the call with RESOURCE_EXHAUSTED', async () => {
    const conn = new GrpcConnection({ address: `127.0.0.1:${port}`, tls: null });
    try {
      const st = await unaryCall(conn, '/test.Echo/Unary', {}, Buffer.alloc(10), { maxRecvBytes: 3 }).then(
        () => assert.fail('no response expected'),
        (e: CallStatus) => e,
      );
      assert.equal(st.code, Code.RESOURCE_EXHAUSTED);
      assert.equal((await unaryCall(conn, '/test.Echo/Unary', {}, Buffer.alloc(10), { maxRecvBytes: 100 })).toString(), 'got 10');
    } finally {
      conn.close();
    }
  });

  test('a deadline ends an unanswered call with DEADLINE_EXCEEDED', async () => {
    const conn = new GrpcConnection({ address: `127.0.0.1:${port}`, tls: null });
    try {
      const st = await unaryCall(conn, '/test.Echo/Slow', {}, Buffer.alloc(1), { maxRecvBytes: 100, deadline: Date.now() + 100 }).then(
        () => assert.fail('no response expected'),
        (e: CallStatus) => e,
      );
      assert.equal(st.code, Code.DEADLINE_EXCEEDED);
    } finally {
      conn.close();
    }
  });

  test('an address nothing listens on: UNAVAILABLE naming the error, and the connection is not usable', async () => {
    const net = createNetServer();
    const deadPort = await listen(net);
    await new Promise((r) => net.close(r));
    const conn = new GrpcConnection({ address: `127.0.0.1:${deadPort}`, tls: null });
    try {
      const st = await unaryCall(conn, '/test.Echo/Unary', {}, Buffer.alloc(1), { maxRecvBytes: 100 }).then(
        () => assert.fail('no response expected'),
        (e: CallStatus) => e,
      );
      assert.equal(st.code, Code.UNAVAILABLE);
      assert.match(st.details, /ECONNREFUSED/);
      await assert.rejects(conn.whenReady(), /ECONNREFUSED/);
      assert.equal(conn.usable, false);
    } finally {
      conn.close();
    }
  });

  test('a malformed address is refused with a message naming it', () => {
    assert.throws(() => new GrpcConnection({ address: 'istiod', tls: null }), /address "istiod": expected host:port/);
  });
});
