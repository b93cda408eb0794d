// The xDS proxy against untrusted bytes from both sockets, property-based: any request bytes from "Envoy"
// and any response bytes from "istiod" (random, damaged real messages, real messages with odd types).
// Whatever arrives: no exception escapes, a message the proxy cannot read ends that stream pair with
// INTERNAL and a status naming the problem (counted and logged), a readable one is relayed byte for byte
// (or consumed/skipped by the type rules), and the proxy and another stream keep working throughout.
// Then bounded memory, by count: 1,000 pushes through one stream and 200 malformed requests leave no
// sessions, channels, timers or queued requests behind (and the session objects are garbage-collected).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { status as Status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { memoryLogger } from '../../src/lib/log.js';
import { loadProtos, messageCodec } from '../../src/lib/proto.js';
import { MAX_TRACKED_TYPES } from '../../src/xds/proxy.js';
import { createXdsProxy, xdsProxyMetrics, type XdsProxy, type XdsProxyOptions } from '../../src/xds/index.js';
import { CLUSTER_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, isForwardedToEnvoy } from '../../src/xds/types.js';
import { summarizeRequest, summarizeResponse } from '../../src/xds/wire.js';
import { RawAdsClient, RawUpstream, deltaRequest, deltaResponse, sotwRequest, sotwResponse, type RawUpstreamStream } from './raw-peers.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

const pkg = loadProtos(['envoy/service/discovery/v3/discovery.proto']);
const codec = (n: string) => messageCodec<any>(pkg, `envoy.service.discovery.v3.${n}`);
const DiscoveryRequest = codec('DiscoveryRequest');
const DiscoveryResponse = codec('DiscoveryResponse');
const DeltaDiscoveryRequest = codec('DeltaDiscoveryRequest');
const DeltaDiscoveryResponse = codec('DeltaDiscoveryResponse');

const mib = (n: number): string => (n / 1048576).toFixed(1);

async function counter(reg: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = await reg.getSingleMetric(name)?.get();
  return m?.values.find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value ?? 0;
}

async function eventually<T>(what: string, pick: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Runs garbage collection until FinalizationRegistry callbacks have had their turn. */
async function collect(): Promise<void> {
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

function readable<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

// ---- generators ----

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
const arbStr = fc.string({ unit: 'binary', maxLength: 30 });
const arbTypeUrl = fc.oneof(
  fc.constantFrom(CLUSTER_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, 'type.googleapis.com/envoy.config.Unheard', 'type.googleapis.com/example.Foreign', '__proto__', ''),
  arbStr,
);
const arbAny = fc.record({ type_url: arbTypeUrl, value: fc.uint8Array({ maxLength: 40 }).map(asBuffer) });
const arbMutation = fc.record({ kind: fc.nat(), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) });

function mutate(buf: Buffer, how: { kind: number; at: number; byte: number }): Buffer {
  if (buf.length === 0) return Buffer.from([how.byte]);
  const at = how.at % buf.length;
  if (how.kind % 3 === 0) return buf.subarray(0, at);
  if (how.kind % 3 === 1) {
    const b = Buffer.from(buf);
    b[at] = how.byte;
    return b;
  }
  return Buffer.concat([buf.subarray(0, at), Buffer.from([how.byte]), buf.subarray(at)]);
}

function arbRequestBytes(delta: boolean): fc.Arbitrary<Buffer> {
  const real = delta
    ? fc.record({ type_url: arbTypeUrl, response_nonce: arbStr, resource_names_subscribe: fc.array(arbStr, { maxLength: 3 }) }).map((m) => DeltaDiscoveryRequest.encode(m))
    : fc
        .record({ type_url: arbTypeUrl, response_nonce: arbStr, version_info: arbStr, resource_names: fc.array(arbStr, { maxLength: 3 }), error_detail: fc.option(fc.record({ code: fc.nat(16), message: arbStr }), { nil: undefined }) })
        .map((m) => DiscoveryRequest.encode(m));
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map(asBuffer),
    real,
    fc.tuple(real, arbMutation).map(([b, m]) => mutate(b, m)),
  );
}

function arbResponseBytes(delta: boolean): fc.Arbitrary<Buffer> {
  const real = delta
    ? fc
        .record({
          type_url: arbTypeUrl,
          nonce: arbStr,
          system_version_info: arbStr,
          resources: fc.array(fc.record({ name: arbStr, resource: fc.option(arbAny, { nil: undefined }) }), { maxLength: 3 }),
          removed_resources: fc.array(arbStr, { maxLength: 2 }),
        })
        .map((m) => DeltaDiscoveryResponse.encode(m))
    : fc.record({ type_url: arbTypeUrl, nonce: arbStr, version_info: arbStr, resources: fc.array(arbAny, { maxLength: 3 }) }).map((m) => DiscoveryResponse.encode(m));
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map(asBuffer),
    real,
    real,
    fc.tuple(real, arbMutation).map(([b, m]) => mutate(b, m)),
  );
}

// ---- harness ----

interface Fuzz {
  proxy: XdsProxy;
  up: RawUpstream;
  registry: Registry;
  lines: string[];
  udsPath: string;
  dir: string;
  /** Responses to send on the stream whose first request asks for this type URL. */
  planned: Map<string, Buffer[]>;
  close(): Promise<void>;
}

async function fuzzHarness(over: Partial<XdsProxyOptions> = {}, logLevels = 'default:info'): Promise<Fuzz> {
  const dir = await mkdtemp(join(tmpdir(), 'xds-fuzz-'));
  const udsPath = join(dir, 'etc', 'istio', 'proxy', 'XDS');
  const planned = new Map<string, Buffer[]>();
  const up: RawUpstream = await new RawUpstream({
    onRequest: (s, req) => {
      const sum = readable(() => summarizeRequest(req, s.delta));
      const plan = sum && planned.get(sum.typeUrl);
      if (plan) {
        planned.delete(sum.typeUrl);
        for (const r of plan) s.write(r).catch(() => undefined);
      } else up.answer(s, req);
    },
  }).start();
  const registry = new Registry();
  const { log, lines } = memoryLogger(logLevels);
  const proxy = createXdsProxy({ udsPath, discoveryAddress: up.address, tls: null, tokenPath: null, log, metrics: xdsProxyMetrics(registry), closeTimeoutMs: 300, ...over });
  await proxy.start();
  return {
    proxy,
    up,
    registry,
    lines,
    udsPath,
    dir,
    planned,
    async close() {
      await proxy.close();
      await up.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A long-lived stream beside the fuzzed ones: proves after every case that other streams keep working. */
class Witness {
  private n = 0;
  private constructor(
    readonly client: RawAdsClient,
    readonly upstream: RawUpstreamStream,
  ) {}

  static async open(f: Fuzz): Promise<Witness> {
    const marker = 'type.googleapis.com/envoy.witness.Stream';
    f.planned.set(marker, [sotwResponse(CLUSTER_TYPE, 'w0')]);
    const client = new RawAdsClient(f.udsPath, false);
    client.send(sotwRequest(marker));
    await client.next();
    const upstream = f.up.streams.find((s) => s.requests.some((r) => readable(() => summarizeRequest(r, false).typeUrl) === marker))!;
    return new Witness(client, upstream);
  }

  async check(): Promise<void> {
    const push = sotwResponse(CLUSTER_TYPE, `w${++this.n}`);
    await this.upstream.write(push);
    assert.deepEqual(await this.client.next(5000), push, 'the witness stream still relays');
  }
}

const uncaught: unknown[] = [];
const onUncaught = (e: unknown): void => void uncaught.push(e);

void describe('xds proxy, property-based: arbitrary bytes from Envoy and from istiod', () => {
  let f: Fuzz;
  let witness: Witness;
  let nackOdd = true;
  before(async () => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    f = await fuzzHarness({
      // keep every stream (the witness must outlive the fuzzed ones)
      exclusiveStream: false,
      agentTypes: [
        {
          typeUrl: NAME_TABLE_TYPE,
          onResource: async (r) => {
            await Promise.resolve();
            if (nackOdd && r.value.length % 2 === 1) throw new Error(`odd name table (${r.value.length} bytes)`);
          },
        },
      ],
    });
    witness = await Witness.open(f);
  });
  after(async () => {
    witness.client.close();
    await f.close();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    assert.deepEqual(uncaught, [], 'no exception escaped');
  });

  for (const delta of [false, true]) {
    const flavour = delta ? 'Delta' : 'SotW';

    void it(`${flavour}: any request bytes from Envoy are relayed as they are, or end that stream with INTERNAL (counted, logged)`, async () => {
      await fc.assert(
        fc.asyncProperty(arbRequestBytes(delta), async (req) => {
          await eventually('the previous case to end', () => f.proxy.getStatus().activeStreams === 1);
          const firstNew = f.up.streams.length;
          const errorsBefore = await counter(f.registry, 'istio_agent_envoy_connection_terminations', { type: 'error' });
          const c = new RawAdsClient(f.udsPath, delta);
          try {
            c.send(req);
            if (readable(() => summarizeRequest(req, delta)) === undefined) {
              const st = await c.status();
              assert.equal(st.code, Status.INTERNAL);
              assert.match(st.details, /^bad request from Envoy: malformed protobuf: /);
              await eventually('the error to be counted', () => f.proxy.getStatus().activeStreams === 1);
              assert.equal(await counter(f.registry, 'istio_agent_envoy_connection_terminations', { type: 'error' }), errorsBefore + 1);
              assert.ok(f.lines.slice(-6).some((l) => l.includes('downstream terminated with unexpected error INTERNAL: bad request from Envoy')));
            } else {
              await f.up.waitFor('the request to reach istiod unchanged', () => f.up.streams.slice(firstNew).some((s) => s.requests.some((r) => r.equals(req))), 5000);
            }
          } finally {
            c.close();
          }
          await witness.check();
        }),
        { numRuns: 120 },
      );
      await eventually('the fuzzed streams to end', () => f.proxy.getStatus().resources.sessions === 1);
      assert.equal(f.proxy.getStatus().listening, true);
    });

    void it(`${flavour}: any response bytes from istiod are relayed, consumed or skipped by type, or end that stream with INTERNAL (counted, logged)`, async () => {
      let caseNo = 0;
      await fc.assert(
        fc.asyncProperty(arbResponseBytes(delta), fc.boolean(), async (resp, odd) => {
          nackOdd = odd;
          await eventually('the previous case to end', () => f.proxy.getStatus().activeStreams === 1);
          const marker = `type.googleapis.com/envoy.fuzz.${flavour}${++caseNo}`;
          f.planned.set(marker, [resp]);
          const errorsBefore = await counter(f.registry, 'istio_agent_istiod_connection_terminations', { type: 'error' });
          const c = new RawAdsClient(f.udsPath, delta);
          try {
            c.send(delta ? deltaRequest(marker) : sotwRequest(marker));
            const upstream = await f.up.waitFor('the upstream stream', () =>
              f.up.streams.find((s) => s.delta === delta && s.requests.some((r) => readable(() => summarizeRequest(r, delta).typeUrl) === marker)),
            );
            const sum = readable(() => summarizeResponse(resp, delta));
            if (sum === undefined) {
              const st = await c.status();
              assert.equal(st.code, Status.INTERNAL);
              assert.match(st.details, /^bad response from upstream: malformed protobuf: /);
              assert.equal(await counter(f.registry, 'istio_agent_istiod_connection_terminations', { type: 'error' }), errorsBefore + 1);
              assert.ok(f.lines.slice(-6).some((l) => l.includes('upstream terminated with unexpected error INTERNAL: bad response from upstream')));
              return;
            }
            if (sum.typeUrl === NAME_TABLE_TYPE) {
              // consumed by the agent: ACKed or NACKed upstream with its nonce (when it has resources), never forwarded
              if (sum.resources > 0) {
                await f.up.waitFor('the agent ACK/NACK', () =>
                  upstream.requests.some((r) => {
                    const q = readable(() => summarizeRequest(r, delta));
                    return q?.typeUrl === NAME_TABLE_TYPE && q.nonce === sum.nonce && (delta || q.nack || q.versionInfo === sum.versionInfo);
                  }),
                );
              }
            } else if (isForwardedToEnvoy(sum.typeUrl)) {
              assert.deepEqual(await c.next(), resp, 'relayed byte for byte');
            }
            // the stream goes on: a following push arrives (and nothing consumed or skipped came before it)
            const follow = delta ? deltaResponse(CLUSTER_TYPE, 'follow') : sotwResponse(CLUSTER_TYPE, 'follow');
            await upstream.write(follow);
            assert.deepEqual(await c.next(), follow);
            assert.equal(c.received.length, 0);
          } finally {
            c.close();
          }
          await witness.check();
        }),
        { numRuns: 120 },
      );
      await eventually('the fuzzed streams to end', () => f.proxy.getStatus().resources.sessions === 1);
      assert.equal(f.proxy.getStatus().listening, true);
      // type URLs from the peers never grow the per-type status past its bound, and stay own properties
      const types = f.proxy.getStatus().types;
      assert.ok(Object.keys(types).length <= MAX_TRACKED_TYPES);
      assert.equal(Object.getPrototypeOf(types), Object.prototype);
    });
  }
});

void describe('xds proxy: bounded memory (counted, not timed)', () => {
  void it('1,000 pushes (each ACKed) through one stream hold nothing more than the first 100 did', async () => {
    const f = await fuzzHarness();
    try {
      const c = new RawAdsClient(f.udsPath, false);
      const marker = CLUSTER_TYPE;
      f.planned.set(marker, [sotwResponse(marker, 'p0', 'v0', 4, 1024)]);
      c.send(sotwRequest(marker));
      await c.next();
      const upstream = f.up.streams.at(-1)!;
      const push = async (i: number): Promise<void> => {
        const r = sotwResponse(marker, `p${i}`, `v${i}`, 4, 1024);
        await upstream.write(r);
        assert.deepEqual(await c.next(), r);
        c.send(DiscoveryRequest.encode({ type_url: marker, version_info: `v${i}`, response_nonce: `p${i}` }));
      };
      for (let i = 1; i <= 100; i++) await push(i);
      await f.up.waitFor('the 100th ACK', () => upstream.requests.length === 101);
      await collect();
      const at100 = f.proxy.getStatus().resources;
      const mem100 = process.memoryUsage();
      for (let i = 101; i <= 1000; i++) await push(i);
      await f.up.waitFor('the 1000th ACK', () => upstream.requests.length === 1001);
      await collect();
      const at1000 = f.proxy.getStatus().resources;
      const mem1000 = process.memoryUsage();
      console.log(
        `1,000 pushes: rss ${mib(mem100.rss)} MiB after 100 -> ${mib(mem1000.rss)} MiB after 1,000, heap ${mib(mem100.heapUsed)} -> ${mib(mem1000.heapUsed)} MiB ` +
          `(test process: proxy, istiod stand-in and client); proxy holds ${JSON.stringify(at1000)}`,
      );
      assert.deepEqual(at1000, at100);
      assert.deepEqual(at1000, { sessions: 1, sessionObjects: 1, upstreamChannels: 1, sendTimers: 0, queuedRequests: 0, trackedTypes: 1 });
      assert.equal(f.proxy.getStatus().counts.responses, 1001);
      assert.equal(f.up.connections(), 1, 'one connection to istiod for the one stream');
      c.close();
      await eventually('the stream to end', () => f.proxy.getStatus().resources.sessions === 0);
      await eventually('its connection to istiod to close', () => f.up.connections() === 0, 5000);
    } finally {
      await f.close();
    }
  });

  void it('200 malformed requests (and 200 invented type URLs) leave no session, channel, timer or queued request behind', async () => {
    const f = await fuzzHarness();
    try {
      const malformed = [Buffer.from([0x0b]), Buffer.from([0x22, 0x10, 0x41]), Buffer.from([0x08, 0xff]), Buffer.from([0x00, 0x00]), Buffer.from([0x0a, 0x05, 0x01])];
      const run = async (i: number): Promise<void> => {
        const delta = i % 2 === 1;
        const c = new RawAdsClient(f.udsPath, delta);
        c.send(malformed[i % malformed.length]!);
        const st = await c.status();
        assert.equal(st.code, Status.INTERNAL);
        c.close();
      };
      await collect();
      const before = process.memoryUsage();
      // one at a time: a new stream closes the previous one (no hand-over is open)
      for (let i = 0; i < 200; i++) await run(i);
      assert.equal(await counter(f.registry, 'istio_agent_envoy_connection_terminations', { type: 'error' }), 200);
      // valid requests for invented type URLs: relayed, but per-type status stays bounded
      for (let i = 0; i < 200; i++) {
        const c = new RawAdsClient(f.udsPath, false);
        c.send(sotwRequest(`type.googleapis.com/envoy.invented.T${i}`));
        await c.next();
        c.close();
      }
      await eventually('every stream to end', () => f.proxy.getStatus().resources.sessions === 0 && f.proxy.getStatus().resources.upstreamChannels === 0);
      // every connection to istiod is gone (a channel closed right after its first call must not connect later)
      await eventually('the connections to istiod to close', () => f.up.connections() === 0, 5000).catch(() => {
        throw new Error(`${f.up.connections()} connections to istiod are still open after every stream ended`);
      });
      await collect();
      const held = f.proxy.getStatus().resources;
      const after = process.memoryUsage();
      console.log(
        `200 malformed + 200 invented-type streams: rss ${mib(before.rss)} -> ${mib(after.rss)} MiB, heap ${mib(before.heapUsed)} -> ${mib(after.heapUsed)} MiB ` +
          `(test process: proxy, istiod stand-in and clients); proxy holds ${JSON.stringify(held)}`,
      );
      assert.deepEqual(held, { sessions: 0, sessionObjects: 0, upstreamChannels: 0, sendTimers: 0, queuedRequests: 0, trackedTypes: MAX_TRACKED_TYPES });
      assert.equal(f.proxy.getStatus().counts.streams, 400);
      // and it still serves
      const c = new RawAdsClient(f.udsPath, true);
      c.send(deltaRequest(CLUSTER_TYPE));
      await c.next();
      c.close();
    } finally {
      await f.close();
    }
  });
});
