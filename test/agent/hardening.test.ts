// Exit paths and restart races (issue: hardening), end to end with the real Envoy. Each test failed on the
// code before its fix:
//   1. Envoy exiting cleanly (POST :15000/quitquitquit, how Jobs stop their sidecar) ends the agent with
//      Envoy's code; it is not a crash and no new Envoy is started;
//   2. a hot restart Envoy rejects leaves the running Envoy and the last good bootstrap in place, and
//      POST /restart says it failed (Envoy's --mode validate catches some; others fail in the new epoch);
//   3. SIGTERM wins over SIGHUP and POST /restart during the drain; no Envoy outlives the agent, even when
//      the agent is killed with SIGKILL;
//   7. readiness is never 200 while no Envoy runs (crash-restart back-off).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually, httpGet } from '../helpers/http.js';
import { createPod } from '../helpers/pod.js';
import { AGENT_BIN } from '../helpers/peers.js';
import { envoyEpoch, envoyPidsIn, readyOn15021, startMesh } from './harness.js';

const post = (url: string): Promise<{ status: number; body: string }> => httpGet(url, { method: 'POST', timeoutMs: 60_000 });

test('1. Envoy exiting with code 0 on its own (/quitquitquit on its admin) ends the agent with code 0, no restart', { timeout: 90_000 }, async (t) => {
  const { pod, agent } = await startMesh(t);
  assert.equal((await post('http://127.0.0.1:15000/quitquitquit')).status, 200);
  const exit = await agent.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, agent.output().slice(-2000));
  assert.match(agent.output(), /Envoy exited normally/);
  assert.doesNotMatch(agent.output(), /exited unexpectedly/);
  assert.equal((agent.output().match(/Envoy command:/g) ?? []).length, 1, 'no second Envoy');
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
});

test('2a. a bootstrap Envoy refuses (--mode validate) is rejected before any new epoch: 503 from /restart, the running Envoy and envoy-rev.json untouched', { timeout: 90_000 }, async (t) => {
  const { pod, agent } = await startMesh(t);
  const file = join(pod.cwd, 'etc/istio/proxy/envoy-rev.json');
  const good = await readFile(file, 'utf8');
  await pod.writeAnnotations({ 'proxy.istio.io/config': JSON.stringify({ proxyStatsMatcher: { inclusionPrefixes: [''] } }) });
  await eventually(async () => /rejected new configuration \(changed .*annotations\): Envoy rejected the new bootstrap: .*Prefix: value length must be at least 1/.test(agent.output()), 20_000, 'the rejection logged').catch((e: Error) => {
    throw new Error(`${e.message}\n${agent.output().slice(-3000)}`);
  });
  const r = await post('http://127.0.0.1:15020/restart');
  assert.equal(r.status, 503);
  assert.match(r.body, /restart failed: rejected new configuration \(POST \/restart\): Envoy rejected the new bootstrap/);
  assert.equal(await readFile(file, 'utf8'), good, 'envoy-rev.json is still the last good bootstrap');
  assert.equal(await envoyEpoch(), 0);
  assert.equal((agent.output().match(/Envoy command:/g) ?? []).length, 1, 'no new epoch was started');
  assert.ok(await readyOn15021());
  const m = (await httpGet('http://127.0.0.1:15020/stats/prometheus')).body;
  assert.match(m, /^istio_agent_config_rejections_total\{source="envoy"\} [2-9]/m);
});

test('2b. a new epoch that dies at start (a stats regex only Envoy\'s start-up rejects): /restart says so, the old epoch keeps serving, the last good bootstrap is back; later restarts (crash, hot) use it', { timeout: 90_000 }, async (t) => {
  const { pod, agent } = await startMesh(t);
  const file = join(pod.cwd, 'etc/istio/proxy/envoy-rev.json');
  const good = await readFile(file, 'utf8');
  const before = (await envoyPidsIn(pod.cwd))[0];
  // agent and `envoy --mode validate` accept it; Envoy fails to start with it ("missing ): ((")
  await pod.writeAnnotations({ 'sidecar.istio.io/statsInclusionRegexps': '((' });
  await eventually(async () => /hot restart failed \(changed .*annotations\): Envoy epoch 1 exited before it was ready \(exit status 1\); restored the last good bootstrap/.test(agent.output()), 30_000, 'the failed hot restart logged').catch((e: Error) => {
    throw new Error(`${e.message}\n${agent.output().slice(-3000)}`);
  });
  assert.equal(await readFile(file, 'utf8'), good, 'the last good bootstrap is back on disk');
  assert.deepEqual(await envoyPidsIn(pod.cwd), [before], 'the old epoch keeps serving');
  assert.ok(await readyOn15021());
  assert.equal((await httpGet('http://127.0.0.1:18080/')).status, 200);
  // a crash now restarts Envoy from the last good bootstrap (not the rejected one)
  process.kill(before!, 'SIGKILL');
  await eventually(async () => (await envoyPidsIn(pod.cwd)).some((p) => p !== before), 15_000, 'a new Envoy after the crash');
  await eventually(readyOn15021, 30_000, 'ready again after the crash');
  assert.equal(await readFile(file, 'utf8'), good);
  // and a hot restart with good inputs works again
  await pod.writeAnnotations({ 'kubectl.kubernetes.io/default-container': 'sleep' });
  const r = await post('http://127.0.0.1:15020/restart');
  assert.equal(r.status, 200, r.body);
  assert.equal(agent.child.exitCode, null);
});

test('3a. SIGTERM wins: SIGHUP and POST /restart during the drain start no new epoch; exit 0, no Envoy left', { timeout: 90_000 }, async (t) => {
  const { pod, agent } = await startMesh(t);
  agent.signal('SIGTERM');
  await eventually(async () => /received signal SIGTERM, shutting down/.test(agent.output()), 5000, 'termination begun');
  agent.signal('SIGHUP');
  const r = await post('http://127.0.0.1:15020/restart').catch((e: Error) => ({ status: 0, body: e.message }));
  assert.notEqual(r.status, 200, `a restart during the drain was accepted: ${r.body}`);
  await pod.writeAnnotations({ 'sidecar.istio.io/statsInclusionPrefixes': 'changed' });
  const exit = await agent.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.equal((agent.output().match(/Envoy command:/g) ?? []).length, 1, 'no epoch started during the drain');
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
});

test('3b. the agent killed with SIGKILL takes Envoy with it (parent-death signal): no orphan Envoy', { timeout: 90_000 }, async (t) => {
  // output to a file, as a container runtime keeps it: with a pipe that closes, Envoy would die of SIGPIPE anyway
  const pod = await createPod({ proxyConfig: { discoveryAddress: '127.0.0.1:15912', controlPlaneAuthPolicy: 'NONE' }, env: { CA_ADDR: '127.0.0.1:15010' } });
  t.after(() => pod.cleanup());
  const log = join(pod.cwd, 'agent.log');
  const fd = openSync(log, 'w');
  const agent = spawn(AGENT_BIN, pod.args, { cwd: pod.cwd, env: pod.env, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  const envoys = await eventually(async () => {
    const e = await envoyPidsIn(pod.cwd);
    return e.length ? e : undefined;
  }, 20_000, 'Envoy started');
  agent.kill('SIGKILL');
  await eventually(async () => (await envoyPidsIn(pod.cwd)).length === 0, 10_000, 'Envoy gone after the agent was killed').catch(async (e: Error) => {
    for (const p of envoys) process.kill(p, 'SIGKILL');
    throw new Error(`${e.message}\n${(await readFile(log, 'utf8')).slice(-2000)}`);
  });
});

test('7. readiness is 503 from the moment Envoy dies until the restarted Envoy is ready (never 200 without an Envoy)', { timeout: 90_000 }, async (t) => {
  const { pod, agent } = await startMesh(t);
  const pid = (await envoyPidsIn(pod.cwd))[0]!;
  assert.equal((await httpGet('http://127.0.0.1:15020/healthz/ready')).status, 200);
  process.kill(pid, 'SIGKILL');
  const seen: Array<{ status: number; envoy: number[] }> = [];
  // the killed process until it is really gone (signal delivery and reaping take a moment)
  const running = (p: number): boolean => {
    try {
      return !/\) [ZX] /.test(readFileSync(`/proc/${p}/stat`, 'latin1'));
    } catch {
      return false;
    }
  };
  // from the kill until a new Envoy runs and is ready
  for (let i = 0; i < 3000; i++) {
    const oldBefore = running(pid);
    const status = (await httpGet('http://127.0.0.1:15020/healthz/ready', { timeoutMs: 2000 }).catch(() => ({ status: 0 }))).status;
    const envoy = [...(oldBefore ? [pid] : []), ...(await envoyPidsIn(pod.cwd)).filter((p) => p !== pid)];
    seen.push({ status, envoy });
    // a 200 while the killed Envoy has not exited yet (SIGKILL not yet delivered and reaped) is right:
    // keep watching until it is gone and a new Envoy is ready
    if (status === 200 && !oldBefore) break;
    await sleep(5);
  }
  const wrong = seen.filter((s) => s.status === 200 && s.envoy.length === 0);
  assert.deepEqual(wrong, [], `ready while no Envoy was running: ${JSON.stringify(seen.slice(0, 5))} ... ${seen.length}`);
  assert.ok(seen.some((x) => x.status === 503), `503 while Envoy was being restarted: ${JSON.stringify(seen.slice(0, 5))}`);
  assert.equal(seen.at(-1)!.status, 200, 'ready again once the new Envoy is');
  assert.match(agent.output(), /Envoy exited unexpectedly \(signal: killed\); restarting it/);
});
