// Stuck-stream detection in the xDS proxy (issue 8): an istiod that keeps the connection and the stream open
// but answers nothing is detected (the request it must answer goes unanswered for stuckStreamTimeoutMs),
// the pair is closed (counted, logged, Envoy's stream ended with UNAVAILABLE), and the next stream recovers
// once the control plane answers again. Requests istiod need not answer (ACKs) never end a stream.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as Status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { memoryLogger } from '../../src/lib/log.js';
import { createXdsProxy, xdsProxyMetrics, type XdsProxyEvent } from '../../src/xds/index.js';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../../src/xds/types.js';
import { AnswerWatchdog, mustBeAnswered } from '../../src/xds/watchdog.js';
import { RawAdsClient, RawUpstream, sotwRequest } from './raw-peers.js';

const TIMEOUT_MS = 1000;

async function stuckCount(reg: Registry): Promise<number> {
  const m = await reg.getSingleMetric('istio_agent_xds_stuck_streams_total')?.get();
  return m?.values.find((v) => v.labels.reason === 'no-answer')?.value ?? 0;
}

void describe('stuck-stream detection', () => {
  let up: RawUpstream;
  let blackHoled = true;
  before(async () => {
    // black-holed: the connection and the stream are accepted, the requests read, nothing answered
    up = await new RawUpstream({ onRequest: (s, req) => (blackHoled ? undefined : up.answer(s, req)) }).start();
  });
  after(() => up.stop());

  void it('a black-holed istiod is detected, the pair closed and counted; the stream recovers once istiod answers again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xds-stuck-'));
    const udsPath = join(dir, 'XDS');
    const registry = new Registry();
    const { log, lines } = memoryLogger('default:info,xdsproxy:info');
    const events: XdsProxyEvent[] = [];
    const proxy = createXdsProxy({
      udsPath,
      discoveryAddress: up.address,
      tls: null,
      tokenPath: null,
      log,
      metrics: xdsProxyMetrics(registry),
      stuckStreamTimeoutMs: TIMEOUT_MS,
      onEvent: (e) => events.push(e),
      closeTimeoutMs: 300,
    });
    await proxy.start();
    const clients: RawAdsClient[] = [];
    try {
      const c1 = new RawAdsClient(udsPath, false);
      clients.push(c1);
      c1.send(sotwRequest(CLUSTER_TYPE));
      await up.waitFor('the request upstream', () => up.streams[0]?.requests.length);
      assert.deepEqual(proxy.getStatus().awaitingAnswer, [CLUSTER_TYPE]);
      const st = await c1.status(30_000);
      assert.equal(st.code, Status.UNAVAILABLE);
      assert.match(st.details, /istiod did not answer the CDS request within 1000ms; closing the stream so that Envoy reconnects/);
      await up.waitFor('the upstream stream cancelled', () => up.streams[0]?.ended);
      assert.equal(await stuckCount(registry), 1);
      assert.equal(proxy.getStatus().counts.stuckStreams, 1);
      assert.match(proxy.getStatus().lastError?.message ?? '', /did not answer the CDS request/);
      assert.ok(lines.some((l) => /\twarn\txdsproxy\tistiod did not answer the CDS request/.test(l)), lines.join(''));
      assert.ok(events.some((e) => e.kind === 'stuck' && e.typeUrl === CLUSTER_TYPE));

      // the control plane answers again: Envoy's next stream is relayed and stays open
      blackHoled = false;
      const c2 = new RawAdsClient(udsPath, false);
      clients.push(c2);
      c2.send(sotwRequest(CLUSTER_TYPE));
      await c2.next();
      assert.equal(proxy.getStatus().awaitingAnswer, undefined);
      // an ACK and a new type: istiod answers the new type; the ACK needs no answer and ends nothing
      c2.send(sotwRequest(CLUSTER_TYPE, 'n-ack'));
      c2.send(sotwRequest(LISTENER_TYPE));
      await c2.next();
      await sleep(TIMEOUT_MS * 2.5);
      assert.equal(c2.ended, false, 'a stream whose requests were answered is left alone');
      assert.equal(await stuckCount(registry), 1);
      assert.equal(up.streams.length, 2, 'one new upstream stream for the new Envoy stream');
    } finally {
      for (const c of clients) c.close();
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('watchdog: only the first request of a type (no nonce, not a NACK) must be answered; 0 disables it', async () => {
    assert.equal(mustBeAnswered({ nonce: '', nack: false }, true), true);
    assert.equal(mustBeAnswered({ nonce: 'n1', nack: false }, false), false, 'an ACK');
    assert.equal(mustBeAnswered({ nonce: 'n1', nack: true }, false), false, 'istiod does not answer a NACK');
    assert.equal(mustBeAnswered({ nonce: '', nack: false }, false), false, 'a later request of a type already asked for');
    const fired: string[] = [];
    const off = new AnswerWatchdog(0, (t) => fired.push(t));
    off.expectAnswer(CLUSTER_TYPE);
    assert.deepEqual(off.waiting, []);
    const w = new AnswerWatchdog(50, (t) => fired.push(t));
    w.expectAnswer(CLUSTER_TYPE);
    w.expectAnswer(LISTENER_TYPE);
    w.answered(CLUSTER_TYPE);
    assert.deepEqual(w.waiting, [LISTENER_TYPE]);
    await sleep(300);
    assert.deepEqual(fired, [LISTENER_TYPE], 'fires once, for the unanswered type');
    assert.deepEqual(w.waiting, []);
  });
});
