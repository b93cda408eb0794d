// App probes against misbehaving apps: what an app answers must never crash the agent, leak a connection or
// grow the agent's memory without bound. Raw HTTP/2 servers (node:http2) stand in for gRPC and h2 apps so
// that the tests control every header, trailer and byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSecureServer, createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import { memoryLogger, type Logger } from '../../src/lib/log.js';
import { createAgentMetrics, type AgentMetrics } from '../../src/lib/metrics.js';
import { createStatusServer, type StatusServer } from '../../src/status/server.js';
import { eventually, get, grpcFrame, h2Server, localServer, openConnections, selfSigned } from './fixtures.js';
import { AppProbeRunner } from '../../src/status/app-probe.js';

async function withProbes(
  probers: Record<string, unknown>,
  fn: (c: { probe: (path: string, headers?: Record<string, string>) => ReturnType<typeof get>; lines: string[]; metrics: AgentMetrics; status: StatusServer }) => Promise<void>,
): Promise<void> {
  const { log, lines } = memoryLogger('default:debug');
  const metrics = createAgentMetrics({ processMetrics: false });
  const status = createStatusServer({ log, metrics, statusPort: 0, noEnvoy: true, podIP: '127.0.0.1', kubeAppProbers: JSON.stringify(probers) });
  await status.start();
  try {
    const port = status.port()!;
    await fn({
      probe: (path, headers = {}) => get(`http://127.0.0.1:${port}${path}`, { headers: { 'user-agent': 'kube-probe/1.30', ...headers }, timeoutMs: 8000 }),
      lines,
      metrics,
      status,
    });
  } finally {
    await status.close();
  }
}

void test('gRPC probe: a grpc-message with a bare % (e.g. "disk 95% full") is a failed probe, decoded leniently, never a crash', async () => {
  const messages: Record<string, { where: 'trailers' | 'headers'; status: string; message: string }> = {
    disk: { where: 'trailers', status: '14', message: 'disk 95% full' },
    'trailers-only': { where: 'headers', status: '14', message: '100%' },
    mixed: { where: 'trailers', status: '2', message: 'caf%C3%A9 %zz %4 50%25' },
  };
  const app = await h2Server(createH2Server(), (stream) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => answer(stream, Buffer.concat(chunks).subarray(7).toString()));
  });
  const answer = (stream: ServerHttp2Stream, service: string): void => {
    const m = messages[service]!;
    if (m.where === 'headers') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': m.status, 'grpc-message': m.message }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': m.status, 'grpc-message': m.message }));
    stream.end();
  };
  try {
    await withProbes(
      Object.fromEntries(Object.keys(messages).map((svc, i) => [`/app-health/grpc${i}/livez`, { grpc: { port: app.port, service: svc }, timeoutSeconds: 2 }])),
      async ({ probe, lines }) => {
        for (const [i, [svc, m]] of Object.entries(messages).entries()) {
          const r = await probe(`/app-health/grpc${i}/livez`);
          assert.equal(r.status, 500, `${svc}: ${m.message}`);
        }
        assert.ok(lines.some((l) => l.includes('grpc probe failed: code 14: disk 95% full')), lines.join(''));
        assert.ok(lines.some((l) => l.includes('grpc probe failed: code 14: 100%')), lines.join(''));
        // grpc-go's decoding: valid escapes decoded (as UTF-8), invalid ones kept verbatim
        assert.ok(lines.some((l) => l.includes('grpc probe failed: code 2: café %zz %4 50%')), lines.join(''));
        await eventually('the app to see every probe connection closed', async () => (app.openSessions() === 0 ? true : undefined), 3000);
      },
    );
  } finally {
    await app.close();
  }
});

void test('HTTPS probe over h2: connection-specific request headers (http2-settings, ...) are dropped; the TLS session never leaks', async () => {
  const seen: Record<string, unknown>[] = [];
  const app = await h2Server(createSecureServer({ ...selfSigned(), allowHTTP1: true }), (stream, headers) => {
    seen.push(headers);
    stream.respond({ ':status': 200 });
    stream.end('secure');
  });
  try {
    await withProbes(
      { '/app-health/h2/livez': { httpGet: { path: '/', port: app.port, scheme: 'HTTPS' }, timeoutSeconds: 2 } },
      async ({ probe }) => {
        const r = await probe('/app-health/h2/livez', { 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA', 'x-keep': 'yes', te: 'gzip' });
        assert.deepEqual([r.status, r.body], [200, 'secure']);
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!['http2-settings'], undefined);
        assert.equal(seen[0]!['x-keep'], 'yes');
        await eventually('the app to see the probe connection closed', async () => (app.openSessions() === 0 ? true : undefined), 3000);
      },
    );
  } finally {
    await app.close();
  }
});

void test('gRPC probe: the response body read is capped (grpc-go 4 MiB message limit); beyond it the probe fails, counted and logged', async () => {
  // a SERVING health response padded with an unknown field to 8 MiB: grpc-go rejects it (ResourceExhausted)
  const pad = Buffer.alloc(8 * 1024 * 1024, 0x61);
  const len = Buffer.from([0x80, 0x80, 0x80, 0x04]); // varint 8 MiB
  const big = grpcFrame(Buffer.concat([Buffer.from([0x08, 0x01, 0x12]), len, pad]));
  let sent = 0;
  const app = await h2Server(createH2Server(), (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    sent++;
    stream.end(big);
  });
  try {
    await withProbes(
      { '/app-health/grpc/livez': { grpc: { port: app.port }, timeoutSeconds: 3 } },
      async ({ probe, lines, metrics }) => {
        const r = await probe('/app-health/grpc/livez');
        assert.equal(sent, 1);
        assert.equal(r.status, 500);
        assert.ok(lines.some((l) => /grpc: received message larger than max \(8388615 vs\. 4194304\)/.test(l)), lines.join(''));
        const text = await metrics.registry.metrics();
        assert.match(text, /istio_agent_app_probe_body_limit_exceeded_total\{type="grpc"\} 1/);
        await eventually('the app to see the probe connection closed', async () => (app.openSessions() === 0 ? true : undefined), 3000);
      },
    );
  } finally {
    await app.close();
  }
});

void test('an exception thrown inside a probe event handler becomes a failed probe, logged; nothing escapes', async () => {
  const app = await localServer((_req, res) => res.end('x'.repeat(20_000)));
  const { log, lines } = memoryLogger('default:debug');
  // a logger that throws where the probe logs from inside its body handler (the truncation notice)
  const hostile: Logger = {
    scopeName: 'probes',
    debug: (m) => {
      if (m.includes('read limit')) throw new TypeError('logger exploded');
      log.debug(m);
    },
    info: (m) => log.info(m),
    warn: (m) => log.warn(m),
    error: (m) => log.error(m),
    enabled: (l) => log.enabled(l),
    scope: () => hostile,
  };
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    const runner = new AppProbeRunner({ destination: '127.0.0.1', sourceAddress: undefined, statusPort: () => 15020, log: hostile });
    const r = await runner.run({ kind: 'httpGet', httpGet: { path: '/', port: app.port, scheme: 'HTTP' }, timeoutSeconds: 2 }, { host: undefined, headers: {} }, '/app-health/x/livez');
    assert.equal(r.status, 500);
    assert.ok(lines.some((l) => /\terror\t.*unexpected error in body handler: logger exploded, original URL path = \/app-health\/x\/livez/.test(l)), lines.join(''));
    await eventually('the app to see the probe connection closed', async () => ((await openConnections(app.server)) === 0 ? true : undefined), 3000);
    assert.deepEqual(uncaught, []);
  } finally {
    process.off('uncaughtException', onUncaught);
    await app.close();
  }
});
