// A pod's `istio-proxy` container, reproduced on this machine: the working-directory layout the
// container has (./etc/istio/proxy, ./etc/istio/pod/{labels,annotations}, ./var/run/secrets/...),
// the args and env Istio 1.30's injector gives it, and the built CLI spawned in it as the container does.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_BIN, envoyBin } from './peers.js';

/** The injector's args for `istio-proxy` (injection-template.yaml, default values). */
export const INJECTED_ARGS = ['proxy', 'sidecar', '--domain', 'default.svc.cluster.local', '--proxyLogLevel=warning', '--proxyComponentLogLevel=misc:error', '--log_output_level=default:info'];

/** A bookinfo pod's values of those variables, for differential tests against the Go agent. */
export const INJECTED_ENV: Readonly<Record<string, string>> = {
  PILOT_CERT_PROVIDER: 'istiod',
  CA_ADDR: 'istiod.istio-system.svc:15012',
  POD_NAME: 'productpage-v1-6b746f74dc-9stvs',
  POD_NAMESPACE: 'default',
  INSTANCE_IP: '10.244.0.17',
  SERVICE_ACCOUNT: 'bookinfo-productpage',
  HOST_IP: '172.18.0.2',
  ISTIO_CPU_LIMIT: '2',
  PROXY_CONFIG: '{}',
  ISTIO_META_POD_PORTS: '[\n    {"name":"http","containerPort":9080,"protocol":"TCP"}\n]',
  ISTIO_META_APP_CONTAINERS: 'productpage',
  GOMEMLIMIT: '1073741824',
  GOMAXPROCS: '2',
  ISTIO_META_CLUSTER_ID: 'Kubernetes',
  ISTIO_META_NODE_NAME: 'kind-control-plane',
  ISTIO_META_INTERCEPTION_MODE: 'REDIRECT',
  ISTIO_META_WORKLOAD_NAME: 'productpage-v1',
  ISTIO_META_OWNER: 'kubernetes://apis/apps/v1/namespaces/default/deployments/productpage-v1',
  ISTIO_META_MESH_ID: 'cluster.local',
  TRUST_DOMAIN: 'cluster.local',
};

export interface PodOptions {
  readonly name?: string;
  readonly namespace?: string;
  readonly serviceAccount?: string;
  /** Extra ProxyConfig fields, merged into PROXY_CONFIG (binaryPath defaults to the real Envoy). */
  readonly proxyConfig?: Record<string, unknown>;
  readonly env?: Record<string, string>;
  readonly extraArgs?: readonly string[];
  readonly annotations?: Record<string, string>;
  readonly labels?: Record<string, string>;
  /** PEM written to ./var/run/secrets/istio/root-cert.pem. */
  readonly rootCert?: string;
  /** Written to ./var/run/secrets/tokens/istio-token. */
  readonly token?: string;
}

export interface RunningAgent {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  waitForLog(re: RegExp, ms: number): Promise<string>;
  /** Sends a signal to the agent process only (as the kubelet does to the container's PID 1). */
  signal(sig: NodeJS.Signals): void;
}

export interface Pod {
  readonly cwd: string;
  readonly env: Record<string, string>;
  readonly args: string[];
  start(extraArgs?: readonly string[]): RunningAgent;
  writeAnnotations(a: Record<string, string>): Promise<void>;
  /** Kills whatever is left (agent and its Envoys) and removes the directory. */
  cleanup(): Promise<void>;
}

/** Downward-API file format: key="go-quoted value" per line. */
export function downwardApi(map: Record<string, string>): string {
  return Object.entries(map)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}\n`)
    .join('');
}

export async function createPod(o: PodOptions = {}): Promise<Pod> {
  const cwd = await mkdtemp(join(tmpdir(), 'pod-'));
  const ns = o.namespace ?? 'default';
  const name = o.name ?? 'sleep-0';
  await mkdir(join(cwd, 'etc/istio/proxy'), { recursive: true });
  await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
  await mkdir(join(cwd, 'var/run/secrets/istio'), { recursive: true });
  await mkdir(join(cwd, 'var/run/secrets/tokens'), { recursive: true });
  await mkdir(join(cwd, 'var/run/secrets/workload-spiffe-uds'), { recursive: true });
  await mkdir(join(cwd, 'var/lib/istio/data'), { recursive: true });
  await writeFile(join(cwd, 'etc/istio/pod/labels'), downwardApi({ app: 'sleep', 'security.istio.io/tlsMode': 'istio', 'service.istio.io/canonical-name': 'sleep', ...o.labels }));
  await writeFile(join(cwd, 'etc/istio/pod/annotations'), downwardApi({ 'kubectl.kubernetes.io/default-container': 'sleep', 'sidecar.istio.io/status': '{"initContainers":["istio-init"],"containers":["istio-proxy"]}', ...o.annotations }));
  if (o.rootCert) await writeFile(join(cwd, 'var/run/secrets/istio/root-cert.pem'), o.rootCert);
  if (o.token) await writeFile(join(cwd, 'var/run/secrets/tokens/istio-token'), o.token, { mode: 0o600 });
  const proxyConfig = { binaryPath: envoyBin(), ...o.proxyConfig };
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: cwd,
    CLOUD_PLATFORM: 'none',
    PILOT_CERT_PROVIDER: 'istiod',
    CA_ADDR: 'istiod.istio-system.svc:15012',
    POD_NAME: name,
    POD_NAMESPACE: ns,
    INSTANCE_IP: '127.0.0.1',
    SERVICE_ACCOUNT: o.serviceAccount ?? 'sleep',
    HOST_IP: '127.0.0.1',
    ISTIO_CPU_LIMIT: '2',
    PROXY_CONFIG: JSON.stringify(proxyConfig),
    ISTIO_META_POD_PORTS: '[\n]',
    ISTIO_META_APP_CONTAINERS: 'sleep',
    ISTIO_META_CLUSTER_ID: 'Kubernetes',
    ISTIO_META_NODE_NAME: 'node-1',
    ISTIO_META_INTERCEPTION_MODE: 'REDIRECT',
    ISTIO_META_WORKLOAD_NAME: 'sleep',
    ISTIO_META_OWNER: `kubernetes://apis/apps/v1/namespaces/${ns}/deployments/sleep`,
    ISTIO_META_MESH_ID: 'cluster.local',
    TRUST_DOMAIN: 'cluster.local',
    ...o.env,
  };
  const args = [...INJECTED_ARGS.map((a) => a.replace('default.svc', `${ns}.svc`)), ...(o.extraArgs ?? [])];
  const children: ChildProcess[] = [];

  return {
    cwd,
    env,
    args,
    start(extra = []) {
      const child = spawn(AGENT_BIN, [...args, ...extra], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      const waiters: Array<() => void> = [];
      const onData = (b: Buffer) => {
        out += b.toString();
        if (process.env.AGENT_TEST_VERBOSE) process.stderr.write(b);
        waiters.splice(0).forEach((w) => w());
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
      return {
        child,
        exited,
        output: () => out,
        signal: (sig) => child.kill(sig),
        waitForLog(re, ms) {
          return new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${re} in agent output:\n${out.slice(-3000)}`)), ms);
            const check = () => {
              const m = re.exec(out);
              if (m) {
                clearTimeout(t);
                resolve(m[0]);
              } else waiters.push(check);
            };
            check();
          });
        },
      };
    },
    async writeAnnotations(a) {
      await writeFile(join(cwd, 'etc/istio/pod/annotations'), downwardApi(a));
    },
    async cleanup() {
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          try {
            process.kill(-c.pid!, 'SIGKILL');
          } catch {
            /* gone */
          }
          await new Promise((r) => c.once('exit', r));
        }
      }
      await rm(cwd, { recursive: true, force: true });
    },
  };
}
