// The control plane dies (kill -9) and comes back: Envoy keeps serving with its last config, the agent
// stays up, and Envoy reconnects through the proxy and takes new config from the new control plane.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPod } from '../helpers/pod.js';
import { REPO_ROOT } from '../helpers/peers.js';
import { eventually, httpGet } from '../helpers/http.js';
import { startHttpUpstream } from '../controlplane/http-upstream.js';
import { LISTENER_PORT, TOKEN, readyOn15021 } from './harness.js';

const CP_PORT = 15912;

function startCp(caDir: string, rootOut: string, upstreamPort: number, servedBy: string): { child: ChildProcess; ready: Promise<void>; output: () => string } {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'build/test/controlplane/main.js'), '--xds-address', `127.0.0.1:${CP_PORT}`, '--tls', '--root-cert-out', rootOut, '--ca-dir', caDir, '--require-token', TOKEN, '--listener-port', String(LISTENER_PORT), '--upstream-port', String(upstreamPort), '--served-by', servedBy], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('"event":"ready"')) resolve();
    });
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (c) => reject(new Error(`control plane exited ${c}: ${out}`)));
  });
  ready.catch(() => undefined);
  return { child, ready, output: () => out };
}

test('control plane killed and brought back: Envoy keeps serving, the agent stays up, Envoy reconnects through the proxy', async (t) => {
  const caDir = await mkdtemp(join(tmpdir(), 'cpca-'));
  const upstream = await startHttpUpstream({ name: 'app' });
  const pod = await createPod({ token: TOKEN, proxyConfig: { discoveryAddress: `localhost:${CP_PORT}`, drainDuration: '2s', terminationDrainDuration: '1s' } });
  const rootOut = join(pod.cwd, 'var/run/secrets/istio/root-cert.pem');
  let cp = startCp(caDir, rootOut, upstream.port, 'cp-1');
  t.after(async () => {
    cp.child.kill('SIGKILL');
    await pod.cleanup();
    await upstream.close();
    await rm(caDir, { recursive: true, force: true });
  });
  await cp.ready;
  const agent = pod.start();
  await eventually(readyOn15021, 30_000, 'ready');
  assert.equal((await httpGet(`http://127.0.0.1:${LISTENER_PORT}/`)).headers['x-served-by'], 'cp-1');

  cp.child.kill('SIGKILL');
  await new Promise((r) => cp.child.once('exit', r));
  // Envoy keeps its last config; the agent logs the upstream loss and stays up
  await agent.waitForLog(/xdsproxy\t.*(upstream|istiod|XDS).*(terminated|error|closed|failed|unavailable)/i, 15_000);
  for (let i = 0; i < 20; i++) assert.equal((await httpGet(`http://127.0.0.1:${LISTENER_PORT}/`)).status, 200);
  assert.equal(agent.child.exitCode, null);
  assert.equal((await httpGet('http://127.0.0.1:15020/healthz/ready')).status, 200);

  // a new control plane (same CA) on the same address, pushing a changed route header
  cp = startCp(caDir, rootOut, upstream.port, 'cp-2');
  await cp.ready;
  await eventually(async () => (await httpGet(`http://127.0.0.1:${LISTENER_PORT}/`)).headers['x-served-by'] === 'cp-2', 60_000, 'Envoy to reconnect and take the new config');
  assert.match(agent.output(), /connected to delta upstream XDS server: localhost:15912[\s\S]*connected to delta upstream XDS server: localhost:15912/);
  const m = await httpGet('http://127.0.0.1:15020/stats/prometheus');
  assert.match(m.body, /istio_agent_istiod_connection_terminations\{type="(error|cancelled)"\} [1-9]/);
  agent.signal('SIGTERM');
  assert.equal((await agent.exited).code, 0);
});
