// Property tests over the wire: a running status server (in-process) against upstreams and apps that answer
// anything fast-check makes up, and clients that send any request target.
//   - the merge: any bytes from Envoy and the app, any Content-Type, status, Accept, timeout header, gzip or
//     not: a 200 whose body is exactly the agent's text + Envoy's bytes + the app's bytes (those that answered);
//   - gRPC probes: any headers, trailers, grpc-status/grpc-message and body bytes: 200 exactly when grpc-go
//     would call the app SERVING, 500 otherwise, never a crash;
//   - HTTP probes: any status, Location and body size: kubelet's answer, the body capped at 10 KiB; any kubelet
//     headers to an h2 app: forwarded (connection-specific ones dropped);
//   - any request target: an answer that is never a 500.
// After each property, nothing is left open: server connections, requests, streams, app sessions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createH2Server, createSecureServer, type ServerHttp2Stream } from 'node:http2';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { memoryLogger } from '../../src/lib/log.js';
import { createAgentMetrics } from '../../src/lib/metrics.js';
import { FMT_TEXT, negotiateMetricsFormat, scrapeTimeoutMs } from '../../src/status/prom-merge.js';
import { createStatusServer, type StatusServer } from '../../src/status/server.js';
import { decodeHealthResponse, isGrpcContentType, parseGrpcStatus, MAX_GRPC_MESSAGE } from '../../src/status/app-probe.js';
import { eventually, grpcFrame, h2Server, localServer, openConnections, selfSigned } from './fixtures.js';

interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** GET returning the raw (gunzipped) bytes. */
function getRaw(url: string, headers: Record<string, string> = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false, signal: AbortSignal.timeout(10_000) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body = Buffer.concat(chunks);
        if (res.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function idle(status: StatusServer, what: string, extra: () => boolean = () => true): Promise<void> {
  await eventually(
    `${what}: nothing left open`,
    async () => {
      const f = status.inflight();
      return f.connections === 0 && f.requests === 0 && f.streams === 0 && extra() ? true : undefined;
    },
    5000,
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}: ${JSON.stringify(status.inflight())}`);
  });
}

const latin1Value = fc.array(fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f), { maxLength: 40 }).map((a) => String.fromCharCode(...a).trim());

// --- the merge ---

interface Source {
  mode: 'ok' | 'status' | 'reset';
  status: number;
  contentType: string;
  chunks: Uint8Array[];
}

const source: fc.Arbitrary<Source> = fc.record({
  mode: fc.constantFrom('ok', 'ok', 'ok', 'status', 'reset'),
  status: fc.constantFrom(201, 204, 301, 404, 500, 503),
  contentType: fc.oneof(
    fc.constantFrom('text/plain; version=0.0.4', 'application/openmetrics-text; version=1.0.0; charset=utf-8', 'application/openmetrics-text', 'application/openmetrics-text; version=2', ''),
    latin1Value,
  ),
  chunks: fc.array(fc.uint8Array({ maxLength: 8192 }), { maxLength: 5 }),
});

function serve(src: () => Source) {
  return (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    const s = src();
    res.on('error', () => undefined);
    if (s.mode === 'reset') {
      req.socket.destroy();
      return;
    }
    if (s.contentType) res.setHeader('content-type', s.contentType);
    res.writeHead(s.mode === 'ok' ? 200 : s.status);
    for (const c of s.chunks) res.write(c);
    res.end();
  };
}

void test('merge: any upstream bytes, types, statuses and any scrape headers give a 200 with exactly the sources that answered', async () => {
  let envoySrc: Source;
  let appSrc: Source;
  const envoy = await localServer(serve(() => envoySrc));
  const app = await localServer(serve(() => appSrc));
  const { log } = memoryLogger('default:error');
  const status = createStatusServer({
    log,
    metrics: createAgentMetrics({ processMetrics: false }),
    statusPort: 0,
    listenHost: '127.0.0.1',
    envoyPrometheusPort: envoy.port,
    scrapeHost: '127.0.0.1',
    prometheusAnnotations: JSON.stringify({ scrape: 'true', port: String(app.port), path: '/m' }),
  });
  await status.start();
  try {
    const base = `http://127.0.0.1:${status.port()}`;
    await fc.assert(
      fc.asyncProperty(
        source,
        source,
        fc.record({
          accept: fc.option(latin1Value, { nil: undefined }),
          timeout: fc.option(fc.oneof(latin1Value, fc.constantFrom('10', '16.1', '1e10', '+Inf', 'NaN', '0x1p4', '-1')), { nil: undefined }),
          gzip: fc.boolean(),
          query: fc.option(fc.stringMatching(/^[A-Za-z0-9=&%._~-]{0,20}$/), { nil: undefined }),
        }),
        async (e, a, q) => {
          // a deadline under 5s could cut an upstream off: not what this property is about
          fc.pre(q.timeout === undefined || (scrapeTimeoutMs(q.timeout) ?? 30_000) >= 5000);
          envoySrc = e;
          appSrc = a;
          const headers: Record<string, string> = {};
          if (q.accept !== undefined) headers['accept'] = q.accept;
          if (q.timeout !== undefined) headers['x-prometheus-scrape-timeout-seconds'] = q.timeout;
          if (q.gzip) headers['accept-encoding'] = 'gzip';
          const r = await getRaw(`${base}/stats/prometheus${q.query !== undefined ? `?${q.query}` : ''}`, headers);
          assert.equal(r.status, 200);
          const tail = Buffer.concat([...(e.mode === 'ok' ? e.chunks : []), ...(a.mode === 'ok' ? a.chunks : [])]);
          assert.ok(r.body.length >= tail.length && r.body.subarray(r.body.length - tail.length).equals(tail), 'Envoy then app bytes, verbatim, last');
          const agent = r.body.subarray(0, r.body.length - tail.length).toString('latin1');
          assert.match(agent, /^# HELP istio_agent_[\s\S]*istio_agent_scrapes_total \d+\n[\s\S]*\n$/);
          const ct = a.mode === 'ok' ? negotiateMetricsFormat(a.contentType || undefined) : FMT_TEXT;
          assert.equal(r.headers['content-type'], ct);
        },
      ),
      { numRuns: 120 },
    );
    await idle(status, 'merge');
  } finally {
    await status.close();
    await envoy.close();
    await app.close();
  }
});

// --- gRPC probes ---

interface GrpcAnswer {
  status: string;
  contentType: string | undefined;
  where: 'trailers' | 'headers' | 'none';
  grpcStatus: string;
  grpcMessage: string;
  body: Buffer;
  cuts: number[];
  end: 'end' | 'reset' | 'destroy';
}

const healthMessage = fc.oneof(
  fc.integer({ min: 0, max: 4 }).map((s) => Buffer.from([0x08, s])),
  fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 10 })).map(([s, pad]) => Buffer.concat([Buffer.from([0x12, pad.length]), Buffer.from(pad), Buffer.from([0x08, s])])),
);
const grpcBody = fc.oneof(
  healthMessage.map(grpcFrame),
  fc.tuple(healthMessage, healthMessage).map(([x, y]) => Buffer.concat([grpcFrame(x), grpcFrame(y)])),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 20 })).map(([flag, len, rest]) => {
    const h = Buffer.alloc(5);
    h[0] = flag;
    h.writeUInt32BE(len, 1);
    return Buffer.concat([h, Buffer.from(rest)]);
  }),
  fc.constant(Buffer.alloc(0)),
);
const grpcAnswer: fc.Arbitrary<GrpcAnswer> = fc.record({
  status: fc.constantFrom('200', '200', '200', '404', '500', '503'),
  contentType: fc.option(fc.oneof(fc.constantFrom('application/grpc', 'application/grpc+proto', 'application/grpc;x=y', 'application/grpcx', 'text/html', 'Application/grpc'), latin1Value), { nil: undefined }),
  where: fc.constantFrom('trailers', 'trailers', 'headers', 'none'),
  grpcStatus: fc.oneof(fc.constantFrom('0', '0', '1', '2', '4', '5', '12', '14', '00', '+0', '-0', '4294967296', ' 0', 'x', ''), fc.integer().map(String)),
  grpcMessage: latin1Value,
  body: grpcBody,
  cuts: fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 5 }),
  end: fc.constantFrom('end', 'end', 'end', 'reset', 'destroy'),
});

/** A SERVING answer, cut into random chunks. */
const servingAnswer: fc.Arbitrary<GrpcAnswer> = fc.record({
  status: fc.constant('200'),
  contentType: fc.constantFrom('application/grpc', 'application/grpc+proto'),
  where: fc.constant('trailers' as const),
  grpcStatus: fc.constantFrom('0', '+0', '00'),
  grpcMessage: latin1Value,
  body: fc.uint8Array({ maxLength: 6 }).map((pad) => grpcFrame(Buffer.concat([Buffer.from([0x12, pad.length]), Buffer.from(pad), Buffer.from([0x08, 0x01])]))),
  cuts: fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 5 }),
  end: fc.constant('end' as const),
});
/** Anything: SERVING answers, random ones, and SERVING ones with a few fields replaced by random ones. */
const anyGrpcAnswer: fc.Arbitrary<GrpcAnswer> = fc.oneof(
  servingAnswer,
  grpcAnswer,
  fc
    .tuple(servingAnswer, grpcAnswer, fc.subarray(['status', 'contentType', 'where', 'grpcStatus', 'body', 'end'] as const, { minLength: 1, maxLength: 2 }))
    .map(([good, other, keys]) => {
      const g: Record<string, unknown> = { ...good };
      for (const k of keys) g[k] = other[k];
      return g as unknown as GrpcAnswer;
    }),
);

/** grpc-go's verdict (the health client sees SERVING) for an answer. */
function serving(g: GrpcAnswer): boolean {
  if (g.end !== 'end') return false;
  if (g.contentType === undefined || !isGrpcContentType(g.contentType)) return false;
  if (g.where === 'none') return false;
  if (parseGrpcStatus(g.grpcStatus) !== 0) return false;
  if (g.where === 'headers') return false; // trailers-only: no message
  const b = g.body;
  if (b.length < 5 || b[0] !== 0) return false;
  const len = b.readUInt32BE(1);
  if (len > MAX_GRPC_MESSAGE || b.length !== 5 + len) return false;
  try {
    return decodeHealthResponse(b.subarray(5)) === 1;
  } catch {
    return false;
  }
}

/** grpc-go's decodeGrpcMessage over the wire bytes (a latin1 string), as a reference model. */
function goDecode(wire: string): string {
  const b = Buffer.from(wire, 'latin1');
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    const h = b.subarray(i + 1, i + 3).toString('latin1');
    if (c === 0x25 && i + 2 < b.length && /^[0-9a-fA-F]{2}$/.test(h)) {
      out.push(parseInt(h, 16));
      i += 2;
    } else out.push(c);
  }
  return Buffer.from(out).toString('utf8');
}

function answer(stream: ServerHttp2Stream, g: GrpcAnswer): void {
  const head: Record<string, string> = { ':status': g.status };
  if (g.contentType !== undefined) head['content-type'] = g.contentType;
  if (g.where === 'headers') {
    stream.respond({ ...head, 'grpc-status': g.grpcStatus, 'grpc-message': g.grpcMessage }, { endStream: true });
    return;
  }
  stream.respond(head, { waitForTrailers: g.where === 'trailers' });
  if (g.where === 'trailers') stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': g.grpcStatus, 'grpc-message': g.grpcMessage }));
  let pos = 0;
  for (const n of g.cuts) {
    if (pos >= g.body.length) break;
    stream.write(g.body.subarray(pos, pos + n));
    pos += n;
  }
  if (g.end === 'reset') {
    stream.write(g.body.subarray(pos));
    stream.close(2);
  } else if (g.end === 'destroy') stream.session?.destroy();
  else stream.end(g.body.subarray(pos));
}

void test('gRPC probe: any answer is 200 exactly when grpc-go would see SERVING, else 500; nothing crashes or stays open', async () => {
  let next: GrpcAnswer;
  const app = await h2Server(createH2Server(), (stream) => {
    stream.resume();
    stream.on('end', () => {
      try {
        answer(stream, next);
      } catch {
        stream.close(2);
      }
    });
  });
  const { log, lines } = memoryLogger('default:error');
  const status = createStatusServer({
    log,
    metrics: createAgentMetrics({ processMetrics: false }),
    statusPort: 0,
    listenHost: '127.0.0.1',
    noEnvoy: true,
    podIP: '127.0.0.1',
    kubeAppProbers: JSON.stringify({ '/app-health/g/livez': { grpc: { port: app.port }, timeoutSeconds: 5 } }),
  });
  const seen = { serving: 0, failed: 0 };
  await status.start();
  try {
    const url = `http://127.0.0.1:${status.port()}/app-health/g/livez`;
    await fc.assert(
      fc.asyncProperty(anyGrpcAnswer, async (g) => {
        next = g;
        lines.length = 0;
        const r = await getRaw(url, { 'user-agent': 'kube-probe/1.30' });
        const ok = serving(g);
        seen[ok ? 'serving' : 'failed']++;
        assert.equal(r.status, ok ? 200 : 500);
        // the guard around the handlers is a safety net: no handler ever needed it
        assert.ok(!lines.some((l) => l.includes('unexpected error in')), lines.join(''));
        // a gRPC error status (no message sent) is reported with its grpc-message decoded as grpc-go decodes it
        const code = parseGrpcStatus(g.grpcStatus);
        if (g.end === 'end' && (g.where === 'headers' || (g.where === 'trailers' && g.body.length === 0)) && g.contentType !== undefined && isGrpcContentType(g.contentType) && code !== undefined && ![0, 4, 12].includes(code)) {
          assert.ok(lines.some((l) => l.includes(`grpc probe failed: code ${code}: ${goDecode(g.grpcMessage)}`)), `${JSON.stringify(g.grpcMessage)}: ${lines.join('')}`);
        }
      }),
      { numRuns: 200 },
    );
    assert.ok(seen.serving > 0 && seen.failed > 0, JSON.stringify(seen));
    await idle(status, 'gRPC probes', () => app.openSessions() === 0);
  } finally {
    await status.close();
    await app.close();
  }
});

// --- HTTP probes ---

interface HttpAnswer {
  status: number;
  location: string | undefined;
  size: number;
}

const httpAnswer: fc.Arbitrary<HttpAnswer> = fc.record({
  status: fc.oneof(fc.integer({ min: 200, max: 599 }), fc.constantFrom(301, 302, 303, 307, 308)),
  location: fc.option(fc.constantFrom('/final', 'final', 'http://elsewhere.invalid/x', 'http://[', '//elsewhere.invalid/', '%zz', 'ftp://127.0.0.1/x', ''), { nil: undefined }),
  size: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 10_000, max: 40_000 })),
});

void test('HTTP probe: any status, Location and body size give kubelet\'s answer, the body capped at 10 KiB', async () => {
  let next: HttpAnswer;
  const app = await localServer((req, res) => {
    res.on('error', () => undefined);
    if (req.url === '/final') {
      res.end('final');
      return;
    }
    if (next.location !== undefined) res.setHeader('location', next.location);
    res.writeHead(next.status);
    res.end(Buffer.alloc(next.size, 0x61));
  });
  const { log, lines } = memoryLogger('default:debug');
  const metrics = createAgentMetrics({ processMetrics: false });
  const status = createStatusServer({
    log,
    metrics,
    statusPort: 0,
    listenHost: '127.0.0.1',
    noEnvoy: true,
    podIP: '127.0.0.1',
    kubeAppProbers: JSON.stringify({ '/app-health/h/livez': { httpGet: { path: '/start', port: app.port }, timeoutSeconds: 5 } }),
  });
  await status.start();
  try {
    const url = `http://127.0.0.1:${status.port()}/app-health/h/livez`;
    await fc.assert(
      fc.asyncProperty(httpAnswer, async (h) => {
        next = h;
        lines.length = 0;
        const r = await getRaw(url);
        assert.ok(!lines.some((l) => l.includes('unexpected error in')), lines.join(''));
        const noBody = h.status === 204 || h.status === 304;
        if (h.status < 300 || h.status >= 400) {
          assert.equal(r.status, h.status);
          assert.equal(r.body.length, noBody ? 0 : Math.min(h.size, 10 * 1024));
          return;
        }
        // a redirect: no Location => success; another host => success; same host => followed
        const loc = h.location;
        if (loc === undefined) return assert.deepEqual([r.status, r.body.length], [200, 0]);
        let target: URL | undefined;
        try {
          target = new URL(loc, `http://127.0.0.1:${app.port}/start`);
        } catch {
          target = undefined;
        }
        if (target === undefined) return assert.equal(r.status, 500);
        if (target.hostname !== '127.0.0.1') return assert.deepEqual([r.status, r.body.length], [200, 0]);
        if (target.protocol !== 'http:') return assert.equal(r.status, 500);
        if (target.pathname === '/final') return assert.deepEqual([r.status, r.body.toString()], [200, 'final']);
        // followed to a URL answering the same redirect again: a loop, failed after 10 requests
        assert.equal(r.status, 500);
      }),
      { numRuns: 150 },
    );
    await idle(status, 'HTTP probes');
    await eventually('the app to see every probe connection closed', async () => ((await openConnections(app.server)) === 0 ? true : undefined), 5000);
  } finally {
    await status.close();
    await app.close();
  }
});

void test('HTTPS probe over h2: any kubelet request headers are forwarded as HTTP/2 allows; no session is left open', async () => {
  const seen: Record<string, unknown>[] = [];
  const app = await h2Server(createSecureServer({ ...selfSigned(), allowHTTP1: true }), (stream, headers) => {
    seen.push(headers);
    stream.respond({ ':status': 200 });
    stream.end('secure');
  });
  const { log } = memoryLogger('default:error');
  const status = createStatusServer({
    log,
    metrics: createAgentMetrics({ processMetrics: false }),
    statusPort: 0,
    listenHost: '127.0.0.1',
    noEnvoy: true,
    podIP: '127.0.0.1',
    kubeAppProbers: JSON.stringify({ '/app-health/h2/livez': { httpGet: { path: '/', port: app.port, scheme: 'HTTPS' }, timeoutSeconds: 5 } }),
  });
  await status.start();
  try {
    const url = `http://127.0.0.1:${status.port()}/app-health/h2/livez`;
    const name = fc.oneof(
      fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
      fc.constantFrom('http2-settings', 'connection', 'keep-alive', 'upgrade', 'te', 'proxy-connection', 'host', 'user-agent', 'cookie', 'authorization'),
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(name, latin1Value, { maxKeys: 6 }), async (headers) => {
        // values for the hop to the status server itself must make sense to Node's HTTP/1 client
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(headers)) if (!['connection', 'upgrade', 'keep-alive', 'host', 'proxy-connection', 'te', 'transfer-encoding'].includes(k)) h[k] = v;
        if ('http2-settings' in headers) h['http2-settings'] = 'AAMAAABkAARAAAAAAAIAAAAA';
        const before = seen.length;
        const r = await getRaw(url, h);
        assert.deepEqual([r.status, r.body.toString()], [200, 'secure']);
        const got = seen[before]!;
        for (const k of Object.keys(h)) {
          if (k === 'http2-settings') assert.equal(got[k], undefined);
          else if (h[k] !== '') assert.equal(got[k], h[k], k);
        }
      }),
      { numRuns: 40 },
    );
    await idle(status, 'h2 probes', () => app.openSessions() === 0);
  } finally {
    await status.close();
    await app.close();
  }
});

// --- request targets ---

/** Sends a raw request line; resolves to the status code of the answer (0 when the connection just closed). */
function rawRequest(port: number, target: string): Promise<number> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, '127.0.0.1');
    let data = '';
    s.setTimeout(5000, () => s.destroy());
    s.on('error', () => undefined);
    s.on('connect', () => s.write(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1')));
    s.on('data', (c: Buffer) => (data += c.toString('latin1')));
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
  });
}

void test('request targets: any target is answered, never with a 500', async () => {
  const { log } = memoryLogger('default:error');
  const status = createStatusServer({ log, metrics: createAgentMetrics({ processMetrics: false }), statusPort: 0, listenHost: '127.0.0.1', noEnvoy: true });
  await status.start();
  try {
    const port = status.port()!;
    const chars = fc.oneof(
      fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
      fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)),
      fc.constantFrom('/', '%', '?', '#', '..', '//', 'app-health', 'healthz', 'ready', 'stats', 'prometheus'),
    );
    const target = fc.oneof(
      fc.array(chars, { minLength: 1, maxLength: 30 }).map((a) => a.join('')),
      fc.array(chars, { maxLength: 30 }).map((a) => `/${a.join('')}`),
      fc.constantFrom('//', '*', 'http://x/healthz/ready', 'http://[::1/', '/..//..', '/%', '/%zz?%', '//x/healthz/ready', 'a:b'),
    );
    await fc.assert(
      fc.asyncProperty(target, async (t) => {
        const code = await rawRequest(port, t);
        assert.ok(code > 0 && code !== 500, `${JSON.stringify(t)} => ${code}`);
      }),
      { numRuns: 300 },
    );
    await idle(status, 'request targets');
  } finally {
    await status.close();
  }
});
