// Inputs the agent can only check when it starts its components: each stops start-up with a message
// naming the input and exit 255 (pilot-agent's RunE error), leaving no Envoy behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPod } from '../helpers/pod.js';
import { envoyPidsIn } from './harness.js';

async function runToExit(t: import('node:test').TestContext, o: Parameters<typeof createPod>[0], extra: string[] = []) {
  const pod = await createPod(o);
  t.after(() => pod.cleanup());
  const agent = pod.start(extra);
  const exit = await Promise.race([agent.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
  assert.notEqual(exit, 'timeout', `agent did not exit:\n${agent.output().slice(-2000)}`);
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
  return { exit: exit as { code: number | null }, out: agent.output(), pod };
}

test('no root certificate for TLS to the control plane: exit 255 naming the file', async (t) => {
  const { exit, out } = await runToExit(t, { proxyConfig: { discoveryAddress: 'localhost:15912' } });
  assert.equal(exit.code, 255);
  assert.match(out, /Error: .*root-cert\.pem/);
});

test('binaryPath that does not exist: exit 255 naming it', async (t) => {
  const { exit, out } = await runToExit(t, { rootCert: 'unused', proxyConfig: { discoveryAddress: '127.0.0.1:15912', controlPlaneAuthPolicy: 'NONE', binaryPath: '/nonexistent/envoy' } });
  assert.equal(exit.code, 255);
  assert.match(out, /Error: failed to start Envoy \(binaryPath \/nonexistent\/envoy\): .*ENOENT/);
});

test('a non-default WORKLOAD_IDENTITY_SOCKET_FILE with no socket there: exit 255 naming the variable and path', async (t) => {
  const { exit, out } = await runToExit(t, { proxyConfig: { discoveryAddress: '127.0.0.1:15912', controlPlaneAuthPolicy: 'NONE' }, env: { WORKLOAD_IDENTITY_SOCKET_FILE: 'spire.sock', CA_ADDR: '127.0.0.1:15010' } });
  assert.equal(exit.code, 255);
  // pilot-agent's words
  assert.match(out, /Error: agent configured for non-default SDS socket path: .*workload-spiffe-uds\/spire\.sock but no socket found/);
});

test('malformed ISTIO_KUBE_APP_PROBERS: exit 255 naming it', async (t) => {
  const { exit, out } = await runToExit(t, { proxyConfig: { discoveryAddress: '127.0.0.1:15912', controlPlaneAuthPolicy: 'NONE' }, env: { ISTIO_KUBE_APP_PROBERS: '{"/app-health/app/readyz": {' } });
  assert.equal(exit.code, 255);
  assert.match(out, /ISTIO_KUBE_APP_PROBERS/);
});

test('SIGTERM is honoured in a working directory without pod files (no ./etc/istio/pod) and during start-up', async (t) => {
  // plaintext xDS and a plaintext CA (`:15010`): no root certificate is needed
  const pod = await createPod({ proxyConfig: { discoveryAddress: '127.0.0.1:15912', controlPlaneAuthPolicy: 'NONE', terminationDrainDuration: '1s' }, env: { CA_ADDR: '127.0.0.1:15010' } });
  t.after(() => pod.cleanup());
  const { rm } = await import('node:fs/promises');
  await rm(`${pod.cwd}/etc/istio/pod`, { recursive: true, force: true });
  const agent = pod.start();
  await agent.waitForLog(/Envoy command:/, 15_000);
  agent.signal('SIGTERM');
  const exit = await Promise.race([agent.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
  assert.deepEqual(exit, { code: 0, signal: null }, agent.output().slice(-1500));
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
  // a SIGTERM that arrives before the agent is up still ends it cleanly
  const early = pod.start();
  await early.waitForLog(/FLAG: --/, 15_000);
  early.signal('SIGTERM');
  const exit2 = await Promise.race([early.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
  assert.deepEqual(exit2, { code: 0, signal: null }, early.output().slice(-1500));
  assert.deepEqual(await envoyPidsIn(pod.cwd), []);
});
