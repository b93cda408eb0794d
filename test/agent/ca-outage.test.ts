// The CA goes away past the rotation point and comes back before the certificate expires, under a steady
// request stream between two pods (each request a new mTLS handshake): no request fails, Envoy's SDS stream
// stays up (the agent never fails it for a CA outage), the agent keeps serving the current certificate, the
// outage shows in its log, its metrics and /debug/status, and the rotation completes when the CA returns.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../helpers/http.js';
import { startPair, type Pair } from './pair.js';

const TTL_S = 16;

void describe('CA outage past the rotation point (two pods, real Envoy, in-repo CA)', { timeout: 120_000 }, () => {
  let pair: Pair;
  before(async () => {
    pair = await startPair({ env: { SECRET_TTL: `${TTL_S}s`, SECRET_GRACE_PERIOD_RATIO: '0.5', SECRET_GRACE_PERIOD_RATIO_JITTER: '0' } });
  });
  after(() => pair?.close());

  void it('keeps serving through the outage and rotates when the CA is back, before expiry', async () => {
    const { a } = pair;
    const load = pair.load();
    try {
      const before = await pair.status(a);
      const serial0 = before.identity.certificate.serial.toLowerCase();
      const rotateAt = Date.parse(before.identity.certificate.nextRotation);
      const notAfter = Date.parse(before.identity.certificate.notAfter);
      const envoy0 = await pair.envoy(a);
      const sdsResponses0 = before.identity.sds.counts.responses;
      // the CA goes away before the rotation point and stays away past it
      await pair.stopCa(a);
      await sleep(Math.max(0, rotateAt - Date.now()) + 3000);
      const during = await pair.status(a);
      assert.equal(during.identity.certificate.serial.toLowerCase(), serial0, 'the current certificate is kept');
      assert.equal(during.identity.state, 'renewing');
      assert.match(during.identity.lastError.message, /Unavailable/);
      assert.ok(during.identity.consecutiveFailures >= 1);
      assert.deepEqual((await pair.certs(a)).leaves, [serial0], 'Envoy still holds it');
      assert.ok(Date.now() < notAfter, 'still before expiry');
      // the CA returns: the renewal completes at the next retry, well before the old certificate expires
      await pair.startCa(a);
      const renewed = await eventually(async () => {
        const s = await pair.status(a);
        const serial = s.identity.certificate.serial.toLowerCase();
        return serial !== serial0 && (await pair.certs(a)).leaves.includes(serial) ? serial : undefined;
      }, Math.max(1000, notAfter - Date.now()), 'the renewed certificate in Envoy before the old one expired');
      assert.ok(Date.now() < notAfter, 'renewed before expiry');
      assert.deepEqual((await pair.certs(a)).leaves, [renewed]);
      // the SDS stream was never failed: same Envoy, the streams still up and answering
      const after = await pair.status(a);
      assert.equal(after.identity.sds.streams.length, before.identity.sds.streams.length);
      assert.ok(after.identity.sds.counts.responses > sdsResponses0);
      assert.equal(after.identity.sds.counts.streams, before.identity.sds.counts.streams, 'no new SDS stream: Envoy never had to reconnect');
      assert.deepEqual(await pair.envoy(a), envoy0);
      // the outage in logs and metrics
      assert.match(a.agent.output(), /failed to sign: create certificate: rpc error: code = Unavailable.*the CA is unavailable, retrying in \d+ms \(current certificate valid until/);
      assert.match(a.agent.output(), /workload certificate renewed after \S+ of CA errors/);
      const m = await pair.metrics(a);
      assert.ok(Number(/^istio_agent_cert_refresh_failures_total\{reason="unavailable"\} (\d+)/m.exec(m)?.[1]) >= 1, m);
      assert.ok(Number(/^istio_agent_num_failed_outgoing_requests\{request_type="csr"\} (\d+)/m.exec(m)?.[1]) >= 1, m);
      assert.ok(Number(/^istio_agent_cert_next_rotation_timestamp_seconds ([\d.e+]+)/m.exec(m)?.[1]) * 1000 > Date.now());
    } finally {
      await load.stop();
    }
    const { ok, failures } = await load.stop();
    assert.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} requests failed\n${pair.diag()}`);
    assert.ok(ok > 50, `a steady stream: ${ok} requests`);
  });
});
