// A pod with our agent, the real Envoy and the in-repo control plane (TLS, bearer token, as istiod on
// 15012), on this host's loopback with the pod's default ports (15000, 15020, 15021, 15090).
import type { TestContext } from 'node:test';
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../controlplane/server.js';
import { startHttpUpstream, type HttpUpstream } from '../controlplane/http-upstream.js';
import { TestCa } from '../controlplane/pki.js';
import { createPod, type Pod, type PodOptions, type RunningAgent } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

export const LISTENER_PORT = 18080;
export const TOKEN = 'test-token-for-sleep';

export interface Mesh {
  readonly cp: ControlPlane;
  readonly upstream: HttpUpstream;
  readonly pod: Pod;
  readonly agent: RunningAgent;
  readonly ca: TestCa;
}

export async function envoyPidsIn(cwd: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const [exe, dir] = await Promise.all([readlink(join('/proc', d, 'exe')), readlink(join('/proc', d, 'cwd'))]);
      if (dir === cwd && /envoy/.test(exe)) out.push(Number(d));
    } catch {
      /* gone or not ours */
    }
  }
  return out;
}

export async function readyOn15021(): Promise<boolean> {
  return (await httpGet('http://127.0.0.1:15021/healthz/ready', { timeoutMs: 2000 })).status === 200;
}

export async function envoyEpoch(): Promise<number> {
  const r = await httpGet('http://127.0.0.1:15000/server_info', { timeoutMs: 2000 });
  return (JSON.parse(r.body) as { command_line_options: { restart_epoch: number } }).command_line_options.restart_epoch;
}

export async function startMesh(t: TestContext, o: { pod?: PodOptions; args?: string[]; cpAddress?: string } = {}): Promise<Mesh> {
  const upstream = await startHttpUpstream({ name: 'app' });
  const ca = new TestCa();
  const pod = await createPod({
    token: TOKEN,
    ...o.pod,
    proxyConfig: { drainDuration: '2s', terminationDrainDuration: '2s', ...o.pod?.proxyConfig },
  });
  const cp = await startControlPlane({
    address: o.cpAddress ?? '127.0.0.1:0',
    tls: true,
    ca,
    rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'),
    requireToken: TOKEN,
    http: { listenerPort: LISTENER_PORT, upstreamPort: upstream.port, servedBy: 'cp-1' },
  });
  // discoveryAddress as istiod's: `localhost:<port>` (TLS server name istiod.istio-system.svc)
  const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
  pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
  // the control plane is the CA too, as istiod is
  pod.env.CA_ADDR = `localhost:${cp.port}`;
  t.after(async () => {
    await pod.cleanup();
    await cp.stop();
    await upstream.close();
  });
  const agent = pod.start(o.args);
  await eventually(readyOn15021, 30_000, 'readiness on :15021');
  return { cp, upstream, pod, agent, ca };
}
