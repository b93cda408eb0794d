// Regression tests for four xDS proxy defects: overlapping Envoy streams kept forever (#8), a failed write to
// Envoy counted as a cancellation with a false slow-send warning (#9), istiod's status text reaching Envoy
// percent-encoded where pilot-agent relays it as sent (#10), and the socket unreachable by a proxyless
// gRPC application running as another user (#11).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as Status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { memoryLogger } from '../../src/lib/log.js';
import { createXdsProxy, xdsProxyMetrics, type XdsProxy, type XdsProxyOptions } from '../../src/xds/index.js';
import { CLUSTER_TYPE } from '../../src/xds/types.js';
import { REPO_ROOT } from '../helpers/peers.js';
import { H2AdsStream, RawAdsClient, RawUpstream, failNextUdsResponseWrite, grpcSpecEncode, sotwRequest, sotwResponse, startRefusingUpstream } from './raw-peers.js';

async function counter(reg: Registry, name: string, labels?: Record<string, string>): Promise<number> {
  const m = await reg.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => !labels || Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

/** Polls `pick` until it returns a value (bounded). */
async function eventually<T>(what: string, pick: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pick();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(10);
  }
}

interface Harness {
  dir: string;
  udsPath: string;
  proxy: XdsProxy;
  registry: Registry;
  lines: string[];
  clients: RawAdsClient[];
  client(delta?: boolean): RawAdsClient;
  close(): Promise<void>;
}

async function harness(address: string, over: Partial<XdsProxyOptions> = {}, dir?: string): Promise<Harness> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'xds-defects-')));
  const udsPath = join(d, 'etc', 'istio', 'proxy', 'XDS');
  const registry = new Registry();
  const { log, lines } = memoryLogger('default:info,xdsproxy:debug');
  const proxy = createXdsProxy({ udsPath, discoveryAddress: address, tls: null, tokenPath: null, log, metrics: xdsProxyMetrics(registry), closeTimeoutMs: 300, ...over });
  await proxy.start();
  const clients: RawAdsClient[] = [];
  return {
    dir: d,
    udsPath,
    proxy,
    registry,
    lines,
    clients,
    client(delta = false) {
      const c = new RawAdsClient(udsPath, delta);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await proxy.close();
      await rm(d, { recursive: true, force: true });
    },
  };
}

/** Opens a SotW stream through the proxy and waits for its first response (the stream is relayed end to end). */
async function connected(h: Harness): Promise<RawAdsClient> {
  const c = h.client();
  c.send(sotwRequest(CLUSTER_TYPE));
  await c.next();
  return c;
}

void describe('#8 overlapping Envoy streams: closed outside a hot-restart hand-over', () => {
  let up: RawUpstream;
  before(async () => {
    up = await new RawUpstream().start();
  });
  after(() => up.stop());

  void it('during beginHandover() two streams are relayed side by side; once the old stream ends, a new one closes the previous again', async () => {
    const h = await harness(up.address);
    try {
      const old = await connected(h);
      h.proxy.beginHandover(60_000);
      assert.equal(h.proxy.getStatus().handover?.streams, 1, 'the hand-over waits for the one stream open when it began');
      const child = await connected(h);
      assert.equal(old.ended, false, 'the old epoch keeps its stream during the hand-over');
      assert.equal(h.proxy.getStatus().activeStreams, 2);
      // the old epoch exits: its stream ends, which closes the hand-over window
      old.close();
      await eventually('the old stream to be gone', () => h.proxy.getStatus().activeStreams === 1);
      assert.equal(h.proxy.getStatus().handover, undefined, 'the hand-over ended with the old stream');
      const next = await connected(h);
      assert.equal((await child.status()).code, Status.OK, 'outside a hand-over a new stream closes the previous one');
      assert.equal(next.ended, false);
      assert.equal(h.proxy.getStatus().activeStreams, 1);
      assert.ok(h.lines.some((l) => l.includes('registered overlapping stream; closing previous')));
    } finally {
      await h.close();
    }
  });

  void it('after the hand-over window expires a new stream closes every previous one', async () => {
    const h = await harness(up.address);
    try {
      const a = await connected(h);
      h.proxy.beginHandover(200);
      const b = await connected(h);
      assert.equal(h.proxy.getStatus().activeStreams, 2);
      await eventually('the hand-over window to close', () => h.proxy.getStatus().handover === undefined);
      // expiry closes nothing by itself (the old epoch may still be draining)...
      assert.equal(a.ended || b.ended, false);
      // ...but the next stream does, as pilot-agent's
      const c = await connected(h);
      assert.equal((await a.status()).code, Status.OK);
      assert.equal((await b.status()).code, Status.OK);
      assert.equal(c.ended, false);
      assert.equal(h.proxy.getStatus().activeStreams, 1);
    } finally {
      await h.close();
    }
  });

  void it('with no hand-over (the default) every new stream closes the previous one; endHandover() ends a window early', async () => {
    const h = await harness(up.address);
    try {
      const a = await connected(h);
      const b = await connected(h);
      assert.equal((await a.status()).code, Status.OK);
      h.proxy.beginHandover(60_000);
      h.proxy.endHandover();
      assert.equal(h.proxy.getStatus().handover, undefined);
      for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => h.proxy.beginHandover(bad), /hand-over window/);
      await connected(h);
      assert.equal((await b.status()).code, Status.OK);
      assert.equal(h.proxy.getStatus().activeStreams, 1);
    } finally {
      await h.close();
    }
  });
});

void describe('#9 a failed write to Envoy', () => {
  const BIG = 4 * 1024 * 1024;
  const terminations = async (reg: Registry): Promise<{ error: number; cancelled: number }> => ({
    error: await counter(reg, 'istio_agent_envoy_connection_terminations', { type: 'error' }),
    cancelled: await counter(reg, 'istio_agent_envoy_connection_terminations', { type: 'cancelled' }),
  });

  void it('is counted and logged as an error (not a cancellation), leaves no slow-send timer or warning, and the proxy keeps serving', async () => {
    const up = await new RawUpstream({ onRequest: (s) => void s.write(sotwResponse(CLUSTER_TYPE, 'big', '1', 1, BIG)).catch(() => undefined) }).start();
    const slowSendWarnMs = 300;
    const h = await harness(up.address, { slowSendWarnMs });
    const fault = await failNextUdsResponseWrite();
    try {
      const envoy = h.client();
      envoy.send(sotwRequest(CLUSTER_TYPE));
      const st = await envoy.status();
      assert.ok(fault.fired(), 'the write to Envoy failed');
      assert.notEqual(st.code, Status.OK);
      await eventually('the downstream termination to be counted', async () => {
        const t = await terminations(h.registry);
        return t.error + t.cancelled >= 1;
      });
      assert.deepEqual(await terminations(h.registry), { error: 1, cancelled: 0 });
      assert.ok(
        h.lines.some((l) => l.includes('downstream terminated with unexpected error') && l.includes(`send error for type url ${CLUSTER_TYPE}`)),
        h.lines.join('\n'),
      );
      assert.match(h.proxy.getStatus().lastError?.message ?? '', /send error for type url/);
      assert.equal(h.proxy.getStatus().resources.sendTimers, 0, 'the slow-send timer is cleared with the failed write');
      await sleep(slowSendWarnMs * 2);
      assert.equal(h.lines.some((l) => l.includes('sendDownstream is taking more than')), false, 'no slow-send warning for a write that already failed');
      // the proxy keeps serving: the next Envoy stream gets the same response in full
      fault.restore();
      const again = h.client();
      again.send(sotwRequest(CLUSTER_TYPE));
      assert.ok((await again.next()).length > BIG);
      assert.equal(h.proxy.getStatus().listening, true);
    } finally {
      fault.restore();
      await h.close();
      await up.stop();
    }
  });

  void it('an Envoy whose connection breaks in the middle of a write is counted once and leaves nothing behind', async () => {
    // istiod answers with 4 MiB; the "Envoy" never reads, so the write stays pending until its connection breaks
    const up = await new RawUpstream({ onRequest: (s) => void s.write(sotwResponse(CLUSTER_TYPE, 'big', '1', 1, BIG)).catch(() => undefined) }).start();
    const slowSendWarnMs = 300;
    const h = await harness(up.address, { slowSendWarnMs });
    try {
      const envoy = new H2AdsStream(h.udsPath, false, { read: false });
      envoy.send(sotwRequest(CLUSTER_TYPE));
      await envoy.responded(); // the proxy is writing the response to Envoy
      await eventually('the write to be in flight', () => h.proxy.getStatus().resources.sendTimers === 1);
      envoy.destroy();
      await eventually('the stream to end', () => h.proxy.getStatus().activeStreams === 0);
      await eventually('the upstream stream to be cancelled', () => up.open.length === 0);
      const t = await terminations(h.registry);
      assert.equal(t.error + t.cancelled, 1, 'counted once');
      assert.deepEqual({ ...h.proxy.getStatus().resources, sessionObjects: 0 }, { sessions: 0, sessionObjects: 0, upstreamChannels: 0, sendTimers: 0, queuedRequests: 0, trackedTypes: 1 });
      await sleep(slowSendWarnMs * 2);
      assert.equal(h.lines.some((l) => l.includes('sendDownstream is taking more than')), false);
    } finally {
      await h.close();
      await up.stop();
    }
  });
});

void describe('#10 status text from istiod reaches Envoy as istiod sent it', () => {
  const TEXT = 'authorization failed: no identities ([spiffe://cluster.local/ns/default/sa/httpbin]) are allowed';

  void it('grpc-message is written as grpc-go writes it (spaces, brackets, parentheses unescaped), and grpc clients read the same text', async () => {
    const ref = await startRefusingUpstream(Status.PERMISSION_DENIED, TEXT);
    const h = await harness(ref.address);
    try {
      const envoy = new H2AdsStream(h.udsPath, false);
      envoy.send(sotwRequest(CLUSTER_TYPE));
      const st = await envoy.grpcStatus();
      assert.equal(st.code, Status.PERMISSION_DENIED);
      assert.equal(st.message, TEXT, 'the raw grpc-message Envoy logs');
      envoy.destroy();
      // what a grpc client decodes is the text istiod sent
      const c = h.client();
      c.send(sotwRequest(CLUSTER_TYPE));
      const s2 = await c.status();
      assert.deepEqual([s2.code, s2.details], [Status.PERMISSION_DENIED, TEXT]);
    } finally {
      await h.close();
      await ref.stop();
    }
  });

  void it('text outside printable ASCII and "%" are escaped as gRPC specifies, and round-trip through a grpc client', async () => {
    const text = 'naïve 100% — refusé\nline two';
    const ref = await startRefusingUpstream(Status.UNAUTHENTICATED, text);
    const h = await harness(ref.address);
    try {
      const envoy = new H2AdsStream(h.udsPath, true);
      envoy.send(sotwRequest(CLUSTER_TYPE));
      const st = await envoy.grpcStatus();
      assert.deepEqual(st, { code: Status.UNAUTHENTICATED, message: grpcSpecEncode(text) });
      envoy.destroy();
      const c = h.client(true);
      c.send(sotwRequest(CLUSTER_TYPE));
      assert.equal((await c.status()).details, text);
    } finally {
      await h.close();
      await ref.stop();
    }
  });
});

void describe('#11 the socket mode: proxyless gRPC applications run as another user', () => {
  const CLIENT = `
    import { createRequire } from 'node:module';
    const require = createRequire(${JSON.stringify(join(REPO_ROOT, 'package.json'))});
    const grpc = require('@grpc/grpc-js');
    const id = (b) => b;
    const def = { S: { path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', requestStream: true, responseStream: true,
      requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } };
    const Ctor = grpc.makeGenericClientConstructor(def, 'A');
    const client = new Ctor('unix:' + process.argv[2], grpc.credentials.createInsecure());
    const call = client.S();
    const done = (r) => { process.stdout.write(JSON.stringify({ uid: process.getuid(), ...r })); process.exit(0); };
    call.on('data', (b) => done({ ok: true, bytes: b.length }));
    call.on('error', (e) => done({ ok: false, code: e.code, details: e.details }));
    call.write(Buffer.from(process.argv[3], 'hex'));
    setTimeout(() => done({ ok: false, code: -1, details: 'timeout' }), 8000);
  `;

  async function asOtherUser(dir: string, udsPath: string): Promise<{ uid: number; ok: boolean; code?: number; details?: string }> {
    const script = join(dir, 'client.mjs');
    await writeFile(script, CLIENT);
    await chmod(script, 0o644);
    const p = spawn('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', process.execPath, script, udsPath, sotwRequest(CLUSTER_TYPE).toString('hex')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => p.on('exit', resolve));
    assert.equal(code, 0, `client failed: ${err}`);
    return JSON.parse(out) as { uid: number; ok: boolean; code?: number; details?: string };
  }

  /** A pod-like directory whose ./etc/istio/proxy is a shared, world-writable volume (an emptyDir mount). */
  async function podDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'xds-mode-'));
    await chmod(dir, 0o755);
    await mkdir(join(dir, 'etc', 'istio', 'proxy'), { recursive: true });
    for (const d of ['etc', join('etc', 'istio')]) await chmod(join(dir, d), 0o755);
    await chmod(join(dir, 'etc', 'istio', 'proxy'), 0o777);
    return dir;
  }

  let up: RawUpstream;
  before(async () => {
    up = await new RawUpstream().start();
  });
  after(() => up.stop());

  void it('by default the socket is 0600 and another uid is refused', async () => {
    const h = await harness(up.address, {}, await podDir());
    try {
      assert.equal((await stat(h.udsPath)).mode & 0o777, 0o600);
      const r = await asOtherUser(h.dir, h.udsPath);
      assert.equal(r.uid, 1000);
      assert.equal(r.ok, false);
      assert.equal(r.code, Status.UNAVAILABLE);
      assert.equal(h.proxy.getStatus().counts.streams, 0, 'the connection never reached the proxy');
    } finally {
      await h.close();
    }
  });

  void it('with socketMode 0o666 (proxyless, DISABLE_ENVOY=true) another uid opens an ADS stream and gets its response', async () => {
    const h = await harness(up.address, { socketMode: 0o666 }, await podDir());
    try {
      assert.equal((await stat(h.udsPath)).mode & 0o777, 0o666);
      const r = await asOtherUser(h.dir, h.udsPath);
      assert.deepEqual({ uid: r.uid, ok: r.ok }, { uid: 1000, ok: true }, JSON.stringify(r));
      assert.equal(h.proxy.getStatus().counts.streams, 1);
      assert.ok(up.streams.some((s) => s.requests.some((q) => q.equals(sotwRequest(CLUSTER_TYPE)))));
    } finally {
      await h.close();
    }
  });

  void it('rejects a socket mode that is not a permission mask', async () => {
    const { log } = memoryLogger();
    assert.throws(() => createXdsProxy({ udsPath: '/tmp/x/XDS', discoveryAddress: up.address, tls: null, tokenPath: null, log, socketMode: 0o1777 }), /socketMode/);
  });
});
