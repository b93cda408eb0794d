// Who owns the workload SDS socket, as pilot-agent decides it at start (Istio's agent_test cases
// "External SDS socket", "Unhealthy SDS socket", "Unhealthy SDS socket - required"):
//   - another SDS server already answers on ./var/run/secrets/workload-spiffe-uds/socket (e.g. SPIRE): the
//     agent leaves it alone and serves only file certificates on ./var/run/secrets/credential-uds/files-socket,
//     and the bootstrap says so (file-credential metadata, the sds-files-grpc cluster);
//   - a stale socket file nobody answers on: removed, and the agent's own SDS server takes the path.
// (A non-default WORKLOAD_IDENTITY_SOCKET_FILE nobody serves: test/agent/startup-errors.test.ts.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { startControlPlane, type ControlPlane } from '../controlplane/server.js';
import { TestCa } from '../controlplane/pki.js';
import { createPod, type Pod } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

const TOKEN = 'token-sleep';

void describe('the workload SDS socket at start', { timeout: 90_000 }, () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  async function pod(): Promise<{ pod: Pod; cp: ControlPlane }> {
    const ca = new TestCa();
    const p = await createPod({ token: TOKEN, proxyConfig: { drainDuration: '1s', terminationDrainDuration: '1s' } });
    const cp = await startControlPlane({ tls: true, ca, requireToken: TOKEN, rootCertOut: join(p.cwd, 'var/run/secrets/istio/root-cert.pem'), http: { listenerPort: 18080, upstreamPort: 1 } });
    const pc = JSON.parse(p.env.PROXY_CONFIG!) as Record<string, unknown>;
    p.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
    p.env.CA_ADDR = `localhost:${cp.port}`;
    cleanups.push(async () => {
      await p.cleanup();
      await cp.stop();
    });
    return { pod: p, cp };
  }

  const listen = (path: string): Promise<Server> =>
    new Promise((resolve, reject) => {
      const s = createServer((c) => c.destroy());
      s.once('error', reject);
      s.listen(path, () => resolve(s));
    });

  void it('another SDS server on the workload socket: left alone; ours serves files only on files-socket; file-credential in the bootstrap', async () => {
    const { pod: p, cp } = await pod();
    const sock = join(p.cwd, 'var/run/secrets/workload-spiffe-uds/socket');
    const external = await listen(sock);
    cleanups.push(() => new Promise((r) => external.close(() => r())));
    const agent = p.start();
    await eventually(async () => /Existing workload SDS socket found at .*workload-spiffe-uds\/socket\. Default Istio SDS Server will only serve files/.test(agent.output()), 15_000, 'the external socket noticed');
    await eventually(async () => existsSync(join(p.cwd, 'var/run/secrets/credential-uds/files-socket')), 10_000, 'files-socket');
    assert.ok((await stat(join(p.cwd, 'var/run/secrets/credential-uds/files-socket'))).isSocket());
    assert.ok(existsSync(sock), 'the external socket is still there');
    await eventually(async () => existsSync(join(p.cwd, 'etc/istio/proxy/envoy-rev.json')), 10_000, 'the bootstrap');
    const boot = JSON.parse(await readFile(join(p.cwd, 'etc/istio/proxy/envoy-rev.json'), 'utf8')) as { node: { metadata: Record<string, unknown> }; static_resources: { clusters: Array<{ name: string }> } };
    assert.equal(boot.node.metadata['file-credential'], 'true');
    assert.ok(boot.static_resources.clusters.some((c) => c.name === 'sds-files-grpc'));
    assert.match(agent.output(), /Workload is using file mounted certificates\. Skipping connecting to CA/);
    const status = JSON.parse((await httpGet('http://127.0.0.1:15020/debug/status')).body) as { identity: { mode: string } };
    assert.equal(status.identity.mode, 'files-only (external workload SDS socket)');
    assert.equal(cp.csrs.length, 0, 'no CSR: the external server owns the workload identity');
    agent.signal('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  void it('a stale socket file nobody answers on is replaced by our SDS server', async () => {
    const { pod: p } = await pod();
    const sock = join(p.cwd, 'var/run/secrets/workload-spiffe-uds/socket');
    // a socket file left by a process that is gone (bound, never unlinked)
    const r = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', sock]);
    assert.equal(r.status, 0, String(r.stderr));
    assert.ok(existsSync(sock), 'a socket file with nobody behind it');
    const agent = p.start();
    await eventually(async () => /Starting SDS server for workload certificates, will listen on/.test(agent.output()), 15_000, 'our SDS server');
    assert.equal((await stat(sock)).mode & 0o777, 0o600, 'our (owner-only) socket now');
    assert.doesNotMatch(agent.output(), /Existing workload SDS socket found/);
    agent.signal('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });
});
