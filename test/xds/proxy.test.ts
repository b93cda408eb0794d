// The xDS proxy against the test control plane, with a gRPC client playing Envoy on the proxy's socket.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { memoryLogger } from '../../src/lib/log.js';
import { createXdsProxy, resolveXdsProxySettings, xdsProxyMetrics, type XdsProxy, type XdsProxyOptions } from '../../src/xds/index.js';
import { CLUSTER_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, ROUTE_TYPE } from '../../src/xds/types.js';
import { startControlPlane, type ControlPlane } from '../controlplane/server.js';
import { TestCa } from '../controlplane/pki.js';
import { AdsTestClient } from './ads-client.js';

type Msg = Record<string, unknown>;
const HTTP = { listenerPort: 18080, upstreamPort: 18081 };

async function counter(reg: Registry, name: string, labels?: Record<string, string>): Promise<number> {
  const m = await reg.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => !labels || Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

interface Harness {
  dir: string;
  proxy: XdsProxy;
  registry: Registry;
  lines: string[];
  udsPath: string;
  clients: AdsTestClient[];
  client(flavour: 'sotw' | 'delta'): AdsTestClient;
  close(): Promise<void>;
}

async function harness(cp: ControlPlane | { address: string }, over: Partial<XdsProxyOptions> = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'xds-proxy-'));
  const udsPath = join(dir, 'etc', 'istio', 'proxy', 'XDS');
  const registry = new Registry();
  const { log, lines } = memoryLogger('default:info,xdsproxy:debug');
  const proxy = createXdsProxy({
    udsPath,
    discoveryAddress: cp.address,
    tls: null,
    tokenPath: join(dir, 'var', 'run', 'secrets', 'tokens', 'istio-token'),
    clusterId: 'Kubernetes',
    log,
    metrics: xdsProxyMetrics(registry),
    closeTimeoutMs: 500,
    ...over,
  });
  await proxy.start();
  const clients: AdsTestClient[] = [];
  return {
    dir,
    proxy,
    registry,
    lines,
    udsPath,
    clients,
    client(flavour) {
      const c = AdsTestClient.uds(udsPath, flavour);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** SotW: request a type, wait for its response, ACK it. */
async function sotwGet(c: AdsTestClient, typeUrl: string, names: string[] = []): Promise<Msg> {
  c.sotw(typeUrl, names);
  const r = await c.next(typeUrl);
  c.sotw(typeUrl, names, { version: String(r.version_info), nonce: String(r.nonce) });
  return r;
}

void describe('xds proxy: SotW and Delta relay (plaintext)', () => {
  let cp: ControlPlane;
  let h: Harness;
  before(async () => {
    cp = await startControlPlane({ http: HTTP });
    // as the agent runs it: the first stream gets the connection (and the metadata) opened at start
    h = await harness(cp, { xdsHeaders: { 'X-Test-Header': 'hello' }, preconnect: true });
    await mkdir(join(h.dir, 'var', 'run', 'secrets', 'tokens'), { recursive: true });
    await writeFile(join(h.dir, 'var', 'run', 'secrets', 'tokens', 'istio-token'), '  token-one\n');
  });
  after(async () => {
    await h.close();
    await cp.stop();
  });

  void it('creates the socket owner-only (0600) in a created parent directory', async () => {
    const st = await stat(h.udsPath);
    assert.ok(st.isSocket(), 'XDS is a socket');
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(h.proxy.getStatus().listening, true);
  });

  void it('relays a SotW CDS/LDS/RDS exchange, ACKs reach the control plane, and metadata is sent', async () => {
    const c = h.client('sotw');
    const cds = await sotwGet(c, CLUSTER_TYPE);
    assert.equal((cds.resources as unknown[]).length, 1);
    const lds = await sotwGet(c, LISTENER_TYPE);
    const listener = cp.protos.codec('envoy.config.listener.v3.Listener').decode((lds.resources as Array<{ value: Buffer }>)[0]!.value);
    assert.equal(listener.name, 'http_18080');
    const rds = await sotwGet(c, ROUTE_TYPE, ['local_route']);
    assert.equal((rds.resources as unknown[]).length, 1);
    await cp.waitFor('the RDS ACK', () => cp.requests.find((r) => r.typeUrl === ROUTE_TYPE && r.kind === 'ack'));
    const stream = cp.streams.at(-1)!;
    assert.equal(stream.flavour, 'sotw');
    assert.equal(stream.metadata.clusterid, 'Kubernetes');
    assert.equal(stream.metadata.authorization, 'Bearer token-one', 'token is trimmed');
    assert.equal(stream.metadata['x-test-header'], 'hello');
    const status = h.proxy.getStatus();
    assert.equal(status.connected, true);
    assert.equal(status.stream?.flavour, 'sotw');
    assert.equal(status.types[ROUTE_TYPE]?.lastResponseNonce, String(rds.nonce));
    assert.equal(status.types[ROUTE_TYPE]?.lastAckedVersion, String(rds.version_info));
    assert.ok((await counter(h.registry, 'istio_agent_xds_proxy_requests')) >= 6);
    assert.ok((await counter(h.registry, 'istio_agent_xds_proxy_responses')) >= 3);
  });

  void it('forwards a NACK upstream unchanged', async () => {
    const c = h.client('sotw');
    c.sotw(CLUSTER_TYPE);
    const r = await c.next(CLUSTER_TYPE);
    c.sotw(CLUSTER_TYPE, [], { version: '', nonce: String(r.nonce) }, 'cluster rejected by test');
    const nack = await cp.waitFor('the NACK', () => cp.requests.find((x) => x.kind === 'nack' && x.error === 'cluster rejected by test'));
    assert.equal(nack.typeUrl, CLUSTER_TYPE);
    assert.equal(h.proxy.getStatus().types[CLUSTER_TYPE]?.lastNack, 'cluster rejected by test');
  });

  void it('relays Delta, including pushes and removals, and re-reads the token for each stream', async () => {
    await writeFile(join(h.dir, 'var', 'run', 'secrets', 'tokens', 'istio-token'), 'token-two');
    const c = h.client('delta');
    c.delta(CLUSTER_TYPE);
    const cds = await c.next(CLUSTER_TYPE);
    assert.deepEqual((cds.resources as Array<{ name: string }>).map((r) => r.name), ['local_upstream']);
    c.delta(CLUSTER_TYPE, [], String(cds.nonce));
    c.delta(ROUTE_TYPE, ['local_route']);
    const rds = await c.next(ROUTE_TYPE);
    c.delta(ROUTE_TYPE, [], String(rds.nonce));
    await cp.waitFor('the delta RDS ACK', () => cp.requests.find((r) => r.flavour === 'delta' && r.typeUrl === ROUTE_TYPE && r.kind === 'ack'));
    assert.equal(cp.streams.at(-1)!.metadata.authorization, 'Bearer token-two');

    // A push: a second cluster appears, then the first is removed.
    const extra = cp.protos.encodeResources(CLUSTER_TYPE, [{ name: 'second', type: 'STATIC', connect_timeout: { seconds: 1 } }]);
    const existing = cp.protos.encodeResources(CLUSTER_TYPE, [{ name: 'local_upstream', type: 'STATIC', connect_timeout: { seconds: 1 } }]);
    cp.setResources(CLUSTER_TYPE, [...existing, ...extra]);
    const push = await c.next(CLUSTER_TYPE);
    assert.ok((push.resources as Array<{ name: string }>).some((r) => r.name === 'second'));
    c.delta(CLUSTER_TYPE, [], String(push.nonce));
    cp.setResources(CLUSTER_TYPE, extra);
    const removal = await c.next(CLUSTER_TYPE);
    assert.deepEqual(removal.removed_resources, ['local_upstream']);
    assert.equal(h.proxy.getStatus().stream?.flavour, 'delta');
  });

  void it('keeps one Envoy stream: a new one closes the previous with OK', async () => {
    const first = h.client('sotw');
    await sotwGet(first, CLUSTER_TYPE);
    const second = h.client('sotw');
    await sotwGet(second, CLUSTER_TYPE);
    const st = await first.status();
    assert.equal(st.code, Status.OK);
    assert.ok(h.lines.some((l) => l.includes('registered overlapping stream; closing previous')));
    assert.equal(second.ended, false);
  });

  void it('with exclusiveStream false (hot restart overlap) relays two Envoy streams side by side', async () => {
    const h2 = await harness(cp, { exclusiveStream: false });
    try {
      const a = h2.client('delta');
      const b = h2.client('delta');
      a.delta(CLUSTER_TYPE);
      await a.next(CLUSTER_TYPE);
      b.delta(CLUSTER_TYPE);
      await b.next(CLUSTER_TYPE);
      cp.setResources(CLUSTER_TYPE, cp.protos.encodeResources(CLUSTER_TYPE, [{ name: 'third', type: 'STATIC', connect_timeout: { seconds: 1 } }]));
      for (const c of [a, b]) {
        const push = await c.next(CLUSTER_TYPE);
        assert.deepEqual((push.resources as Array<{ name: string }>).map((r) => r.name), ['third']);
      }
      assert.equal(a.ended || b.ended, false);
      assert.equal(h2.proxy.getStatus().activeStreams, 2);
    } finally {
      await h2.close();
    }
  });

  void it('cancels the upstream stream when Envoy goes away', async () => {
    const c = h.client('sotw');
    await sotwGet(c, CLUSTER_TYPE);
    const id = cp.streams.at(-1)!.id;
    c.close();
    await cp.waitFor('the upstream stream to close', () => cp.streams.find((s) => s.id === id)?.closedAt);
    assert.ok((await counter(h.registry, 'istio_agent_envoy_connection_terminations', { type: 'cancelled' })) >= 1);
  });
});

void describe('xds proxy: agent-consumed and foreign types', () => {
  void it('consumes NDS itself (requested on the first LDS, ACKed or NACKed) and never forwards non-Envoy types', async () => {
    const cp = await startControlPlane({ http: HTTP });
    const nameTable = Buffer.from('name-table-bytes');
    cp.setResources(NAME_TABLE_TYPE, [{ name: '', value: nameTable }]);
    cp.setResources('type.googleapis.com/example.Unknown', [{ name: 'x', value: Buffer.from('zz') }]);
    const seen: Buffer[] = [];
    let fail = false;
    const h = await harness(cp, {
      agentTypes: [
        {
          typeUrl: NAME_TABLE_TYPE,
          onResource: (r) => {
            assert.equal(r.typeUrl, NAME_TABLE_TYPE);
            seen.push(Buffer.from(r.value));
            if (fail) throw new Error('bad name table');
          },
        },
      ],
    });
    try {
      const c = h.client('sotw');
      await sotwGet(c, LISTENER_TYPE);
      await cp.waitFor('the agent NDS ACK', () => cp.requests.find((r) => r.typeUrl === NAME_TABLE_TYPE && r.kind === 'ack'));
      assert.deepEqual(seen, [nameTable]);
      // A push the agent rejects is NACKed with its error.
      fail = true;
      cp.setResources(NAME_TABLE_TYPE, [{ name: '', value: Buffer.from('v2') }]);
      const nack = await cp.waitFor('the agent NDS NACK', () => cp.requests.find((r) => r.typeUrl === NAME_TABLE_TYPE && r.kind === 'nack'));
      assert.equal(nack.error, 'bad name table');
      // A foreign type is dropped, not forwarded; the stream keeps working.
      c.sotw('type.googleapis.com/example.Unknown');
      await cp.waitFor('the foreign response', () => cp.responses.find((r) => r.typeUrl === 'type.googleapis.com/example.Unknown'));
      await sotwGet(c, CLUSTER_TYPE);
      assert.ok(c.pending().every((r) => r.type_url !== NAME_TABLE_TYPE && r.type_url !== 'type.googleapis.com/example.Unknown'));
      assert.ok(h.lines.some((l) => l.includes('Skipping forwarding type url type.googleapis.com/example.Unknown')));
    } finally {
      await h.close();
      await cp.stop();
    }
  });
});

void describe('xds proxy: TLS to istiod', () => {
  let ca: TestCa;
  let cp: ControlPlane;
  let rootCert: string;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xds-tls-'));
    rootCert = join(dir, 'root-cert.pem');
    ca = new TestCa();
    cp = await startControlPlane({ http: HTTP, tls: true, ca, rootCertOut: rootCert, requireToken: 'secret-token' });
  });
  after(async () => {
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  });

  void it('verifies istiod.istio-system.svc with the root cert and sends the bearer token', async () => {
    const h = await harness(cp, { tls: { rootCertPath: rootCert, serverName: 'istiod.istio-system.svc' } });
    try {
      await mkdir(join(h.dir, 'var', 'run', 'secrets', 'tokens'), { recursive: true });
      await writeFile(join(h.dir, 'var', 'run', 'secrets', 'tokens', 'istio-token'), 'secret-token\n');
      const c = h.client('delta');
      c.delta(CLUSTER_TYPE);
      const r = await c.next(CLUSTER_TYPE);
      assert.equal((r.resources as unknown[]).length, 1);
      assert.equal(h.proxy.getStatus().tls, true);
    } finally {
      await h.close();
    }
  });

  void it('end to end from pod layout: localhost:15012-style address, root from ./var/run/secrets/istio, token file', async () => {
    const pod = await mkdtemp(join(tmpdir(), 'xds-pod-'));
    const cp2 = await startControlPlane({
      http: HTTP,
      tls: true,
      ca,
      requireToken: 'pod-token',
      rootCertOut: join(pod, 'var', 'run', 'secrets', 'istio', 'root-cert.pem'),
    });
    await mkdir(join(pod, 'var', 'run', 'secrets', 'tokens'), { recursive: true });
    await writeFile(join(pod, 'var', 'run', 'secrets', 'tokens', 'istio-token'), 'pod-token');
    const settings = resolveXdsProxySettings({
      cwd: pod,
      env: { ISTIO_META_CLUSTER_ID: 'Kubernetes', XDS_HEADER_TENANT: 'blue' },
      discoveryAddress: `localhost:${cp2.port}`,
    });
    assert.equal(settings.tls?.serverName, 'istiod.istio-system.svc');
    const { log } = memoryLogger();
    const proxy = createXdsProxy({ ...settings, log });
    let c: AdsTestClient | undefined;
    try {
      await proxy.start();
      c = AdsTestClient.uds(settings.udsPath, 'delta');
      assert.equal(settings.udsPath, join(pod, 'etc', 'istio', 'proxy', 'XDS'));
      c.delta(LISTENER_TYPE);
      await c.next(LISTENER_TYPE);
      const md = cp2.streams.at(-1)!.metadata;
      assert.deepEqual([md.authorization, md.clusterid, md.tenant], ['Bearer pod-token', 'Kubernetes', 'blue']);
    } finally {
      c?.close();
      await proxy.close();
      await cp2.stop();
      await rm(pod, { recursive: true, force: true });
    }
  });

  void it('fails the Envoy stream (and stays up) when the server name does not match', async () => {
    const h = await harness(cp, { tls: { rootCertPath: rootCert, serverName: 'wrong.example.com' } });
    try {
      const c = h.client('sotw');
      c.sotw(CLUSTER_TYPE);
      const st = await c.status();
      assert.equal(st.code, Status.UNAVAILABLE);
      assert.equal(h.proxy.getStatus().listening, true);
      assert.match(h.proxy.getStatus().lastError?.message ?? '', /UNAVAILABLE/);
    } finally {
      await h.close();
    }
  });

  void it('propagates UNAUTHENTICATED when the token is missing, after warning about the file', async () => {
    const h = await harness(cp, { tls: { rootCertPath: rootCert, serverName: 'istiod.istio-system.svc' } });
    try {
      const c = h.client('sotw');
      c.sotw(CLUSTER_TYPE);
      const st = await c.status();
      assert.equal(st.code, Status.UNAUTHENTICATED);
      assert.ok(h.lines.some((l) => l.includes('failed to fetch token from file')));
    } finally {
      await h.close();
    }
  });

  void it('fails the stream with a status when the root cert file is unusable', async () => {
    const h = await harness(cp, { tls: { rootCertPath: join(dir, 'missing.pem'), serverName: 'istiod.istio-system.svc' } });
    try {
      const c = h.client('sotw');
      c.sotw(CLUSTER_TYPE);
      const st = await c.status();
      assert.equal(st.code, Status.UNAVAILABLE);
      assert.match(st.details, /failed to connect to upstream/);
      assert.equal(await counter(h.registry, 'istio_agent_istiod_connection_failures'), 1);
    } finally {
      await h.close();
    }
  });
});

void describe('xds proxy: upstream failures', () => {
  void it('closes the Envoy stream with a status when istiod is unreachable, and keeps serving', async () => {
    const gone = await startControlPlane();
    const address = gone.address;
    await gone.stop();
    const h = await harness({ address });
    try {
      const c = h.client('delta');
      c.delta(CLUSTER_TYPE);
      const st = await c.status();
      assert.equal(st.code, Status.UNAVAILABLE);
      assert.equal(await counter(h.registry, 'istio_agent_istiod_connection_terminations', { type: 'error' }), 1);
      const again = h.client('sotw');
      again.sotw(CLUSTER_TYPE);
      assert.equal((await again.status()).code, Status.UNAVAILABLE);
      assert.equal(h.proxy.getStatus().listening, true);
    } finally {
      await h.close();
    }
  });

  void it('ends the Envoy stream when the control plane dies, and a new stream works after it restarts', async () => {
    const cp = await startControlPlane({ http: HTTP });
    const port = cp.port;
    const h = await harness(cp);
    let cp2: ControlPlane | undefined;
    try {
      const c = h.client('sotw');
      await sotwGet(c, CLUSTER_TYPE);
      await cp.stop();
      const st = await c.status();
      assert.notEqual(st.code, Status.OK);
      cp2 = await startControlPlane({ http: HTTP, address: `127.0.0.1:${port}` });
      const c2 = h.client('sotw');
      const r = await sotwGet(c2, CLUSTER_TYPE);
      assert.equal((r.resources as unknown[]).length, 1);
      assert.equal(h.proxy.getStatus().connected, true);
    } finally {
      await h.close();
      await cp2?.stop();
    }
  });
});

void describe('xds proxy: large responses', () => {
  void it('relays a 30 MB response byte for byte (SotW and Delta), and reports each large response (onLargeResponse)', async () => {
    const cp = await startControlPlane();
    const large: number[] = [];
    const h = await harness(cp, { onLargeResponse: (bytes) => large.push(bytes) });
    try {
      const blob = 'x'.repeat(10_000);
      const clusters = Array.from({ length: 3000 }, (_, i) => ({
        name: `cluster-${i}`,
        type: 'STATIC',
        connect_timeout: { seconds: 1 },
        metadata: { filter_metadata: { test: { fields: { blob: { stringValue: `${i}-${blob}` } } } } },
      }));
      const encoded = cp.protos.encodeResources(CLUSTER_TYPE, clusters);
      const total = encoded.reduce((n, r) => n + r.value.length, 0);
      assert.ok(total > 30_000_000, `payload is ${total} bytes`);
      cp.setResources(CLUSTER_TYPE, encoded);
      const digest = (bufs: Buffer[]): string => createHash('sha256').update(Buffer.concat(bufs)).digest('hex');
      const want = digest(encoded.map((r) => r.value));
      for (const flavour of ['sotw', 'delta'] as const) {
        const before = process.memoryUsage();
        const t0 = performance.now();
        const c = h.client(flavour);
        if (flavour === 'sotw') c.sotw(CLUSTER_TYPE);
        else c.delta(CLUSTER_TYPE);
        const r = await c.next(CLUSTER_TYPE, 60_000);
        const ms = performance.now() - t0;
        const after = process.memoryUsage();
        const values =
          flavour === 'sotw'
            ? (r.resources as Array<{ value: Buffer }>).map((x) => x.value)
            : (r.resources as Array<{ resource: { value: Buffer } }>).map((x) => x.resource.value);
        assert.equal(values.length, 3000);
        assert.equal(digest(values), want);
        const mb = (n: number): string => (n / 1048576).toFixed(1);
        console.log(
          `${flavour}: ${mb(total)} MiB response relayed in ${ms.toFixed(0)} ms ` +
            `(rss ${mb(before.rss)} -> ${mb(after.rss)} MiB, external ${mb(before.external)} -> ${mb(after.external)} MiB; ` +
            'the test process also holds the control plane and the client)',
        );
        c.close();
      }
      assert.ok(h.lines.some((l) => l.includes('upstream response') && l.includes('resources=3000')));
      // one report per large response (SotW, then Delta), with its size
      assert.equal(large.length, 2, String(large));
      for (const b of large) assert.ok(b > total, `${b} bytes reported for a ${total}-byte payload`);
    } finally {
      await h.close();
      await cp.stop();
    }
  });
});

void describe('xds proxy: socket lifecycle', () => {
  void it('replaces a stale file at the socket path and removes its socket on close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xds-sock-'));
    try {
      const udsPath = join(dir, 'XDS');
      await writeFile(udsPath, 'stale');
      const { log } = memoryLogger();
      const proxy = createXdsProxy({ udsPath, discoveryAddress: '127.0.0.1:1', tls: null, tokenPath: null, log });
      await proxy.start();
      assert.ok((await stat(udsPath)).isSocket());
      await proxy.close();
      await assert.rejects(stat(udsPath), { code: 'ENOENT' });
      await proxy.close(); // idempotent
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('fails start with a message naming the path when the socket cannot be created', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xds-sock-'));
    try {
      await writeFile(join(dir, 'file'), '');
      const { log } = memoryLogger();
      const udsPath = join(dir, 'file', 'XDS');
      const proxy = createXdsProxy({ udsPath, discoveryAddress: '127.0.0.1:1', tls: null, tokenPath: null, log });
      await assert.rejects(proxy.start(), (e: Error) => e.message.includes(udsPath));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
