// Health reporting to the control plane (issue 8): with a readinessProbe in ProxyConfig the agent probes
// the application and Envoy's readiness and sends `istio.v1.HealthInformation` requests on the xDS stream,
// as pilot-agent does for WorkloadEntry health: healthy once the probe passes (no error_detail), unhealthy
// with the probe's error (code 13) when it fails; only on a change. Real Envoy, in-repo control plane
// (which records every request it receives).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startControlPlane } from '../controlplane/server.js';
import { startHttpUpstream } from '../controlplane/http-upstream.js';
import { TestCa } from '../controlplane/pki.js';
import { HEALTH_INFO_TYPE } from '../../src/xds/types.js';
import { HealthVerdict } from '../../src/status/workload-health.js';
import { parseHealthProbe } from '../../src/status/health-probe-config.js';
import { eventually, httpGet } from '../helpers/http.js';
import { createPod } from '../helpers/pod.js';
import { LISTENER_PORT, TOKEN } from './harness.js';

void describe('health reporting to the control plane (agent, real Envoy, in-repo control plane)', { timeout: 120_000 }, () => {
  void it('reports healthy once the app probe passes, then unhealthy with the probe error when the app goes away', async () => {
    const app = await startHttpUpstream({ name: 'app' });
    const ca = new TestCa();
    const pod = await createPod({
      token: TOKEN,
      proxyConfig: { drainDuration: '2s', terminationDrainDuration: '2s', readinessProbe: { httpGet: { host: '127.0.0.1', port: app.port, path: '/healthz' }, periodSeconds: 1 } },
    });
    const cp = await startControlPlane({
      tls: true,
      ca,
      rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'),
      requireToken: TOKEN,
      http: { listenerPort: LISTENER_PORT, upstreamPort: app.port, servedBy: 'cp-1' },
    });
    const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
    pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
    pod.env.CA_ADDR = `localhost:${cp.port}`;
    let appOpen = true;
    try {
      const agent = pod.start();
      const health = () => cp.requests.filter((r) => r.typeUrl === HEALTH_INFO_TYPE);
      await eventually(async () => (health().length >= 1 ? true : undefined), 60_000, 'a health report');
      assert.equal(health()[0]!.kind, 'initial', `healthy: no error_detail (${JSON.stringify(health()[0])})`);
      assert.equal(health()[0]!.error, undefined);
      // sent after Envoy's first LDS request on the stream, as pilot-agent holds it back
      const firstLds = cp.requests.findIndex((r) => r.typeUrl.endsWith('Listener'));
      assert.ok(firstLds >= 0 && firstLds < cp.requests.indexOf(health()[0]!));
      // healthy again and again: nothing more is sent (only changes are)
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(health().length, 1);

      await app.close();
      appOpen = false;
      await eventually(async () => (health().length >= 2 ? true : undefined), 30_000, 'an unhealthy report');
      const bad = health()[1]!;
      // error_detail carries the probe's error (the control plane records it as the request's error)
      assert.match(bad.error ?? '', /HTTP probe http:\/\/127\.0\.0\.1:\d+\/healthz: connect ECONNREFUSED/);
      assert.match(agent.output(), /healthcheck\tfailure threshold hit, marking as unhealthy/);
      const page = await httpGet('http://127.0.0.1:15020/');
      assert.match(page.body, /reported unhealthy to istiod/);
    } finally {
      await pod.cleanup();
      await cp.stop();
      if (appOpen) await app.close();
    }
  });

  void it('a gRPC readinessProbe is refused at start-up, naming it', async () => {
    const pod = await createPod({ rootCert: new TestCa().rootCertPem, proxyConfig: { readinessProbe: { grpc: { port: 8080 } } } });
    try {
      const agent = pod.start();
      const exit = await agent.exited;
      assert.equal(exit.code, 255);
      assert.match(agent.output(), /proxyConfig: readinessProbe\.grpc: not supported for health reporting/);
    } finally {
      await pod.cleanup();
    }
  });

  void it('thresholds and defaults as pilot-agent', () => {
    const c = parseHealthProbe({ tcpSocket: { port: 80 } })!;
    assert.deepEqual([c.periodMs, c.timeoutMs, c.successThreshold, c.failureThreshold, c.initialDelayMs], [10_000, 1000, 1, 1, 0]);
    assert.deepEqual(parseHealthProbe({ httpGet: { port: 8080 } })!.method, { kind: 'http', scheme: 'http', host: 'localhost', port: 8080, path: '/', headers: [] });
    assert.throws(() => parseHealthProbe({ httpGet: { port: 0 } }), /readinessProbe.httpGet.port/);
    assert.equal(parseHealthProbe(undefined), undefined);
    const v = new HealthVerdict({ successThreshold: 2, failureThreshold: 2 });
    assert.equal(v.next('down'), undefined, 'nothing is sent before the first healthy verdict');
    assert.equal(v.next(undefined), undefined);
    assert.deepEqual(v.next(undefined), { healthy: true });
    assert.equal(v.next(undefined), undefined);
    assert.equal(v.next('x'), undefined);
    assert.deepEqual(v.next('y'), { healthy: false, message: 'y' });
    assert.equal(v.next('z'), undefined);
  });
});
