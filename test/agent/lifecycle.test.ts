// Issue #2 acceptance, end to end: the built CLI started as an injected istio-proxy container, the real
// Envoy, and a control plane speaking TLS with a bearer token like istiod on 15012.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LISTENER_PORT, TOKEN, envoyEpoch, envoyPidsIn, readyOn15021, startMesh } from './harness.js';
import { eventually, httpGet, steadyLoad } from '../helpers/http.js';

const APP = `http://127.0.0.1:${LISTENER_PORT}/`;

test('an injected pod reaches ready on :15021 and serves a request through Envoy; xDS goes over TLS with the token and ClusterID', async (t) => {
  const { cp, pod, agent } = await startMesh(t);
  const r = await httpGet(APP);
  assert.equal(r.status, 200);
  assert.match(r.body, /hello from app: GET \//);
  assert.equal((await httpGet('http://127.0.0.1:15020/healthz/ready')).status, 200);
  // the stream reached the control plane through our proxy, Delta by default, with pilot-agent's metadata
  const s = cp.streams[0]!;
  assert.equal(s.flavour, 'delta');
  assert.equal(s.metadata.authorization, `Bearer ${TOKEN}`);
  assert.equal(s.metadata.clusterid, 'Kubernetes');
  assert.match(s.nodeId ?? '', /^sidecar~127\.0\.0\.1~sleep-0\.default~default\.svc\.cluster\.local$/);
  // the UDS is owner-only; the bootstrap is where Envoy reads it
  assert.equal((await stat(join(pod.cwd, 'etc/istio/proxy/XDS'))).mode & 0o777, 0o600);
  const boot = JSON.parse(await readFile(join(pod.cwd, 'etc/istio/proxy/envoy-rev.json'), 'utf8')) as { node: { id: string } };
  assert.equal(boot.node.id, s.nodeId);
  // the argv is pilot-agent's, plus hot-restart arguments
  assert.match(agent.output(), /Envoy command: \[-c etc\/istio\/proxy\/envoy-rev\.json --drain-time-s 2 --drain-strategy immediate --local-address-ip-version v4 --file-flush-interval-msec 1000 --allow-unknown-static-fields -l warning --component-log-level misc:error --skip-deprecated-logs --concurrency 2 --restart-epoch 0 /);
  // merged metrics: agent + Envoy
  const m = await httpGet('http://127.0.0.1:15020/stats/prometheus');
  assert.match(m.body, /^istio_agent_xds_proxy_responses \d+/m);
  assert.match(m.body, /^envoy_server_live/m);
  agent.signal('SIGTERM');
  assert.deepEqual(await agent.exited, { code: 0, signal: null });
});

test('SIGTERM during a steady stream of requests: readiness 503 at once, in-flight requests complete, exit 0 after the drain, no Envoy left', async (t) => {
  const { pod, agent } = await startMesh(t);
  const load = steadyLoad(APP, { concurrency: 2 });
  await eventually(async () => load.result.ok > 50, 10_000, 'load');
  const inflight = [1, 2, 3].map(() => httpGet(`${APP}slow?delay=1500`, { timeoutMs: 10_000 }));
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  agent.signal('SIGTERM');
  const ready = await eventually(async () => {
    const r = await httpGet('http://127.0.0.1:15020/healthz/ready', { timeoutMs: 1000 });
    return r.status === 503 ? r : undefined;
  }, 2000, 'readiness to turn 503', 20);
  assert.ok(Date.now() - t0 < 1000, `readiness turned 503 only after ${Date.now() - t0}ms`);
  assert.equal(ready.status, 503);
  for (const r of await Promise.all(inflight)) assert.equal(r.status, 200);
  const exit = await agent.exited;
  const elapsed = Date.now() - t0;
  await load.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(elapsed >= 1900, `agent exited after ${elapsed}ms, before terminationDrainDuration (2s)`);
  assert.ok(elapsed < 8000, `agent took ${elapsed}ms to exit`);
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
  assert.match(agent.output(), /Graceful termination period is 2s, starting/);
  assert.match(agent.output(), /Agent has successfully terminated/);
});

test('hot restart during a steady stream (>= 2,000 requests): zero failures, the new epoch serves, the old one exits after its shutdown time', async (t) => {
  const { pod, agent } = await startMesh(t);
  const load = steadyLoad(APP, { concurrency: 4 });
  await eventually(async () => load.result.ok > 300, 15_000, 'load');
  const [oldPid] = await envoyPidsIn(pod.cwd);
  agent.signal('SIGHUP');
  await eventually(async () => (await envoyEpoch()) === 1, 15_000, 'epoch 1 to serve admin');
  const atRestart = load.result.ok;
  await eventually(async () => load.result.ok >= atRestart + 2000, 60_000, '2,000 requests after the restart');
  // the old epoch goes away on its own after --parent-shutdown-time-s (drain 2s + 5s)
  await eventually(async () => !(await envoyPidsIn(pod.cwd)).includes(oldPid!), 15_000, 'the old epoch to exit');
  const res = await load.stop();
  assert.equal(res.failed, 0, `failed requests: ${res.errors.join('; ')}`);
  assert.ok(res.ok >= 2300);
  assert.equal((await envoyPidsIn(pod.cwd)).length, 1);
  assert.match(agent.output(), /hot-restarting Envoy into epoch 1: SIGHUP/);
  assert.match(agent.output(), /Envoy epoch 0 exited after handing over to epoch 1/);
  assert.ok(await readyOn15021());
});

test('hot restart on POST /restart (loopback only) and on a change of the pod annotations; a bad annotation is rejected and counted, Envoy keeps serving', async (t) => {
  const { pod, agent } = await startMesh(t);
  const r = await httpGet('http://127.0.0.1:15020/restart', { method: 'POST' });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { epoch: 1 });
  await eventually(async () => (await envoyEpoch()) === 1, 15_000, 'epoch 1');
  // a changed bootstrap input (stats inclusion annotation changes the bootstrap) -> epoch 2
  await pod.writeAnnotations({ 'sidecar.istio.io/statsInclusionPrefixes': 'upstream_cx' });
  await eventually(async () => (await envoyEpoch()) === 2, 15_000, 'epoch 2 after the annotation change');
  const boot = await readFile(join(pod.cwd, 'etc/istio/proxy/envoy-rev.json'), 'utf8');
  assert.match(boot, /upstream_cx/);
  // a malformed proxy.istio.io/config annotation: rejected, counted, nothing restarted
  await pod.writeAnnotations({ 'sidecar.istio.io/statsInclusionPrefixes': 'upstream_cx', 'proxy.istio.io/config': 'drainDuration: 5x' });
  await agent.waitForLog(/rejected new configuration \(changed [^)]*annotations\); keeping the running configuration/, 10_000);
  const m = await httpGet('http://127.0.0.1:15020/stats/prometheus');
  assert.match(m.body, /istio_agent_config_rejections_total\{source="file"\} 1/);
  assert.match(m.body, /istio_agent_envoy_restarts_total\{reason="hot"\} 2/);
  assert.equal(await envoyEpoch(), 2);
  assert.equal((await httpGet(APP)).status, 200);
  assert.equal((await httpGet('http://127.0.0.1:15020/healthz/ready')).status, 200);
});

test('kill -9 of Envoy: restarted in place and ready again; past the crash budget the agent exits non-zero and says why', async (t) => {
  const { pod, agent } = await startMesh(t, { args: ['--restart-budget=1', '--restart-budget-window=5m'] });
  const [first] = await envoyPidsIn(pod.cwd);
  process.kill(first!, 'SIGKILL');
  await agent.waitForLog(/Envoy exited unexpectedly \(signal: killed\); restarting it/, 10_000);
  await eventually(async () => {
    const pids = await envoyPidsIn(pod.cwd);
    return pids.length === 1 && pids[0] !== first && (await readyOn15021());
  }, 30_000, 'the restarted Envoy to be ready');
  assert.equal((await httpGet(APP)).status, 200);
  const [second] = await envoyPidsIn(pod.cwd);
  process.kill(second!, 'SIGKILL');
  const exit = await agent.exited;
  assert.equal(exit.code, 1);
  assert.match(agent.output(), /Error: Envoy crashed 2 times within 300s, over the restart budget of 1 \(--restart-budget, --restart-budget-window\); giving up/);
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
});

test('--disable-hot-restart gives pilot-agent exactly: Envoy started with --disable-hot-restart, SIGHUP ignored, and the agent exits 0 when Envoy exits', async (t) => {
  const { pod, agent } = await startMesh(t, { args: ['--disable-hot-restart'] });
  assert.match(agent.output(), /Envoy command: \[-c etc\/istio\/proxy\/envoy-rev\.json --drain-time-s 2 --drain-strategy immediate --local-address-ip-version v4 --file-flush-interval-msec 1000 --disable-hot-restart --allow-unknown-static-fields -l warning --component-log-level misc:error --skip-deprecated-logs --concurrency 2\]/);
  agent.signal('SIGHUP');
  await agent.waitForLog(/received SIGHUP: hot restart is disabled/, 5000);
  const [pid] = await envoyPidsIn(pod.cwd);
  process.kill(pid!, 'SIGKILL');
  assert.deepEqual(await agent.exited, { code: 0, signal: null });
  await assert.rejects(stat(join(pod.cwd, 'etc/istio/proxy/envoy-rev.json')), /ENOENT/);
});

test('POST /quitquitquit exits at once without draining', async (t) => {
  const { pod, agent } = await startMesh(t, { pod: { proxyConfig: { terminationDrainDuration: '30s' } } });
  const t0 = Date.now();
  const r = await httpGet('http://127.0.0.1:15020/quitquitquit', { method: 'POST' });
  assert.equal(r.status, 200);
  assert.equal(r.body.trim(), 'OK');
  assert.deepEqual(await agent.exited, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 5000);
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
});

test('POST /drain (native-sidecar preStop) drains Envoy without exiting; the later SIGTERM then stops at once', async (t) => {
  const { agent } = await startMesh(t, { pod: { proxyConfig: { terminationDrainDuration: '30s' } } });
  const r = await httpGet('http://127.0.0.1:15020/drain', { method: 'POST' });
  assert.equal(r.status, 200);
  await agent.waitForLog(/Agent draining proxy/, 5000);
  // Envoy stays up (skip_exit) and keeps serving what is not inbound
  assert.equal((await httpGet(APP)).status, 200);
  const t0 = Date.now();
  agent.signal('SIGTERM');
  assert.deepEqual(await agent.exited, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 5000, 'the drain period was not skipped');
  assert.match(agent.output(), /Agent already drained, exiting immediately/);
});

test('EXIT_ON_ZERO_ACTIVE_CONNECTIONS: after SIGTERM the agent waits for the last active connection, then stops Envoy', async (t) => {
  const { pod, agent } = await startMesh(t, { pod: { env: { EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true', MINIMUM_DRAIN_DURATION: '1s' } } });
  const slow = httpGet(`${APP}slow?delay=4500`, { timeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  agent.signal('SIGTERM');
  await agent.waitForLog(/There are still 1 active connections/, 5000);
  assert.equal((await slow).status, 200);
  assert.deepEqual(await agent.exited, { code: 0, signal: null });
  assert.ok(Date.now() - t0 >= 4000, `exited after ${Date.now() - t0}ms, before the connection ended`);
  assert.match(agent.output(), /There are no more active connections\. terminating proxy/);
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
});
