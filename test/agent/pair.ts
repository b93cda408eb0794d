// Two pods on this host's loopback, each with our agent and the real Envoy: "sleep" (A, default ports)
// routes its listener :18080 over mTLS to "httpbin" (B, its own ports), whose listener :18443 requires a
// client certificate and hands the app the caller's identity (x-forwarded-client-cert). Each pod has its own
// xDS control plane and its own CA process (CA-only control plane, CA_ADDR), so a test can stop, restart or
// re-root one pod's CA while xDS and the other pod carry on. Every upstream request uses a new connection, so
// every request is a new mTLS handshake with the certificates of that moment.
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { startControlPlane, type ControlPlane } from '../controlplane/server.js';
import { startHttpUpstream, type HttpUpstream } from '../controlplane/http-upstream.js';
import { TestCa } from '../controlplane/pki.js';
import { createPod, type Pod, type RunningAgent } from '../helpers/pod.js';
import { eventually, httpGet } from '../helpers/http.js';

export const ID_A = 'spiffe://cluster.local/ns/default/sa/sleep';
export const ID_B = 'spiffe://cluster.local/ns/default/sa/httpbin';
export const LISTEN_A = 18080;
export const LISTEN_B = 18443;
export const PORTS_A = { admin: 15000, status: 15020, ready: 15021, prometheus: 15090 };
export const PORTS_B = { admin: 15100, status: 15120, ready: 15121, prometheus: 15190 };
const SNI = 'outbound_.8000_._.httpbin.default.svc.cluster.local';
export const XFCC = /x-forwarded-client-cert: By=([^;]+);Hash=[0-9a-f]{64};URI=(\S+)/;

export interface Side {
  readonly name: string;
  readonly id: string;
  readonly pod: Pod;
  readonly xds: ControlPlane;
  /** The CA process (CA-only control plane) this pod's CA_ADDR names; replaced by restartCa. */
  ca: ControlPlane | undefined;
  readonly caPort: number;
  readonly ports: typeof PORTS_A;
  agent: RunningAgent;
}

export interface EnvoyCerts {
  /** Serials (lower-case hex) of the workload certificates Envoy holds. */
  readonly leaves: string[];
  readonly leafIds: string[];
  /** Serials of the trusted roots. */
  readonly roots: string[];
}

export interface Pair {
  readonly a: Side;
  readonly b: Side;
  readonly app: HttpUpstream;
  /** The CA both pods start with. */
  readonly ca: TestCa;
  /** GET through A's listener to B's app (over mTLS); resolves with status and body, rejects on a connection error. */
  request(path?: string): Promise<{ status: number; body: string }>;
  /**
   * Requests A → B one after another until stopped; a request fails unless B's app answered 200 and saw
   * A's SPIFFE ID (x-forwarded-client-cert URI). `stop()` resolves with the counts.
   */
  load(): { stop(): Promise<{ ok: number; failures: string[] }>; readonly ok: () => number };
  certs(side: Side): Promise<EnvoyCerts>;
  status(side: Side): Promise<any>;
  metrics(side: Side): Promise<string>;
  envoy(side: Side): Promise<{ epoch: number; pid: number; state: string }>;
  stopCa(side: Side): Promise<void>;
  /** Starts the pod's CA again on the same port, signing with `ca` (default: the original CA). */
  startCa(side: Side, ca?: TestCa): Promise<void>;
  /** Writes the pod's ./var/run/secrets/istio/root-cert.pem (the istio-ca-root-cert ConfigMap). */
  writeMeshRoots(side: Side, pem: string): Promise<void>;
  diag(): string;
  close(): Promise<void>;
}

export interface PairOptions {
  /** Extra agent environment for both pods (e.g. SECRET_TTL). */
  readonly env?: Record<string, string>;
}

export async function startPair(o: PairOptions = {}): Promise<Pair> {
  const ca = new TestCa();
  const app = await startHttpUpstream({ name: 'httpbin', echoHeaders: ['x-forwarded-client-cert'] });
  const sides: Side[] = [];
  const close = async (): Promise<void> => {
    for (const s of sides) {
      await s.pod.cleanup();
      await s.xds.stop();
      await s.ca?.stop();
    }
    await app.close();
  };
  try {
    const side = async (name: string, sa: string, ports: typeof PORTS_A, http: Parameters<typeof startControlPlane>[0]): Promise<Side> => {
      const token = `token-${sa}`;
      const b = ports !== PORTS_A;
      const pod = await createPod({
        name,
        serviceAccount: sa,
        token,
        labels: { app: sa },
        proxyConfig: { drainDuration: '2s', terminationDrainDuration: '2s', ...(b ? { proxyAdminPort: ports.admin, statusPort: ports.status } : {}) },
        env: { ...(b ? { ENVOY_STATUS_PORT: String(ports.ready), ENVOY_PROMETHEUS_PORT: String(ports.prometheus), ISTIO_META_WORKLOAD_NAME: sa, ISTIO_META_APP_CONTAINERS: sa } : {}), ...o.env },
      });
      const xds = await startControlPlane({ tls: true, ca, requireToken: token, rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'), ...http });
      const caSrv = await startControlPlane({ tls: true, ca, requireToken: token, caOnly: true });
      const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
      pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${xds.port}` });
      pod.env.CA_ADDR = `localhost:${caSrv.port}`;
      const s: Side = { name: sa, id: `spiffe://cluster.local/ns/default/sa/${sa}`, pod, xds, ca: caSrv, caPort: caSrv.port, ports, agent: undefined as unknown as RunningAgent };
      sides.push(s);
      return s;
    };
    const b = await side('httpbin-0', 'httpbin', PORTS_B, { http: { listenerPort: LISTEN_B, listenerMtls: true, upstreamPort: app.port, servedBy: 'httpbin' } });
    const a = await side('sleep-0', 'sleep', PORTS_A, { http: { listenerPort: LISTEN_A, upstreamPort: LISTEN_B, upstreamMtls: { san: ID_B, sni: SNI }, newConnectionPerRequest: true } });
    b.agent = b.pod.start();
    a.agent = a.pod.start();
    const diag = (): string => sides.map((s) => `--- ${s.name} agent:\n${s.agent.output().slice(-4000)}`).join('\n');
    const ready = (port: number) => async () => (await httpGet(`http://127.0.0.1:${port}/healthz/ready`, { timeoutMs: 2000 }).catch(() => ({ status: 0 }))).status === 200;
    try {
      await Promise.all([eventually(ready(PORTS_A.ready), 30_000, 'sleep ready'), eventually(ready(PORTS_B.ready), 30_000, 'httpbin ready')]);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${diag()}`, { cause: e });
    }
    const json = async (port: number, path: string): Promise<any> => JSON.parse((await httpGet(`http://127.0.0.1:${port}${path}`, { timeoutMs: 3000 })).body);
    return {
      a,
      b,
      app,
      ca,
      async request(path = '/') {
        const r = await httpGet(`http://127.0.0.1:${LISTEN_A}${path}`, { timeoutMs: 5000 });
        return { status: r.status, body: r.body };
      },
      load() {
        let ok = 0;
        const failures: string[] = [];
        let stopped = false;
        const run = (async () => {
          for (let i = 0; !stopped; i++) {
            try {
              const r = await httpGet(`http://127.0.0.1:${LISTEN_A}/load/${i}`, { timeoutMs: 5000 });
              if (r.status === 200 && XFCC.exec(r.body)?.[2] === ID_A) ok++;
              else failures.push(`#${i}: ${r.status} ${r.body.slice(0, 160)}`);
            } catch (e) {
              failures.push(`#${i}: ${(e as Error).message}`);
            }
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
        return {
          ok: () => ok,
          async stop() {
            stopped = true;
            await run;
            return { ok, failures };
          },
        };
      },
      async certs(s) {
        const c = (await json(s.ports.admin, '/certs')) as { certificates: Array<{ cert_chain?: Array<{ serial_number: string; subject_alt_names?: Array<{ uri?: string }> }>; ca_cert?: Array<{ serial_number: string }> }> };
        const uniq = (xs: string[]): string[] => [...new Set(xs)];
        const leaves = c.certificates.flatMap((x) => x.cert_chain ?? []);
        return {
          leaves: uniq(leaves.map((l) => l.serial_number.toLowerCase())),
          leafIds: uniq(leaves.flatMap((l) => (l.subject_alt_names ?? []).map((n) => n.uri ?? ''))),
          roots: uniq(c.certificates.flatMap((x) => (x.ca_cert ?? []).map((r) => r.serial_number.toLowerCase()))),
        };
      },
      status: (s) => json(s.ports.status, '/debug/status'),
      metrics: async (s) => (await httpGet(`http://127.0.0.1:${s.ports.status}/stats/prometheus`, { timeoutMs: 3000 })).body,
      async envoy(s) {
        const i = (await json(s.ports.admin, '/server_info')) as { state: string; command_line_options: { restart_epoch: number } };
        const st = (await json(s.ports.status, '/debug/status')) as { envoy: { process: { pid: number } } };
        return { epoch: i.command_line_options.restart_epoch, pid: st.envoy.process.pid, state: i.state };
      },
      async stopCa(s) {
        await s.ca?.stop();
        s.ca = undefined;
      },
      async startCa(s, signer = ca) {
        // serve TLS with the original CA (the pods' root file trusts it); sign with `signer`
        const srv = await startControlPlane({ address: `127.0.0.1:${s.caPort}`, tls: true, ca, requireToken: `token-${s.name}`, caOnly: true });
        if (signer !== ca) srv.setCa(signer);
        s.ca = srv;
      },
      async writeMeshRoots(s, pem) {
        await writeFile(join(s.pod.cwd, 'var/run/secrets/istio/root-cert.pem'), pem);
      },
      diag,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
