// /app-health/... probes through the status server against real local servers: HTTP (plain, HTTPS with h2 and
// HTTP/1.1), TCP and a real gRPC health server (@grpc/grpc-js). Connections must come from 127.0.0.6.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureServer } from 'node:http2';
import { createServer as netServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import forge from 'node-forge';
import { memoryLogger } from '../../src/lib/log.js';
import { createAgentMetrics } from '../../src/lib/metrics.js';
import { createStatusServer, type StatusServer } from '../../src/status/server.js';
import { freePort, get, localServer } from './fixtures.js';

const HEALTH_PROTO = `syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
`;

function selfSigned(): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3_600_000);
  cert.setSubject([{ name: 'commonName', value: 'app.local' }]);
  cert.setIssuer([{ name: 'commonName', value: 'app.local' }]);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { key: keyPem, cert: forge.pki.certificateToPem(cert) };
}

async function listen<T extends NetServer>(s: T): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

async function closeServer(s: NetServer & { closeAllConnections?: () => void }): Promise<void> {
  s.closeAllConnections?.();
  await new Promise<void>((r) => s.close(() => r()));
}

void test('app probes: HTTP, HTTPS (h2 and HTTP/1.1), TCP and gRPC health, all from 127.0.0.6', async (t) => {
  // --- plain HTTP app ---
  const seen: { path: string; remote: string | undefined; host: string | undefined; custom: string | undefined; ua: string | undefined }[] = [];
  const app = await localServer((req, res) => {
    seen.push({ path: req.url!, remote: req.socket.remoteAddress, host: req.headers.host, custom: req.headers['x-custom'] as string | undefined, ua: req.headers['user-agent'] });
    switch (req.url) {
      case '/ok':
        res.end('fine');
        return;
      case '/big':
        res.end('x'.repeat(20_000));
        return;
      case '/fail':
        res.statusCode = 503;
        res.end('down');
        return;
      case '/redirect-same':
        res.writeHead(302, { location: '/ok' }).end();
        return;
      case '/redirect-other':
        res.writeHead(302, { location: 'http://elsewhere.invalid:1/ok' }).end();
        return;
      case '/loop':
        res.writeHead(301, { location: '/loop' }).end();
        return;
      case '/slow':
        return; // never answers
      default:
        res.statusCode = 404;
        res.end();
    }
  });
  t.after(() => app.close());

  // --- HTTPS apps: one speaking h2 (+HTTP/1.1), one HTTP/1.1 only ---
  const tlsCfg = selfSigned();
  const h2Versions: string[] = [];
  const h2app = createSecureServer({ ...tlsCfg, allowHTTP1: true }, (req, res) => {
    h2Versions.push(`${req.httpVersion} ${req.socket.remoteAddress}`);
    res.end('secure');
  });
  const h2Port = await listen(h2app);
  t.after(() => closeServer(h2app));
  const h1Versions: string[] = [];
  const h1app = createHttpsServer(tlsCfg, (req, res) => {
    h1Versions.push(`${req.httpVersion} ${req.socket.remoteAddress}`);
    res.statusCode = 207;
    res.end('secure1');
  });
  const h1Port = await listen(h1app);
  t.after(() => closeServer(h1app));

  // --- TCP app ---
  const tcpPeers: string[] = [];
  const tcp = netServer((s) => {
    tcpPeers.push(s.remoteAddress!);
    s.end();
  });
  const tcpPort = await listen(tcp);
  t.after(() => closeServer(tcp));
  const closedPort = await freePort();

  // --- gRPC health server ---
  const dir = await mkdtemp(join(tmpdir(), 'status-grpc-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'health.proto'), HEALTH_PROTO);
  const def = grpc.loadPackageDefinition(protoLoader.loadSync(join(dir, 'health.proto'), { enums: String })) as any;
  const grpcPeers: string[] = [];
  const grpcAgents: string[] = [];
  const statuses: Record<string, string> = { '': 'SERVING', up: 'SERVING', down: 'NOT_SERVING' };
  const gserver = new grpc.Server();
  gserver.addService(def.grpc.health.v1.Health.service, {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      grpcPeers.push(call.getPeer());
      grpcAgents.push(String(call.metadata.get('user-agent')[0]));
      const st = statuses[call.request.service ?? ''];
      if (!st) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else cb(null, { status: st });
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    gserver.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  t.after(() => new Promise<void>((r) => gserver.tryShutdown(() => r())));
  // a plain HTTP/1 server on the gRPC probe's port: not gRPC at all
  const notGrpc = await localServer((_q, res) => res.end('hello'));
  t.after(() => notGrpc.close());

  const probers = {
    '/app-health/web/livez': { httpGet: { path: '/ok', port: app.port }, timeoutSeconds: 2 },
    '/app-health/web/readyz': { httpGet: { path: 'fail', port: app.port }, timeoutSeconds: 2 },
    '/app-health/web/startupz': { httpGet: { path: '/big', port: app.port }, timeoutSeconds: 2 },
    '/app-health/same/livez': { httpGet: { path: '/redirect-same', port: app.port }, timeoutSeconds: 2 },
    '/app-health/other/livez': { httpGet: { path: '/redirect-other', port: app.port }, timeoutSeconds: 2 },
    '/app-health/loop/livez': { httpGet: { path: '/loop', port: app.port }, timeoutSeconds: 2 },
    '/app-health/slow/livez': { httpGet: { path: '/slow', port: app.port }, timeoutSeconds: 1 },
    '/app-health/h2/livez': { httpGet: { path: '/', port: h2Port, scheme: 'HTTPS' }, timeoutSeconds: 2 },
    '/app-health/h1/livez': { httpGet: { path: '/', port: h1Port, scheme: 'HTTPS' }, timeoutSeconds: 2 },
    '/app-health/tcp/livez': { tcpSocket: { port: tcpPort }, timeoutSeconds: 1 },
    '/app-health/tcp/readyz': { tcpSocket: { port: closedPort }, timeoutSeconds: 1 },
    '/app-health/grpc/livez': { grpc: { port: grpcPort }, timeoutSeconds: 2 },
    '/app-health/grpc/readyz': { grpc: { port: grpcPort, service: 'down' }, timeoutSeconds: 2 },
    '/app-health/grpc/startupz': { grpc: { port: grpcPort, service: 'nope' }, timeoutSeconds: 2 },
    '/app-lifecycle/grpc/prestopz': { grpc: { port: closedPort }, timeoutSeconds: 1 },
    '/app-lifecycle/grpc/poststartz': { grpc: { port: notGrpc.port }, timeoutSeconds: 1 },
  };
  const { log, lines } = memoryLogger('default:debug');
  const metrics = createAgentMetrics({ processMetrics: false });
  const status: StatusServer = createStatusServer({
    log,
    metrics,
    statusPort: 0,
    noEnvoy: true,
    podIP: '127.0.0.1',
    kubeAppProbers: JSON.stringify(probers),
  });
  await status.start();
  t.after(() => status.close());
  const port = status.port()!;
  const probe = (path: string, headers: Record<string, string> = {}) =>
    get(`http://127.0.0.1:${port}${path}`, { headers: { 'user-agent': 'kube-probe/1.30', ...headers }, timeoutMs: 8000 });

  // HTTP: status and body passed through, Host port rewritten, headers forwarded, source 127.0.0.6
  let r = await probe('/app-health/web/livez', { 'x-custom': 'yes' });
  assert.deepEqual([r.status, r.body], [200, 'fine']);
  assert.deepEqual(seen.at(-1), { path: '/ok', remote: '127.0.0.6', host: `127.0.0.1:${app.port}`, custom: 'yes', ua: 'kube-probe/1.30' });
  r = await probe('/app-health/web/livez', { host: 'pod.example:9999' });
  assert.equal(seen.at(-1)!.host, 'pod.example:9999', 'a Host not on the status port is kept');
  r = await probe('/app-health/web/readyz');
  assert.deepEqual([r.status, r.body], [503, 'down']);
  r = await probe('/app-health/web/startupz');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 10 * 1024, 'body capped at 10 KiB');
  assert.match(await metrics.registry.metrics(), /istio_agent_app_probe_body_limit_exceeded_total\{type="http"\} 1\n/, 'the truncation is counted');
  // redirects: same host followed; other host = success without following; a loop fails after 10 requests
  r = await probe('/app-health/same/livez');
  assert.deepEqual([r.status, r.body], [200, 'fine']);
  assert.deepEqual(seen.slice(-2).map((s) => s.path), ['/redirect-same', '/ok']);
  r = await probe('/app-health/other/livez');
  assert.deepEqual([r.status, r.body], [200, '']);
  const before = seen.length;
  r = await probe('/app-health/loop/livez');
  assert.equal(r.status, 500);
  assert.equal(seen.length - before, 10);
  // timeout
  const t0 = Date.now();
  r = await probe('/app-health/slow/livez');
  assert.equal(r.status, 500);
  assert.ok(Date.now() - t0 >= 900 && Date.now() - t0 < 4000, `${Date.now() - t0}ms`);
  assert.ok(lines.some((l) => /\terror\tprobes\tRequest to probe app failed: timeout after 1000ms, original URL path = \/app-health\/slow\/livez/.test(l)));

  // HTTPS: h2 negotiated when the app offers it, HTTP/1.1 otherwise; certificates are not verified
  r = await probe('/app-health/h2/livez');
  assert.deepEqual([r.status, r.body], [200, 'secure']);
  assert.deepEqual(h2Versions, ['2.0 127.0.0.6']);
  r = await probe('/app-health/h1/livez');
  assert.deepEqual([r.status, r.body], [207, 'secure1']);
  assert.deepEqual(h1Versions, ['1.1 127.0.0.6']);

  // TCP
  assert.equal((await probe('/app-health/tcp/livez')).status, 200);
  assert.deepEqual(tcpPeers, ['127.0.0.6']);
  assert.equal((await probe('/app-health/tcp/readyz')).status, 500);

  // gRPC health: SERVING => 200; NOT_SERVING, unknown service, nothing listening, not gRPC => 500
  r = await probe('/app-health/grpc/livez');
  assert.equal(r.status, 200);
  assert.match(grpcPeers[0]!, /127\.0\.0\.6:\d+$/);
  assert.match(grpcAgents[0]!, /^kube-probe\/1\.30/);
  assert.equal((await probe('/app-health/grpc/readyz')).status, 500);
  assert.equal((await probe('/app-health/grpc/startupz')).status, 500);
  assert.ok(lines.some((l) => l.includes('grpc probe failed: code 5: unknown service')));
  assert.equal((await probe('/app-lifecycle/grpc/prestopz')).status, 500);
  assert.equal((await probe('/app-lifecycle/grpc/poststartz')).status, 500);

  // unknown prober
  r = await probe('/app-health/missing/livez');
  assert.deepEqual([r.status, r.body], [400, 'app prober config does not exists for /app-health/missing/livez']);
});
