// Property tests for every parser in src/status that reads bytes from outside the agent:
//   - ISTIO_KUBE_APP_PROBERS and ISTIO_PROMETHEUS_ANNOTATIONS (any text, any JSON, any nesting);
//   - the scrape-timeout header, the scraper's Accept header, the app's Content-Type, Accept-Encoding;
//   - the request target of the status server;
//   - what a gRPC app answers: grpc-message, the response messages (framing, size cap), HealthCheckResponse;
//   - the request headers forwarded to an HTTP/2 app.
// For each: no exception escapes (a rejection is an Error or an issue that names its input), and results stay
// within their contract. Pure: no sockets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect as h2Connect } from 'node:http2';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { IssueList } from '../lib/errors.js';
import { memoryLogger } from '../lib/log.js';
import {
  decodeGrpcMessage,
  decodeHealthResponse,
  encodeHealthRequest,
  forwardedHeaders,
  frame,
  GrpcResponseReader,
  grpcTimeoutHeader,
  h2RequestHeaders,
  appHostHeader,
  timeoutMs,
} from './app-probe.js';
import { KUBE_APP_PROBERS_ENV, parseKubeAppProbers, parsePrometheusAnnotations, PROMETHEUS_ANNOTATIONS_ENV } from './config.js';
import {
  ALLOWED_APP_TYPES,
  ALLOWED_ENVOY_TYPES,
  allowedContentTypes,
  FMT_OPENMETRICS_001,
  FMT_OPENMETRICS_100,
  FMT_TEXT,
  MAX_SCRAPE_TIMEOUT_MS,
  negotiateMetricsFormat,
  parseGoFloat,
  scrapeTimeoutMs,
} from './prom-merge.js';
import { acceptsGzip, parseRequestTarget } from './server.js';

const RUNS = { numRuns: 300 };

// --- generators ---

/** Any JS string: full Unicode, lone surrogates, control characters. */
const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ maxLength: 80 }));
/** A header value as Node's HTTP parser hands it over: tab, printable ASCII and obs-text (latin1), trimmed. */
const headerValue = fc
  .array(fc.oneof(fc.constantFrom('\t', ' ', '%', ',', ';', '=', '"', '\\', '*', '/', 'q', '.', '0', '1', 'e', '-', '+'), fc.integer({ min: 0x21, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c))), { maxLength: 60 })
  .map((a) => a.join('').trim());
const tokenChar = fc.constantFrom(...'!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz'.split(''));
const headerName = fc.array(tokenChar, { minLength: 1, maxLength: 20 }).map((a) => a.join(''));
/** Something close to a media type, to reach deep into the parser. */
const mediaish = fc
  .array(
    fc.oneof(
      fc.constantFrom('text/plain', 'application/openmetrics-text', '*/*', '*', 'application/*', 'text/*', 'application/vnd.google.protobuf'),
      fc.constantFrom(';version=0.0.4', ';version=1.0.0', ';q=0.5', ';escaping=allow-utf-8', ';charset=utf-8', ';x="a\\"b"', ';=', ';a', ';q=', ' ', ','),
      headerValue,
    ),
    { maxLength: 8 },
  )
  .map((a) => a.join(''));
/** A JSON value of any depth up to `depth`. */
function deep(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? { k: v } : [v];
  return v;
}
const portish = fc.oneof(fc.integer({ min: -5, max: 70_000 }), fc.double(), fc.string({ maxLength: 6 }), fc.constant(null), fc.boolean(), fc.jsonValue({ maxDepth: 2 }));
const proberPath = fc.oneof(
  fc.tuple(fc.constantFrom('app-health', 'app-lifecycle', 'x'), fc.string({ maxLength: 10 }), fc.constantFrom('livez', 'readyz', 'startupz', 'prestopz', 'poststartz', 'nope')).map(([a, c, p]) => `/${a}/${c}/${p}`),
  anyText,
);
const proberValue = fc.oneof(
  fc.record(
    {
      httpGet: fc.record({ path: fc.oneof(anyText, fc.jsonValue({ maxDepth: 1 })), port: portish, scheme: fc.oneof(fc.constantFrom('HTTP', 'HTTPS', 'http'), fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: [] }),
      tcpSocket: fc.record({ port: portish }, { requiredKeys: [] }),
      grpc: fc.record({ port: portish, service: fc.oneof(anyText, fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: [] }),
      timeoutSeconds: fc.oneof(fc.integer(), fc.double(), fc.constant(1e308), fc.constant(2 ** 31), fc.jsonValue({ maxDepth: 1 })),
    },
    { requiredKeys: [] },
  ),
  fc.jsonValue({ maxDepth: 3 }),
  fc.integer({ min: 1, max: 3000 }).map((d) => deep(d, 1)),
);

// --- ISTIO_KUBE_APP_PROBERS ---

/** Parses; never throws; every issue names the variable; every prober is well-formed. */
function checkProbers(raw: string): void {
  const issues = new IssueList();
  let probers: Map<string, unknown>;
  try {
    probers = parseKubeAppProbers(raw, issues);
  } catch (e) {
    assert.fail(`parseKubeAppProbers threw ${String(e)} on ${raw.slice(0, 200)}`);
  }
  for (const i of issues.items) {
    assert.equal(i.source, `env ${KUBE_APP_PROBERS_ENV}`);
    assert.ok(i.message.length > 0 && i.message.length < 1000, i.message);
  }
  for (const [path, p] of probers) {
    const pr = p as { kind: string; timeoutSeconds: number; httpGet?: { port: number; path: string }; tcpSocket?: { port: number }; grpc?: { port: number; service: string } };
    assert.ok(Number.isInteger(pr.timeoutSeconds) && pr.timeoutSeconds >= 0 && pr.timeoutSeconds <= 2 ** 31 - 1, `${path}: timeoutSeconds`);
    const t = timeoutMs(pr);
    assert.ok(Number.isInteger(t) && t >= 1 && t <= 2 ** 31 - 1, `${path}: timer ${t}`);
    const port = pr.httpGet?.port ?? pr.tcpSocket?.port ?? pr.grpc?.port;
    assert.ok(Number.isInteger(port) && port! >= 1 && port! <= 65535, `${path}: port`);
    if (pr.httpGet) assert.ok(pr.httpGet.path.startsWith('/'));
    if (pr.grpc) assert.equal(typeof pr.grpc.service, 'string');
  }
}

void test('ISTIO_KUBE_APP_PROBERS: any text never throws; issues name the variable', () => {
  fc.assert(fc.property(anyText, (raw) => checkProbers(raw)), RUNS);
});

void test('ISTIO_KUBE_APP_PROBERS: any JSON, any prober shape, any nesting: never throws; a rejected prober is named by its path', () => {
  fc.assert(
    fc.property(fc.dictionary(proberPath, proberValue, { maxKeys: 4 }), (obj) => {
      const raw = JSON.stringify(obj);
      checkProbers(raw);
      const issues = new IssueList();
      const probers = parseKubeAppProbers(raw, issues);
      for (const path of Object.keys(obj)) {
        const named = issues.items.some((i) => i.message.startsWith(JSON.stringify(path.length > 120 ? `${path.slice(0, 120)}...` : path)));
        assert.ok(probers.has(path) !== named, `${JSON.stringify(path)}: accepted xor named in an issue`);
      }
    }),
    RUNS,
  );
  // deep nesting where a message would quote the value
  for (const d of [1000, 20_000]) {
    checkProbers(`{"/app-health/a/livez":{"grpc":{"port":${'['.repeat(d)}${']'.repeat(d)}}}}`);
    checkProbers(`{"/app-health/a/livez":{"httpGet":{"port":80,"scheme":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}}}`);
  }
});

void test('ISTIO_KUBE_APP_PROBERS: well-formed probers parse to exactly what was given', () => {
  const good = fc.record({
    container: fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
    probe: fc.constantFrom('livez', 'readyz', 'startupz'),
    port: fc.integer({ min: 1, max: 65535 }),
    timeoutSeconds: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    kind: fc.constantFrom('httpGet', 'tcpSocket', 'grpc'),
    service: fc.string({ maxLength: 10 }),
  });
  fc.assert(
    fc.property(good, (g) => {
      const path = `/app-health/${g.container}/${g.probe}`;
      const action = g.kind === 'httpGet' ? { path: '/h', port: g.port } : g.kind === 'tcpSocket' ? { port: g.port } : { port: g.port, service: g.service };
      const issues = new IssueList();
      const probers = parseKubeAppProbers(JSON.stringify({ [path]: { [g.kind]: action, timeoutSeconds: g.timeoutSeconds } }), issues);
      assert.deepEqual(issues.items, []);
      const p = probers.get(path)!;
      assert.equal(p.kind, g.kind);
      assert.equal(p.timeoutSeconds, g.timeoutSeconds);
    }),
    RUNS,
  );
});

// --- ISTIO_PROMETHEUS_ANNOTATIONS ---

void test('ISTIO_PROMETHEUS_ANNOTATIONS: any text or JSON never throws; issues name the variable; a config is well-formed', () => {
  const annotations = fc.oneof(
    anyText,
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.record({ scrape: fc.oneof(fc.constantFrom('true', 'false'), fc.jsonValue({ maxDepth: 1 })), path: fc.jsonValue({ maxDepth: 1 }), port: fc.oneof(fc.constantFrom('15020', '9090', ''), fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
    fc.integer({ min: 1, max: 20_000 }).map((d) => `{"port":${'[{"a":'.repeat(d)}1${'}]'.repeat(d)}}`),
  );
  fc.assert(
    fc.property(annotations, (raw) => {
      const issues = new IssueList();
      let cfg: ReturnType<typeof parsePrometheusAnnotations>;
      try {
        cfg = parsePrometheusAnnotations(raw, 15020, issues);
      } catch (e) {
        assert.fail(`threw ${String(e)} on ${raw.slice(0, 200)}`);
      }
      for (const i of issues.items) assert.equal(i.source, `env ${PROMETHEUS_ANNOTATIONS_ENV}`);
      if (cfg) {
        assert.equal(issues.items.length, 0);
        assert.equal(typeof cfg.path, 'string');
        assert.equal(typeof cfg.port, 'string');
        assert.notEqual(cfg.port, '15020');
      }
    }),
    RUNS,
  );
});

// --- X-Prometheus-Scrape-Timeout-Seconds ---

void test('scrape timeout header: any value is whole ms in [1, max] or a fallback that is logged naming the value', () => {
  const values = fc.oneof(
    anyText,
    headerValue,
    fc.double({ noNaN: false }).map(String),
    fc.double({ min: 0, max: 1e6 }).map((d) => d.toExponential()),
    fc.constantFrom('inf', '+Infinity', '-inf', 'NaN', '0x1p-2', '0X.8P1', '1e400', '-1e-400', '.5', '5.', '1_000', '0b1', '0o7', '0x10'),
  );
  fc.assert(
    fc.property(values, (v) => {
      const { log, lines } = memoryLogger('default:debug');
      let ms: number | undefined;
      try {
        ms = scrapeTimeoutMs(v, log);
      } catch (e) {
        assert.fail(`threw ${String(e)} on ${JSON.stringify(v)}`);
      }
      if (ms === undefined) {
        if (v !== '') assert.ok(lines.some((l) => l.includes('Failed to parse timeout header') && l.includes(JSON.stringify(v.slice(0, 100)).slice(1, -1).slice(0, 20))), `${JSON.stringify(v)}: ${lines.join('')}`);
      } else {
        assert.ok(Number.isInteger(ms) && ms >= 1 && ms <= MAX_SCRAPE_TIMEOUT_MS, `${JSON.stringify(v)} => ${ms}`);
        assert.equal(lines.length, 0);
      }
    }),
    RUNS,
  );
});

void test('scrape timeout header: decimal seconds are read as Go ParseFloat reads them, rounded to ms and clamped', () => {
  fc.assert(
    fc.property(fc.double({ min: 1e-9, max: 1e12, noNaN: true }), (s) => {
      for (const text of [String(s), s.toFixed(3), s.toExponential()]) {
        const v = Number(text);
        if (!(v > 0)) continue;
        assert.equal(parseGoFloat(text), v);
        assert.equal(scrapeTimeoutMs(text), v * 1000 >= MAX_SCRAPE_TIMEOUT_MS ? MAX_SCRAPE_TIMEOUT_MS : Math.max(1, Math.round(v * 1000)));
      }
    }),
    RUNS,
  );
});

// --- Accept, Content-Type, Accept-Encoding ---

void test('Accept negotiation: any header never throws; the result is a valid header naming only allowed types', () => {
  fc.assert(
    fc.property(fc.oneof(mediaish, headerValue, anyText), fc.boolean(), (accept, envoy) => {
      const allowed = envoy ? ALLOWED_ENVOY_TYPES : ALLOWED_APP_TYPES;
      const out = allowedContentTypes(accept, allowed);
      assert.doesNotThrow(() => validateHeaderValue('accept', out), `${JSON.stringify(accept)} => ${JSON.stringify(out)}`);
      for (const part of out.split(',')) {
        const type = part.split(';')[0]!.trim();
        assert.ok(allowed.includes(type as never) || type === 'text/plain', `${type} from ${JSON.stringify(accept)}`);
      }
      if (envoy) assert.ok(!out.includes('openmetrics'), out);
    }),
    RUNS,
  );
});

void test('the app Content-Type: any value gives one of the three exposition formats', () => {
  fc.assert(
    fc.property(fc.oneof(mediaish, headerValue, anyText), (ct) => {
      assert.ok([FMT_TEXT, FMT_OPENMETRICS_001, FMT_OPENMETRICS_100].includes(negotiateMetricsFormat(ct)));
    }),
    RUNS,
  );
});

void test('Accept-Encoding: any value is a yes or a no', () => {
  fc.assert(
    fc.property(fc.oneof(headerValue, anyText, fc.array(headerValue)), (ae) => {
      assert.equal(typeof acceptsGzip(ae), 'boolean');
    }),
    RUNS,
  );
});

// --- the request target ---

void test('request target: any value is a path starting with / (plus the raw query) or an error naming it', () => {
  const targets = fc.oneof(
    anyText,
    headerValue,
    fc.tuple(fc.constantFrom('/', '//', '/app-health/', '/stats/prometheus?', 'http://h', 'http://[::1]:80/', '*', 'https://', 'h:'), headerValue).map(([a, b]) => a + b),
  );
  fc.assert(
    fc.property(targets, (raw) => {
      let r: ReturnType<typeof parseRequestTarget>;
      try {
        r = parseRequestTarget(raw);
      } catch (e) {
        assert.fail(`threw ${String(e)} on ${JSON.stringify(raw)}`);
      }
      if ('error' in r) assert.ok(r.error.includes(JSON.stringify(raw.slice(0, 200)).slice(0, -1)), `${r.error} names ${JSON.stringify(raw)}`);
      else {
        assert.ok(r.path.startsWith('/'), r.path);
        assert.ok(!r.path.includes('?') && !r.query.includes('#'));
      }
    }),
    RUNS,
  );
  assert.deepEqual(parseRequestTarget('//'), { path: '//', query: '' });
  assert.deepEqual(parseRequestTarget('/stats/prometheus?usedonly&filter=x'), { path: '/stats/prometheus', query: 'usedonly&filter=x' });
  assert.deepEqual(parseRequestTarget('http://pod:15020/healthz/ready'), { path: '/healthz/ready', query: '' });
});

// --- what a gRPC app answers ---

/** grpc-go's encodeGrpcMessage (over UTF-8 bytes): printable ASCII but `%` kept, the rest `%XX`. */
function encodeGrpcMessage(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** grpc-go's decodeGrpcMessage over the wire bytes (a latin1 string), as a reference model. */
function goDecode(wire: string): string {
  const b = Buffer.from(wire, 'latin1');
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x25 && i + 2 < b.length) {
      const h = b.subarray(i + 1, i + 3).toString('latin1');
      if (/^[0-9a-fA-F]{2}$/.test(h)) {
        out.push(parseInt(h, 16));
        i += 2;
        continue;
      }
    }
    out.push(c);
  }
  return Buffer.from(out).toString('utf8');
}

void test('grpc-message: any value decodes without throwing, as grpc-go does; encode/decode round-trips', () => {
  const wire = fc.oneof(
    fc.array(fc.oneof(fc.constantFrom('%', '%2', '%25', '%zz', '%C3%A9', '%E2%82', '%FF', ' ', 'a'), fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c))), { maxLength: 30 }).map((a) => a.join('')),
    fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 60 }),
  );
  fc.assert(
    fc.property(wire, (w) => {
      assert.equal(decodeGrpcMessage(w), goDecode(w));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(anyText, (s) => {
      const d = decodeGrpcMessage(s); // not wire-shaped (chars above U+00FF): still no throw
      assert.equal(typeof d, 'string');
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
      assert.equal(decodeGrpcMessage(encodeGrpcMessage(s)), s);
    }),
    RUNS,
  );
  assert.equal(decodeGrpcMessage('disk 95% full'), 'disk 95% full');
  assert.equal(decodeGrpcMessage('100%'), '100%');
  assert.equal(decodeGrpcMessage('%41%'), 'A%');
});

void test('gRPC response reader: any bytes in any chunks never throw, never hold more than one capped message', () => {
  const max = 64;
  const body = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.tuple(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 20 })).map(([m, extra]) => Buffer.concat([frame(Buffer.from(m)), Buffer.from(extra)])),
    fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 100 })).map(([flag, len, rest]) => {
      const h = Buffer.alloc(5);
      h[0] = flag;
      h.writeUInt32BE(len, 1);
      return Buffer.concat([h, Buffer.from(rest)]);
    }),
  );
  fc.assert(
    fc.property(body, fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 20 }), (b, cuts) => {
      const r = new GrpcResponseReader(max);
      let pos = 0;
      let ok = true;
      for (const n of [...cuts, b.length]) {
        if (pos >= b.length || !ok) break;
        ok = r.push(b.subarray(pos, pos + n));
        pos += n;
      }
      const declared = b.length >= 5 ? b.readUInt32BE(1) : -1;
      if (b.length >= 5 && b[0] === 0 && declared > max) assert.ok(r.error?.limit, 'over the cap: a limit error');
      let msg: Buffer | undefined;
      try {
        msg = r.message();
      } catch (e) {
        assert.ok(e instanceof Error && /^grpc: /.test(e.message), String(e));
      }
      if (msg) {
        assert.ok(msg.length <= max);
        assert.deepEqual(msg, b.subarray(5, 5 + declared));
        assert.equal(b.length, 5 + declared, 'one message and nothing after it');
        let status: number | undefined;
        try {
          status = decodeHealthResponse(msg);
        } catch (e) {
          assert.ok(e instanceof Error && e.message.startsWith(`HealthCheckResponse (${msg.length} bytes): `), String(e));
        }
        if (status !== undefined) assert.ok(Number.isFinite(status) && status >= 0);
      }
    }),
    RUNS,
  );
});

void test('HealthCheckResponse: any bytes decode to a status or an error naming the message and the byte', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      try {
        const s = decodeHealthResponse(Buffer.from(b));
        assert.ok(Number.isFinite(s) && s >= 0);
      } catch (e) {
        assert.ok(e instanceof Error && /^HealthCheckResponse \(\d+ bytes\): .* at byte \d+$/.test(e.message), String(e));
      }
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (svc) => {
      const req = encodeHealthRequest(svc);
      if (svc) assert.equal(req.subarray(req.length - Buffer.byteLength(svc)).toString(), svc);
    }),
    RUNS,
  );
});

void test('grpc-timeout header: at most 8 digits and a unit, for any probe timeout', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (ms) => {
      assert.match(grpcTimeoutHeader(ms), /^\d{1,8}[mSM]$/);
    }),
    RUNS,
  );
});

// --- request headers forwarded to the app ---

/** A duplex that swallows writes: an HTTP/2 client session over it validates requests without a network. */
function nullDuplex(): Duplex {
  return new Duplex({
    read() {},
    write(_c, _e, cb) {
      cb();
    },
  });
}

void test('forwarded headers: whatever kubelet sent, an HTTP/2 request accepts them (no connection-specific header)', () => {
  const session = h2Connect('http://app.local', { createConnection: () => nullDuplex() as never });
  session.on('error', () => undefined);
  try {
    const headers = fc.dictionary(
      fc.oneof(headerName, fc.constantFrom('connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade', 'http2-settings', 'host', 'content-length', 'user-agent', 'content-type', 'authorization', 'cookie', 'set-cookie')),
      fc.oneof(headerValue, fc.array(headerValue, { minLength: 1, maxLength: 3 })),
      { maxKeys: 8 },
    );
    fc.assert(
      fc.property(headers, fc.option(headerValue, { nil: undefined }), (incoming, host) => {
        const inc: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(incoming)) {
          validateHeaderName(k);
          inc[k] = k === 'set-cookie' ? ([] as string[]).concat(v) : Array.isArray(v) ? v[0]! : v; // Node's parser joins or drops repeats
        }
        const h = h2RequestHeaders(forwardedHeaders(inc));
        for (const k of Object.keys(h)) assert.ok(!['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host'].includes(k), k);
        const appHost = appHostHeader(host, 15020, 8080);
        const stream = session.request({ ...h, ':method': 'GET', ':path': '/', ...(appHost ? { ':authority': appHost } : {}) }, { endStream: true });
        stream.on('error', () => undefined);
        stream.close();
      }),
      RUNS,
    );
  } finally {
    session.destroy();
  }
});
