// Readiness that explains itself (issue 8), with the built agent, the real Envoy and the in-repo control
// plane: the 503 body of :15020/healthz/ready (and through Envoy on :15021) names what blocks readiness,
// `agent wait` times out with that same reason, and the start-up phases are logged once at ready and
// exported as metrics. Causes shown: Envoy not started, a listener Envoy rejects (with its NACK message), a
// workload certificate the CA does not issue.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startControlPlane } from '../controlplane/server.js';
import { startHttpUpstream } from '../controlplane/http-upstream.js';
import { TestCa } from '../controlplane/pki.js';
import { LISTENER_TYPE } from '../../src/xds/types.js';
import { createPod } from '../helpers/pod.js';
import { AGENT_BIN } from '../helpers/peers.js';
import { eventually, httpGet } from '../helpers/http.js';
import { LISTENER_PORT, TOKEN, readyOn15021 } from './harness.js';

/** `agent wait` as the injector's postStart hook runs it; resolves to its exit code and stderr. */
function agentWait(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(AGENT_BIN, ['wait', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('exit', (code) => resolve({ code, stderr }));
  });
}

async function podWithControlPlane(o: { listenerMtls?: boolean; hangCa?: boolean } = {}) {
  const upstream = await startHttpUpstream({ name: 'app' });
  const ca = new TestCa();
  const pod = await createPod({ token: TOKEN, proxyConfig: { drainDuration: '2s', terminationDrainDuration: '2s' } });
  const cp = await startControlPlane({
    tls: true,
    ca,
    rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'),
    requireToken: TOKEN,
    ...(o.hangCa ? { caFault: 'hang' as const } : {}),
    http: { listenerPort: LISTENER_PORT, upstreamPort: upstream.port, servedBy: 'cp-1', ...(o.listenerMtls ? { listenerMtls: true } : {}) },
  });
  const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
  pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
  pod.env.CA_ADDR = `localhost:${cp.port}`;
  return {
    pod,
    cp,
    upstream,
    async close() {
      await pod.cleanup();
      await cp.stop();
      await upstream.close();
    },
  };
}

void describe('readiness that explains itself (agent, real Envoy, in-repo control plane)', { timeout: 180_000 }, () => {
  void it('Envoy not started: agent wait names it', async () => {
    const r = await agentWait(['--timeoutSeconds', '1', '--periodMillis', '200', '--url', 'http://127.0.0.1:15021/healthz/ready']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, /timeout waiting for Envoy proxy to become ready\. Last error: .*ECONNREFUSED.*nothing listens on 127\.0\.0\.1:15021: Envoy is not started/);
  });

  void it('a listener Envoy rejects: the 503 body and agent wait name LDS and the NACK; ready once fixed; start-up phases logged and exported', async () => {
    const m = await podWithControlPlane();
    try {
      // a listener Envoy cannot parse: LDS is NACKed
      m.cp.setResources(LISTENER_TYPE, [{ name: 'broken', value: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]) }]);
      const agent = m.pod.start();
      const body = await eventually(
        async () => {
          const r = await httpGet('http://127.0.0.1:15020/healthz/ready', { timeoutMs: 2000 }).catch(() => undefined);
          return r?.status === 503 && /last LDS NACK/.test(r.body) ? r.body : undefined;
        },
        60_000,
        'a 503 naming the LDS NACK',
      );
      assert.match(body, /^not ready: envoy: config received from XDS server, but was rejected: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected \(LDS not yet accepted by Envoy; last LDS NACK: .+\)$/m);
      // the same through Envoy's :15021, as the kubelet (and agent wait) reach it
      const via15021 = await httpGet('http://127.0.0.1:15021/healthz/ready', { timeoutMs: 2000 });
      assert.equal(via15021.status, 503);
      assert.match(via15021.body, /last LDS NACK/);
      const w = await agentWait(['--timeoutSeconds', '2', '--periodMillis', '200', '--requestTimeoutMillis', '1000']);
      assert.equal(w.code, 255);
      assert.match(w.stderr, /timeout waiting for Envoy proxy to become ready\. Last error: HTTP status code 503: not ready: envoy: config received from XDS server, but was rejected: .*LDS not yet accepted by Envoy; last LDS NACK: /);
      // /debug/status carries the same blockers
      const dbg = JSON.parse((await httpGet('http://127.0.0.1:15020/debug/status')).body) as { readiness: { ready: boolean; blockers: Array<{ check: string; reason: string }> } };
      assert.equal(dbg.readiness.ready, false);
      assert.equal(dbg.readiness.blockers[0]?.check, 'envoy');

      // fixed: ready, agent wait succeeds, the phases are logged once and exported
      m.cp.setHttpConfig({ listenerPort: LISTENER_PORT, upstreamPort: m.upstream.port, servedBy: 'cp-2' });
      await eventually(readyOn15021, 60_000, 'readiness once the listener is fixed');
      assert.equal((await agentWait(['--timeoutSeconds', '10'])).code, 0);
      const line = await agent.waitForLog(/start-up phases \(since the process started\): [^\n]+/, 10_000);
      for (const p of ['status_server_up', 'envoy_spawned', 'xds_connected', 'first_cds_ack', 'first_lds_ack', 'ready']) assert.match(line, new RegExp(`${p}=\\d+ms`));
      assert.equal(agent.output().match(/start-up phases/g)?.length, 1, 'logged once');
      const metrics = (await httpGet('http://127.0.0.1:15020/stats/prometheus')).body;
      for (const p of ['status_server_up', 'envoy_spawned', 'xds_connected', 'first_cds_ack', 'first_lds_ack', 'ready']) {
        assert.match(metrics, new RegExp(`^istio_agent_startup_phase_seconds\\{phase="${p}"\\} \\d`, 'm'));
      }
    } finally {
      await m.close();
    }
  });

  void it('a workload certificate the CA does not issue: named as a blocker until the CA answers', async () => {
    const m = await podWithControlPlane({ listenerMtls: true, hangCa: true });
    try {
      m.pod.start();
      const body = await eventually(
        async () => {
          const r = await httpGet('http://127.0.0.1:15020/healthz/ready', { timeoutMs: 2000 }).catch(() => undefined);
          return r?.status === 503 && /workload-certificate/.test(r.body) ? r.body : undefined;
        },
        60_000,
        'a 503 naming the workload certificate',
      );
      assert.match(body, /^not ready: workload-certificate: workload certificate requested by Envoy but not yet issued by the CA \(state pending\)/m);
      const w = await agentWait(['--timeoutSeconds', '2', '--periodMillis', '200', '--url', 'http://127.0.0.1:15020/healthz/ready']);
      assert.equal(w.code, 255);
      assert.match(w.stderr, /Last error: HTTP status code 503: .*not ready: workload-certificate: workload certificate requested by Envoy but not yet issued by the CA/);
      m.cp.caFault = undefined;
      await eventually(readyOn15021, 90_000, 'readiness once the CA answers');
    } finally {
      await m.close();
    }
  });
});
