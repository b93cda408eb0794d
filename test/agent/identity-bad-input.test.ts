// Bad inputs around workload identity, each through the built CLI as the container runs it: what the
// agent says (log, /debug/status, metrics), that it keeps running and keeps its last good certificate,
// and that it recovers once the input is fixed. The CA is the in-repo one (CA-only process), with faults.
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { startControlPlane, type CaFault, type ControlPlane } from '../controlplane/server.js';
import { TestCa } from '../controlplane/pki.js';
import { createPod, type Pod, type RunningAgent } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

const TOKEN = 'token-sleep';
const ID = 'spiffe://cluster.local/ns/default/sa/sleep';

interface Running {
  pod: Pod;
  agent: RunningAgent;
  ca: ControlPlane;
  xds: ControlPlane;
}

void describe('workload identity: bad inputs', { timeout: 180_000 }, () => {
  const running: Running[] = [];
  after(async () => {
    for (const r of running) {
      await r.pod.cleanup();
      await r.xds.stop();
      await r.ca.stop();
    }
  });

  async function start(o: { env?: Record<string, string>; caFault?: CaFault; token?: string | null; caAddr?: string } = {}): Promise<Running> {
    const ca = new TestCa();
    const pod = await createPod({ ...(o.token === null ? {} : { token: o.token ?? TOKEN }), proxyConfig: { drainDuration: '1s', terminationDrainDuration: '1s' }, ...(o.env ? { env: o.env } : {}) });
    const xds = await startControlPlane({ tls: true, ca, requireToken: TOKEN, rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'), http: { listenerPort: 18080, upstreamPort: 1 } });
    const caSrv = await startControlPlane({ tls: true, ca, requireToken: TOKEN, caOnly: true, ...(o.caFault ? { caFault: o.caFault } : {}) });
    const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
    pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${xds.port}` });
    pod.env.CA_ADDR = o.caAddr ?? `localhost:${caSrv.port}`;
    const r = { pod, agent: pod.start(), ca: caSrv, xds };
    running.push(r);
    return r;
  }

  async function stop(r: Running): Promise<void> {
    r.agent.signal('SIGTERM');
    const exit = await r.agent.exited;
    assert.equal(exit.code, 0, r.agent.output().slice(-2000));
    await r.xds.stop();
    await r.ca.stop();
  }

  const identity = async (): Promise<any> => (JSON.parse((await httpGet('http://127.0.0.1:15020/debug/status')).body) as { identity: any }).identity;

  void it('invalid CA responses after a good certificate: each rejected with what is wrong, the last good kept, renewed once the CA is right again', async () => {
    const r = await start({ env: { SECRET_TTL: '12s', SECRET_GRACE_PERIOD_RATIO: '0.5', SECRET_GRACE_PERIOD_RATIO_JITTER: '0' } });
    await eventually(async () => (await identity()).state === 'ready', 20_000, 'the first certificate');
    const good = (await identity()).certificate.serial;
    const cases: Array<[CaFault, RegExp]> = [
      ['garbage', /resource:default failed to sign: cert_chain\[0\] is not a PEM certificate; the CA refused the request/],
      ['other-identity', /failed to sign: the issued certificate is for spiffe:\/\/cluster\.local\/ns\/other\/sa\/intruder, not spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/],
      ['other-key', /failed to sign: the issued certificate is not for the key in our CSR/],
      ['expired', /failed to sign: the issued certificate expired at /],
      ['single', /failed to sign: invalid empty CertChain/],
    ];
    for (const [fault, re] of cases) {
      r.ca.caFault = fault;
      await eventually(async () => re.test(r.agent.output()), 15_000, `the agent saying what was wrong with "${String(fault)}"`).catch((e: Error) => {
        throw new Error(`${e.message}\n${r.agent.output().slice(-3000)}`);
      });
      const id = await identity();
      assert.equal(id.certificate.serial, good, `${String(fault)}: the last good certificate is kept`);
      assert.equal(id.lastError.reason, 'invalid_response');
    }
    const m = (await httpGet('http://127.0.0.1:15020/stats/prometheus')).body;
    assert.ok(Number(/^istio_agent_cert_refresh_failures_total\{reason="invalid_response"\} (\d+)/m.exec(m)?.[1]) >= cases.length, m);
    r.ca.caFault = undefined;
    await eventually(async () => (await identity()).certificate.serial !== good, 15_000, 'renewed once the CA answers correctly');
    assert.equal((await identity()).state, 'ready');
    assert.equal((await identity()).certificate.spiffeId, ID);
    await stop(r);
  });

  void it('the CA refuses (PERMISSION_DENIED): the log says what the CA said, and the agent stays up', async () => {
    const r = await start({ caFault: { kind: 'status', code: Status.PERMISSION_DENIED, details: 'authorization failed: no identities ([spiffe://cluster.local/ns/default/sa/sleep]) matched' } });
    await eventually(async () => /failed to sign: create certificate: rpc error: code = PermissionDenied desc = authorization failed: no identities \(\[spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep\]\) matched; the CA refused the request, retrying in 60000ms/.test(r.agent.output()), 15_000, 'the refusal logged').catch((e: Error) => {
      throw new Error(`${e.message}\n${r.agent.output().slice(-3000)}`);
    });
    const id = await identity();
    assert.equal(id.state, 'pending');
    assert.equal(id.lastError.reason, 'permissiondenied');
    assert.equal(r.agent.child.exitCode, null);
    await stop(r);
  });

  void it('a missing token: the agent says so and the CA says why it refused', async () => {
    const r = await start({ token: null });
    await eventually(async () => /failed to fetch token from file: .*istio-token: no such file or directory|failed to fetch token from file: ENOENT/.test(r.agent.output()), 15_000, 'the missing token logged');
    await eventually(async () => /code = Unauthenticated desc = request authenticate failure/.test(r.agent.output()), 15_000, "the CA's refusal logged");
    assert.equal((await identity()).lastError.reason, 'unauthenticated');
    await stop(r);
  });

  void it('an unreadable token (a directory): named, not a crash', async () => {
    const r = await start({ token: null });
    await rm(join(r.pod.cwd, 'var/run/secrets/tokens/istio-token'), { force: true, recursive: true });
    await mkdir(join(r.pod.cwd, 'var/run/secrets/tokens/istio-token'), { recursive: true });
    await eventually(async () => /failed to fetch token from file: EISDIR/.test(r.agent.output()), 15_000, 'the unreadable token logged').catch((e: Error) => {
      throw new Error(`${e.message}\n${r.agent.output().slice(-3000)}`);
    });
    assert.equal(r.agent.child.exitCode, null);
    await stop(r);
  });

  void it('the CA unreachable: retried with back-off, Unavailable in the log and in /debug/status', async () => {
    const r = await start({ caAddr: 'localhost:1' });
    await eventually(async () => (r.agent.output().match(/failed to sign: create certificate: rpc error: code = Unavailable .*the CA is unavailable, retrying in \d+ms/g) ?? []).length >= 2, 20_000, 'two failed attempts logged').catch((e: Error) => {
      throw new Error(`${e.message}\n${r.agent.output().slice(-3000)}`);
    });
    const id = await identity();
    assert.equal(id.state, 'pending');
    assert.equal(id.lastError.reason, 'unavailable');
    assert.ok(id.consecutiveFailures >= 2);
    assert.equal(id.caEndpoint, 'localhost:1');
    await stop(r);
  });

  void it('WORKLOAD_IDENTITY_SOCKET_FILE that is a path: exit 255 naming it, before anything starts', async () => {
    const pod = await createPod({ env: { WORKLOAD_IDENTITY_SOCKET_FILE: '../../evil/socket' } });
    try {
      const agent = pod.start();
      const exit = await agent.exited;
      assert.equal(exit.code, 255);
      assert.match(agent.output(), /env WORKLOAD_IDENTITY_SOCKET_FILE: workload identity socket file override must be a filename, not a path: \.\.\/\.\.\/evil\/socket/);
    } finally {
      await pod.cleanup();
    }
  });
});
