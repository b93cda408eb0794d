// A mesh on one machine: the real istiod and N pods, each pod in its own network namespace with its
// own IP, an HTTP app, traffic capture applied by OUR `agent istio-iptables` (the injector's istio-init
// args) and a sidecar agent (ours or the Go pilot-agent) running the real Envoy as uid 1337.
//
// Network layout (nothing in the host's root namespace; every namespace is created and deleted here):
//
//   "node" namespace: bridge br0 10.244.0.1/24 (the pods' gateway; it forwards nothing anywhere)
//     ├── veth ── istiod namespace: eth0 10.244.0.2, istiod on 0.0.0.0:{15012,15010,8080,15014}
//     ├── veth ── pod 0 namespace:  eth0 10.244.0.10, default route via 10.244.0.1
//     ├── veth ── pod 1 namespace:  eth0 10.244.0.11
//     └── ...
//   Service VIPs (ServiceEntry `addresses`) are 10.96.0.<10+i>: no interface has them; they exist only
//   in istiod's config and are reached through the client pod's capture (REDIRECT to Envoy's 15001).
//   The default route only makes connect() to a VIP routable so that iptables' OUTPUT chain sees it;
//   anything that escapes capture dies in the node namespace.
//
// Inside each pod namespace (processes and uids as in a real pod):
//   - the app (uid/gid 1000): an HTTP echo server on 0.0.0.0:<appPort> answering the request line and
//     headers as JSON, and, on command, the pod's HTTP client (its outbound requests are captured);
//   - the sidecar tools (uid/gid 1337, like istio-proxy, so never captured): a TCP forwarder
//     127.0.0.1:15012 (and [::1]:15012) -> istiod 10.244.0.2:15012, which plays `kubectl port-forward`:
//     both agents use discoveryAddress and CA_ADDR `localhost:15012` and then send the TLS server name
//     `istiod.istio-system.svc` (pilot/pkg/grpc/tls.go; src/xds/options.ts), which istiod's serving
//     cert covers. (An IP + ISTIOD_SAN would do for xDS, but the Go agent applies ISTIOD_SAN to its CA
//     client only when CA_ADDR is unset.) The same process fetches Envoy's admin and the agent's status
//     port for the harness;
//   - the sidecar agent (uid/gid 1337) with the injected args and env (test/helpers/pod.ts), the real
//     Envoy as binaryPath, its working directory laid out as the istio-proxy container's.
//   - capture: `agent istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*'
//     -d 15090,15021,15020 --log_output_level=default:info`, run as root before anything starts.
//
// istiod's config dir gets, per pod: a ServiceEntry <svc>.<ns>.svc.cluster.local (VIP, port 80 http ->
// targetPort appPort, STATIC, MESH_INTERNAL, workloadSelector app=<name>) and a WorkloadEntry (the pod
// IP, labels app=<name> + security.istio.io/tlsMode=istio, serviceAccount), so istiod finds each
// proxy's inbound service by its IP and auto-mTLS applies; and optionally a mesh-wide
// PeerAuthentication in istio-system.
//
// Binaries: /root is 0700 here, so uid 1337 cannot execute Envoy or pilot-agent from the peers cache
// (~/.cache/meshagent): they are hard-linked (or copied) into the mesh's own 0755 temp directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, chmod, link, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, PEER_PATH, runProc, startProc, type Netns, type Proc } from './go-agent.js';
import { startIstiod, type Istiod } from './istiod.js';
import { poll } from './poll.js';
import { AGENT_BIN, envoyBin, istioBootstrapTemplate, istiodBin, pilotAgentBin } from './peers.js';
import { containerName, initContainerArgs, proxyContainerArgs, removeContainer } from './image.js';
import { createPod, type Pod } from './pod.js';

/** 'image': our agent in the container image, run with podman (test/helpers/image.ts), istio-init included. */
export type AgentKind = 'ours' | 'go' | 'image';
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

export const PROXY_UID = 1337;
export const APP_UID = 1000;
export const NODE_GATEWAY = '10.244.0.1';
export const ISTIOD_IP = '10.244.0.2';
const SUBNET_BITS = 24;
const POD_IP_BASE = 10;

/** istio-init's args as Istio 1.30's injector renders them (defaults). */
export const ISTIO_INIT_ARGS: readonly string[] = [
  '-p', '15001', '-z', '15006', '-u', String(PROXY_UID), '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*',
  '-d', '15090,15021,15020', '--log_output_level=default:info',
];

export { poll };

export interface MeshPodSpec {
  /** Pod, app and Service name (DNS label). */
  readonly name: string;
  /** Which sidecar agent runs in the pod. */
  readonly agent: AgentKind;
  /** Kubernetes namespace (default `<name>-ns`). */
  readonly namespace?: string;
  /** Service account (default `<name>-sa`). */
  readonly serviceAccount?: string;
  /** The app's port, the Service's targetPort (default 8080). */
  readonly appPort?: number;
  /** Extra pod labels (downward-API file and WorkloadEntry). */
  readonly labels?: Record<string, string>;
  /** Extra pod annotations (downward-API file), e.g. `proxy.istio.io/config`. */
  readonly annotations?: Record<string, string>;
  /** Extra ProxyConfig fields (merged into PROXY_CONFIG). */
  readonly proxyConfig?: Record<string, unknown>;
  /** Extra agent environment. */
  readonly env?: Record<string, string>;
  /** Write the ServiceEntry + WorkloadEntry for this pod (default true). */
  readonly service?: boolean;
  /** Environment of istio-init (`agent istio-iptables`), e.g. ISTIO_META_DNS_CAPTURE (the injector passes proxyMetadata). */
  readonly initEnv?: Record<string, string>;
  /** The pod's /etc/resolv.conf (`ip netns exec` shows /etc/netns/<ns>/resolv.conf in its place); default: the host's. */
  readonly resolvConf?: string;
}

export interface MeshOptions {
  /** Pods started (in parallel) with the mesh. More can be added with addPod. */
  readonly pods?: readonly MeshPodSpec[];
  /** A mesh-wide PeerAuthentication (istio-system) written before any pod starts; none by default (PERMISSIVE). */
  readonly mtls?: MtlsMode;
  /** Merged over startIstiod's mesh config. */
  readonly meshConfig?: Record<string, unknown>;
  /** Extra Istio YAML files for istiod's config dir. */
  readonly configs?: Record<string, string>;
  /** Extra istiod environment. */
  readonly istiodEnv?: Record<string, string>;
}

export interface HttpResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** What the echo app answers (and records) for each request it receives. */
export interface AppRequest {
  readonly app: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly remoteAddress: string;
  readonly localAddress: string;
  readonly localPort: number;
}

export interface ReadinessDiagnosis {
  readonly summary: string;
  readonly detail: string;
}

export interface MeshPod {
  readonly spec: MeshPodSpec;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly agentKind: AgentKind;
  /** The pod's IP (eth0 of its namespace). */
  readonly ip: string;
  /** The Service VIP (ServiceEntry `addresses`). */
  readonly vip: string;
  /** `<name>.<namespace>.svc.cluster.local` */
  readonly host: string;
  /** Service port (80); the app listens on appPort. */
  readonly servicePort: number;
  readonly appPort: number;
  /** `spiffe://cluster.local/ns/<namespace>/sa/<serviceAccount>` */
  readonly spiffeId: string;
  readonly netns: Netns;
  /** The agent's working directory (the istio-proxy container layout). */
  readonly dir: string;
  /** Agent and Envoy output (stdout+stderr) so far. */
  agentOutput(): string;
  /** Whether the agent process is still running. */
  agentRunning(): boolean;
  /** Requests the app received so far. */
  appRequests(): readonly AppRequest[];
  /** GET Envoy's admin (127.0.0.1:15000) from inside the pod. */
  admin(path: string): Promise<HttpResult>;
  /** GET the agent's status port (127.0.0.1:15020) from inside the pod. */
  status(path: string): Promise<HttpResult>;
  /** `/stats?filter=<re>` parsed into name -> value (counters and gauges). */
  stats(filter: string): Promise<Map<string, number>>;
  /** The SPIFFE URIs of `cert_chain[0].subject_alt_names[0].uri` of every certificate in admin `/certs`. */
  certUris(): Promise<string[]>;
  /**
   * Resolves once :15020/healthz/ready answers 200. Fails early if the agent exits, and at the
   * deadline (counted from the pod's start) with a diagnosis of why Envoy is not ready.
   * Memoized: every caller shares one wait.
   */
  ready(timeoutMs?: number): Promise<void>;
  /** Why the proxy is (not) ready: agent status, Envoy server state, unready init targets, xDS stats. */
  diagnose(): Promise<ReadinessDiagnosis>;
}

export interface RequestOptions {
  readonly path?: string;
  readonly headers?: Record<string, string>;
  /** 'app' (default): from the app's uid, captured by the client's sidecar. 'proxy': as uid 1337, bypassing it. */
  readonly as?: 'app' | 'proxy';
  /** 'vip' (default): <VIP>:80 with Host <host>. 'pod': <pod IP>:<appPort> directly. */
  readonly target?: 'vip' | 'pod';
  readonly timeoutMs?: number;
}

export interface Mesh {
  readonly istiod: Istiod;
  readonly istiodNetns: Netns;
  readonly nodeNetns: Netns;
  readonly pods: readonly MeshPod[];
  pod(name: string): MeshPod;
  /** Starts another pod (its ServiceEntry/WorkloadEntry are written first). */
  addPod(spec: MeshPodSpec): Promise<MeshPod>;
  /** Writes (or replaces) the mesh-wide PeerAuthentication. */
  setMtls(mode: MtlsMode): Promise<void>;
  /** An HTTP GET from inside `from` to `to` (see RequestOptions); rejects on a connection error or timeout. */
  request(from: MeshPod, to: MeshPod, opts?: RequestOptions): Promise<HttpResult>;
  /** GET istiod's HTTP port (debug endpoints) from inside its namespace. */
  istiodDebug(path: string): Promise<HttpResult>;
  /** Agent, Envoy and istiod output tails, for failure messages. */
  diag(): string;
  /** Stops every process (process groups, then whatever is left in the namespaces), deletes namespaces and temp dirs. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Istio config

export function serviceConfig(p: { name: string; namespace: string; serviceAccount: string; ip: string; vip: string; appPort: number; labels: Record<string, string> }): string {
  const labels = Object.entries(p.labels)
    .map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}\n`)
    .join('');
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ${p.name}
  namespace: ${p.namespace}
spec:
  hosts: [${p.name}.${p.namespace}.svc.cluster.local]
  addresses: [${p.vip}]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: ${p.appPort}}
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector:
    labels: {app: ${p.name}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ${p.name}
  namespace: ${p.namespace}
spec:
  address: ${p.ip}
  serviceAccount: ${p.serviceAccount}
  labels:
${labels}`;
}

export function peerAuthentication(mode: MtlsMode): string {
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls: {mode: ${mode}}
`;
}

// ---------------------------------------------------------------------------------------------
// small utilities

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


async function sh(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<string> {
  const r = await runProc(cmd, args, { env: { PATH: PEER_PATH }, timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** Hard link (same filesystem) or copy of the file a path resolves to, keeping it executable. */
async function linkOrCopy(path: string, to: string): Promise<void> {
  // link(2) does not follow symlinks, and ENVOY_BIN is one (into a venv under /root)
  const from = await realpath(path);
  try {
    await link(from, to);
  } catch {
    await copyFile(from, to);
  }
  await chmod(to, 0o755);
}

const tail = (s: string, n: number): string => (s.length > n ? `…${s.slice(-n)}` : s);

/** Log text with runs of lines equal but for their leading timestamp collapsed (readiness probes log every poll). */
export function condenseLog(text: string): string {
  const out: string[] = [];
  let prevKey: string | undefined;
  let repeats = 0;
  const flush = (): void => {
    if (repeats > 0) out.push(`    [the line above repeated ${repeats} more times]`);
    repeats = 0;
  };
  for (const line of text.split('\n')) {
    const key = line.replace(/^\S*\d{4}-\d\d-\d\dT[\d:.]+Z?\s*/, '');
    if (key === prevKey && key !== '') {
      repeats++;
      continue;
    }
    flush();
    out.push(line);
    prevKey = key;
  }
  flush();
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// a Node worker inside a namespace, as a given uid: HTTP server / TCP forwarder / HTTP client on command

const WORKER_SCRIPT = String.raw`
const http = require('node:http');
const net = require('node:net');
const cfg = JSON.parse(process.argv[1]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const pending = [];
if (cfg.app) {
  const srv = http.createServer((req, res) => {
    const seen = { app: cfg.app.name, method: req.method, url: req.url, headers: req.headers,
      remoteAddress: req.socket.remoteAddress, localAddress: req.socket.localAddress, localPort: req.socket.localPort };
    out({ event: 'request', request: seen });
    req.resume();
    req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(seen)); });
  });
  pending.push(new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(cfg.app.port, '0.0.0.0', resolve); }));
}
if (cfg.forward) {
  const f = cfg.forward;
  const handler = (c) => {
    const u = net.connect(f.targetPort, f.targetHost);
    const done = () => { c.destroy(); u.destroy(); };
    c.on('error', done); u.on('error', done); c.on('close', done); u.on('close', done);
    c.pipe(u); u.pipe(c);
  };
  pending.push(new Promise((resolve, reject) => { const s = net.createServer(handler); s.once('error', reject); s.listen(f.listenPort, '127.0.0.1', resolve); }));
  // Node may resolve "localhost" to ::1 first; best effort (no IPv6 loopback: ignored)
  pending.push(new Promise((resolve) => { const s = net.createServer(handler); s.once('error', () => resolve()); s.listen(f.listenPort, '::1', resolve); }));
}
const get = (m) => new Promise((resolve) => {
  const req = http.request({ host: m.host, port: m.port, path: m.path || '/', method: 'GET', headers: m.headers || {}, agent: false, timeout: m.timeoutMs || 5000 }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => (body += c));
    res.on('end', () => resolve({ id: m.id, ok: true, result: { status: res.statusCode, headers: res.headers, body } }));
    res.on('error', (e) => resolve({ id: m.id, ok: false, error: String(e.code || e.message) }));
  });
  req.on('timeout', () => req.destroy(new Error('timeout after ' + (m.timeoutMs || 5000) + ' ms')));
  req.on('error', (e) => resolve({ id: m.id, ok: false, error: String(e.code ? e.code + ' ' + e.message : e.message) }));
  req.end();
});
Promise.all(pending).then(() => out({ event: 'ready' }), (e) => { out({ event: 'failed', error: String(e) }); process.exit(1); });
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    if (!line) continue;
    const m = JSON.parse(line);
    if (m.op === 'get') get(m).then(out);
  }
});
process.stdin.on('end', () => process.exit(0));
`;

interface WorkerConfig {
  app?: { name: string; port: number };
  forward?: { listenPort: number; targetHost: string; targetPort: number };
}

class Worker {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: { ok: boolean; result?: HttpResult; error?: string }) => void>();
  readonly requests: AppRequest[] = [];
  private out = '';
  private err = '';
  private closed = false;
  private readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess, readonly label: string) {
    this.exited = new Promise((r) => child.once('close', () => r()));
    void this.exited.then(() => {
      this.closed = true;
      for (const w of this.waiting.values()) w({ ok: false, error: `worker ${label} exited: ${tail(this.err, 500)}` });
      this.waiting.clear();
    });
  }

  static async start(ns: Netns, uid: number, cfg: WorkerConfig, label: string): Promise<Worker> {
    const [cmd, args] = ns.wrap('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '-e', WORKER_SCRIPT, JSON.stringify(cfg)]);
    const child = spawn(cmd, args, { env: { PATH: PEER_PATH, HOME: '/' }, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const w = new Worker(child, label);
    let buf = '';
    let onReady: ((e?: Error) => void) | undefined;
    const ready = new Promise<void>((resolve, reject) => (onReady = (e) => (e ? reject(e) : resolve())));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (w.err += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      w.out += d;
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let m: any;
        try {
          m = JSON.parse(line);
        } catch {
          continue;
        }
        if (m.event === 'ready') onReady?.();
        else if (m.event === 'failed') onReady?.(new Error(`worker ${label}: ${m.error}`));
        else if (m.event === 'request') w.requests.push(m.request as AppRequest);
        else if (typeof m.id === 'number') {
          const r = w.waiting.get(m.id);
          w.waiting.delete(m.id);
          r?.(m);
        }
      }
    });
    void w.exited.then(() => onReady?.(new Error(`worker ${label} exited before it was ready: ${w.err.trim()}`)));
    const timer = setTimeout(() => onReady?.(new Error(`worker ${label} not ready within 15 s: ${w.err.trim()}`)), 15_000);
    try {
      await ready;
    } catch (e) {
      await w.stop();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return w;
  }

  get(host: string, port: number, path: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<HttpResult> {
    if (this.closed) return Promise.reject(new Error(`worker ${this.label} has exited: ${tail(this.err, 500)}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (r) => (r.ok && r.result ? resolve(r.result) : reject(new Error(`GET http://${host}:${port}${path} from ${this.label}: ${r.error}`))));
      this.child.stdin!.write(`${JSON.stringify({ id, op: 'get', host, port, path, headers, timeoutMs })}\n`);
    });
  }

  async stop(): Promise<void> {
    if (!this.closed) {
      const pid = this.child.pid;
      try {
        if (pid !== undefined) process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
      await this.exited;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the mesh

interface PodInternals extends MeshPod {
  stop(): Promise<void>;
}

/** Fails (not skips) with a clear message when a peer binary is missing. */
function requirePeers(): void {
  for (const peer of [istiodBin, envoyBin, pilotAgentBin, istioBootstrapTemplate]) peer();
}

export async function startMesh(opts: MeshOptions = {}): Promise<Mesh> {
  requirePeers();
  const cleanups: Array<() => Promise<void>> = [];
  const runCleanups = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch {
        // keep cleaning up
      }
    }
  };
  const pods: PodInternals[] = [];
  let podIndex = 0;
  try {
    // binaries uid 1337 can execute
    const dir = await mkdtemp(join(tmpdir(), 'mesh-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await chmod(dir, 0o755);
    const binDir = join(dir, 'bin');
    await mkdir(binDir, { mode: 0o755 });
    const envoy = join(binDir, 'envoy');
    const pilotAgent = join(binDir, 'pilot-agent');
    await linkOrCopy(envoyBin(), envoy);
    await linkOrCopy(pilotAgentBin(), pilotAgent);
    const template = await readFile(istioBootstrapTemplate(), 'utf8');

    // the node namespace with its bridge
    const nodeNetns = await createNetns('mesh-node');
    cleanups.push(() => nodeNetns.dispose());
    await sh('ip', ['-n', nodeNetns.name, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', nodeNetns.name, 'addr', 'add', `${NODE_GATEWAY}/${SUBNET_BITS}`, 'dev', 'br0']);
    await sh('ip', ['-n', nodeNetns.name, 'link', 'set', 'br0', 'up']);

    /** Plugs a fresh namespace into the bridge as eth0 with `ip`. */
    const attach = async (ns: Netns, port: string, ip: string): Promise<void> => {
      await sh('ip', ['-n', nodeNetns.name, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
      await sh('ip', ['-n', nodeNetns.name, 'link', 'set', port, 'master', 'br0', 'up']);
      await sh('ip', ['-n', ns.name, 'addr', 'add', `${ip}/${SUBNET_BITS}`, 'dev', 'eth0']);
      await sh('ip', ['-n', ns.name, 'link', 'set', 'eth0', 'up']);
      await sh('ip', ['-n', ns.name, 'route', 'add', 'default', 'via', NODE_GATEWAY]);
    };

    // istiod
    const istiodNetns = await createNetns('mesh-istiod');
    cleanups.push(() => istiodNetns.dispose());
    await attach(istiodNetns, 'vistiod', ISTIOD_IP);
    const specs = opts.pods ?? [];
    const planned = specs.map((s) => plan(s, podIndex++));
    const configs: Record<string, string> = { ...opts.configs };
    if (opts.mtls) configs['peer-authentication.yaml'] = peerAuthentication(opts.mtls);
    for (const p of planned) if (p.spec.service !== false) configs[`svc-${p.namespace}-${p.name}.yaml`] = serviceConfig(p);
    const istiod = await startIstiod({ netns: istiodNetns, listenHost: '0.0.0.0', mesh: opts.meshConfig, configs, env: opts.istiodEnv });
    cleanups.push(() => istiod.stop());

    const startPod = async (p: PlannedPod): Promise<PodInternals> => {
      const ns = await createNetns('mesh-pod');
      // undone in reverse: agent, workers, directory, then whatever is left in the namespace (e.g. an
      // Envoy that left its process group), then the namespace
      const parts: Array<() => Promise<void>> = [
        () => ns.dispose(),
        async () => {
          const pids = (await sh('ip', ['netns', 'pids', ns.name]).catch(() => '')).split('\n').filter(Boolean);
          for (const pid of pids) {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              // gone
            }
          }
        },
      ];
      const stopPod = async (): Promise<void> => {
        for (const c of parts.splice(0).reverse()) {
          try {
            await c();
          } catch {
            // keep going
          }
        }
      };
      try {
        await attach(ns, `vp${p.index}`, p.ip);
        if (p.spec.resolvConf !== undefined) {
          const etc = join('/etc/netns', ns.name);
          await mkdir(etc, { recursive: true });
          await writeFile(join(etc, 'resolv.conf'), p.spec.resolvConf, { mode: 0o644 });
          parts.push(() => rm(etc, { recursive: true, force: true }));
        }

        // istio-init: our istio-iptables, as root, before any container starts
        // (for an 'image' pod: the istio-init container, joined to the pod's namespace)
        const [ic, ia] = p.spec.agent === 'image' ? ['podman', initContainerArgs(ns.name, ISTIO_INIT_ARGS, p.spec.initEnv)] : ns.wrap(AGENT_BIN, ['istio-iptables', ...ISTIO_INIT_ARGS]);
        const ipt = await runProc(ic, ia, { env: { PATH: PEER_PATH, ...p.spec.initEnv }, timeoutMs: 60_000 });
        if (ipt.code !== 0) throw new Error(`agent istio-iptables failed in pod ${p.name} (exit ${ipt.code}):\n${ipt.stdout}${ipt.stderr}`);

        // the istio-proxy container's working directory
        const annotations = { 'kubectl.kubernetes.io/default-container': p.name, 'sidecar.istio.io/status': '{"initContainers":["istio-init"],"containers":["istio-proxy"]}', ...p.spec.annotations };
        const pod: Pod = await createPod({
          name: `${p.name}-0`,
          namespace: p.namespace,
          serviceAccount: p.serviceAccount,
          rootCert: istiod.rootCertPem,
          token: istiod.mintToken(p.namespace, p.serviceAccount),
          labels: p.labels,
          annotations,
          proxyConfig: { binaryPath: p.spec.agent === 'image' ? '/usr/local/bin/envoy' : envoy, discoveryAddress: 'localhost:15012', drainDuration: '5s', terminationDrainDuration: '1s', ...p.spec.proxyConfig },
          env: {
            PATH: PEER_PATH,
            INSTANCE_IP: p.ip,
            HOST_IP: NODE_GATEWAY,
            CA_ADDR: 'localhost:15012',
            ISTIO_META_POD_PORTS: JSON.stringify([{ name: 'http', containerPort: p.appPort, protocol: 'TCP' }]),
            ISTIO_META_APP_CONTAINERS: p.name,
            ISTIO_META_WORKLOAD_NAME: p.name,
            ISTIO_META_OWNER: `kubernetes://apis/apps/v1/namespaces/${p.namespace}/deployments/${p.name}`,
            ...p.spec.env,
          },
        });
        parts.push(() => pod.cleanup());
        // the container image holds Istio's bootstrap template (the Go agent needs it)
        await mkdir(join(pod.cwd, 'var/lib/istio/envoy'), { recursive: true });
        await writeFile(join(pod.cwd, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json'), template);
        await sh('chown', ['-R', `${PROXY_UID}:${PROXY_UID}`, pod.cwd]);

        const app = await Worker.start(ns, APP_UID, { app: { name: p.name, port: p.appPort } }, `${p.name}/app`);
        parts.push(() => app.stop());
        const tools = await Worker.start(ns, PROXY_UID, { forward: { listenPort: 15012, targetHost: ISTIOD_IP, targetPort: istiod.ports.secureGrpc } }, `${p.name}/tools`);
        parts.push(() => tools.stop());

        const bin = p.spec.agent === 'go' ? [pilotAgent] : [AGENT_BIN];
        let [cmd, args] = ns.wrap('setpriv', [`--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups', ...bin, ...pod.args]);
        if (p.spec.agent === 'image') {
          // the istio-proxy container, attached: `podman run` relays its output and its signals
          const name = containerName(ns.name);
          [cmd, args] = ['podman', proxyContainerArgs({ name, netns: ns.name, podDir: pod.cwd, env: pod.env, args: pod.args })];
          parts.push(async () => removeContainer(name));
        }
        const startedAt = Date.now();
        const agent: Proc = startProc(cmd, args, { cwd: pod.cwd, env: pod.env });
        let running = true;
        void agent.exited.then(() => (running = false));
        parts.push(async () => {
          // as the kubelet: SIGTERM to the container's main process only (the agent drains and stops
          // Envoy itself), then SIGKILL to whatever is left of its process group
          if (running) {
            agent.child.kill('SIGTERM');
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([agent.exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
            clearTimeout(timer);
          }
          await agent.stop(1000);
        });

        const admin = (path: string): Promise<HttpResult> => tools.get('127.0.0.1', 15000, path);
        const status = (path: string): Promise<HttpResult> => tools.get('127.0.0.1', 15020, path);
        const self: PodInternals = {
          spec: p.spec,
          name: p.name,
          namespace: p.namespace,
          serviceAccount: p.serviceAccount,
          agentKind: p.spec.agent,
          ip: p.ip,
          vip: p.vip,
          host: `${p.name}.${p.namespace}.svc.cluster.local`,
          servicePort: 80,
          appPort: p.appPort,
          spiffeId: `spiffe://cluster.local/ns/${p.namespace}/sa/${p.serviceAccount}`,
          netns: ns,
          dir: pod.cwd,
          agentOutput: () => agent.output(),
          agentRunning: () => running,
          appRequests: () => app.requests,
          admin,
          status,
          async stats(filter) {
            const body = (await admin(`/stats?filter=${encodeURIComponent(filter)}`)).body;
            const m = new Map<string, number>();
            for (const line of body.split('\n')) {
              const x = /^(.+): (\d+)$/.exec(line);
              if (x) m.set(x[1]!, Number(x[2]));
            }
            return m;
          },
          async certUris() {
            const certs = JSON.parse((await admin('/certs')).body) as { certificates?: Array<{ cert_chain?: Array<{ subject_alt_names?: Array<{ uri?: string }> }> }> };
            return (certs.certificates ?? []).flatMap((c) => {
              const uri = c.cert_chain?.[0]?.subject_alt_names?.[0]?.uri;
              return uri ? [uri] : [];
            });
          },
          ready: (() => {
            let memo: Promise<void> | undefined;
            return (timeoutMs = 60_000) =>
              (memo ??= (async () => {
                const deadline = startedAt + timeoutMs;
                for (;;) {
                  if (!running) {
                    const f = await agent.exited;
                    throw new Error(`the ${p.spec.agent} agent of pod ${p.name} exited (code ${f.code}, signal ${f.signal}) before it was ready:\n${tail(condenseLog(agent.output()), 6000)}`);
                  }
                  const r = await status('/healthz/ready').catch(() => undefined);
                  if (r?.status === 200) return;
                  if (Date.now() >= deadline) {
                    const d = await self.diagnose();
                    throw new Error(`pod ${p.name} (${p.spec.agent} agent) not ready within ${timeoutMs} ms of its start: ${d.summary}\n${d.detail}`);
                  }
                  await sleep(250);
                }
              })());
          })(),
          async diagnose() {
            const lines: string[] = [];
            const summary: string[] = [];
            const ready = await status('/healthz/ready').catch((e: Error) => ({ status: 0, body: e.message, headers: {} }));
            summary.push(`:15020/healthz/ready ${ready.status} ${ready.body.trim().slice(0, 200)}`);
            try {
              const info = JSON.parse((await admin('/server_info')).body) as { state?: string };
              summary.push(`Envoy state ${info.state}`);
              const init = JSON.parse((await admin('/init_dump')).body) as { unready_targets_dumps?: Array<{ name: string; target_names?: string[] }> };
              const blocking = (init.unready_targets_dumps ?? []).filter((d) => d.target_names?.length);
              if (blocking.length) summary.push(`unready init targets: ${blocking.map((b) => `${b.name} -> [${b.target_names!.join(', ')}]`).join('; ')}`);
              const warming = JSON.parse((await admin('/config_dump?resource=dynamic_warming_secrets')).body) as { configs?: Array<{ name: string }> };
              if (warming.configs?.length) summary.push(`warming secrets: ${warming.configs.map((s) => s.name).join(', ')}`);
              const st = (await admin('/stats?filter=' + encodeURIComponent('^(server\\.state|listener_manager\\.workers_started|cluster_manager\\.(warming|active)_clusters|cluster_manager\\.cds\\.update_(success|rejected)|listener_manager\\.lds\\.update_(success|rejected))$'))).body;
              lines.push(`--- Envoy stats ---\n${st.trim()}`);
            } catch (e) {
              summary.push(`Envoy admin unreachable: ${(e as Error).message}`);
            }
            const sds = join(pod.cwd, 'var/run/secrets/workload-spiffe-uds/socket');
            summary.push(existsSync(sds) ? 'SDS socket present' : `no SDS socket at ./var/run/secrets/workload-spiffe-uds/socket`);
            lines.push(`--- ${p.spec.agent} agent + Envoy output (tail) ---\n${tail(condenseLog(agent.output()), 6000)}`);
            return { summary: summary.join('; '), detail: lines.join('\n') };
          },
          stop: stopPod,
        };
        workerOf.set(self, [app, tools]);
        return self;
      } catch (e) {
        await stopPod();
        throw e;
      }
    };

    const started = await Promise.allSettled(planned.map(startPod));
    for (const s of started) if (s.status === 'fulfilled') pods.push(s.value);
    cleanups.push(async () => {
      await Promise.all(pods.splice(0).map((p) => p.stop()));
    });
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;

    const mesh: Mesh = {
      istiod,
      istiodNetns,
      nodeNetns,
      pods,
      pod(name) {
        const p = pods.find((x) => x.name === name);
        if (!p) throw new Error(`no pod ${name} in the mesh (${pods.map((x) => x.name).join(', ')})`);
        return p;
      },
      async addPod(spec) {
        const p = plan(spec, podIndex++);
        if (spec.service !== false) await istiod.writeConfig(`svc-${p.namespace}-${p.name}.yaml`, serviceConfig(p));
        const pod = await startPod(p);
        pods.push(pod);
        return pod;
      },
      setMtls: (mode) => istiod.writeConfig('peer-authentication.yaml', peerAuthentication(mode)),
      async request(from, to, o = {}) {
        const fromPod = pods.find((x) => x === from);
        if (!fromPod) throw new Error(`pod ${from.name} is not part of this mesh`);
        const worker = workerOf.get(fromPod)?.[o.as === 'proxy' ? 1 : 0];
        if (!worker) throw new Error(`pod ${from.name} has no workers`);
        const [host, port] = o.target === 'pod' ? [to.ip, to.appPort] : [to.vip, to.servicePort];
        return worker.get(host, port, o.path ?? '/', { host: to.host, ...o.headers }, o.timeoutMs ?? 5000);
      },
      istiodDebug: (path) => istiodNetns.fetch(`http://127.0.0.1:${istiod.ports.http}${path}`).then((r) => ({ ...r, headers: {} })),
      diag() {
        const parts = pods.map((p) => `--- pod ${p.name} (${p.agentKind} agent, ${p.ip}) output (tail) ---\n${tail(condenseLog(p.agentOutput()), 3000)}`);
        parts.push(`--- istiod (tail) ---\n${tail(istiod.logs(), 3000)}`);
        return parts.join('\n');
      },
      stop: runCleanups,
    };
    return mesh;
  } catch (e) {
    await runCleanups();
    throw e;
  }
}

interface PlannedPod {
  spec: MeshPodSpec;
  index: number;
  name: string;
  namespace: string;
  serviceAccount: string;
  ip: string;
  vip: string;
  appPort: number;
  labels: Record<string, string>;
}

function plan(spec: MeshPodSpec, index: number): PlannedPod {
  if (!/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(spec.name)) throw new Error(`pod name ${JSON.stringify(spec.name)} is not a DNS label`);
  if (POD_IP_BASE + index > 250) throw new Error('too many pods for one /24');
  const namespace = spec.namespace ?? `${spec.name}-ns`;
  return {
    spec,
    index,
    name: spec.name,
    namespace,
    serviceAccount: spec.serviceAccount ?? `${spec.name}-sa`,
    ip: `10.244.0.${POD_IP_BASE + index}`,
    vip: `10.96.0.${POD_IP_BASE + index}`,
    appPort: spec.appPort ?? 8080,
    labels: { app: spec.name, 'security.istio.io/tlsMode': 'istio', 'service.istio.io/canonical-name': spec.name, ...spec.labels },
  };
}

// the request helper needs the workers of a pod; kept out of the public MeshPod shape
const workerOf = new WeakMap<MeshPod, [Worker, Worker]>();
