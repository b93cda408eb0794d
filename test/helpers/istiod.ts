// Starts a real istiod (istiod-local, built by scripts/peers.sh: Istio 1.30's pilot bootstrap with
// file-based config and an in-memory Kubernetes client) in a fresh temp directory, with:
// - a plugged-in CA (./etc/cacerts, root known in advance: rootCertPem / rootCertPath),
// - a JWKS on loopback and JWT_RULE, so mintToken(ns, sa) gives agents a credential,
// - the mesh config and environment stock Envoy can consume (docs/real-peers.md),
// - a config dir of Istio YAML (ServiceEntry, WorkloadEntry, ...) watched by istiod.
// Several can run at once on different ports, or each in its own network namespace.
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { PEER_PATH, startProc, type Netns, type Proc } from './go-agent.js';
import { envoyBin, istioBootstrapTemplate, istiodBin } from './peers.js';
import { createCaPki, createJwtIssuer, writeCacerts, type CaPki } from './pki.js';

export interface IstiodPorts {
  /** --httpAddr: /ready, /debug/* */
  http: number;
  /** --grpcAddr: plaintext xDS (no CA, no authentication) */
  grpc: number;
  /** --secureGRPCAddr: TLS xDS + CA */
  secureGrpc: number;
  /** --monitoringAddr: /metrics */
  monitoring: number;
  /** the JWKS server */
  jwks: number;
}

/** istiod's own defaults; used inside a network namespace. */
export const DEFAULT_ISTIOD_PORTS: IstiodPorts = { http: 8080, grpc: 15010, secureGrpc: 15012, monitoring: 15014, jwks: 15999 };

export interface IstiodOptions {
  /** Ports to listen on (loopback). Missing ones: istiod's defaults inside `netns`, free ports otherwise. */
  ports?: Partial<IstiodPorts>;
  /** Run istiod (and its JWKS server) inside this namespace; else in the caller's, on 127.0.0.1. */
  netns?: Netns;
  /**
   * Address istiod's HTTP, gRPC, secure gRPC and monitoring ports bind to (default 127.0.0.1);
   * e.g. 0.0.0.0 inside a namespace other namespaces route to. The JWKS server stays on 127.0.0.1.
   */
  listenHost?: string;
  /** Merged over the default mesh config (trustDomain cluster.local, no tracing, no metrics providers). */
  mesh?: Record<string, unknown>;
  /** Initial files of the config dir: name (.yaml) → YAML text. */
  configs?: Record<string, string>;
  /** Extra environment for istiod (over the defaults below). */
  env?: Record<string, string>;
  /** A CA to plug in (default: a fresh one). */
  pki?: CaPki;
  /** JWT issuer / audience (defaults https://issuer.local.test / istio-ca). */
  jwtIssuer?: string;
  jwtAudience?: string;
  /** `--log_output_level` for istiod (default `default:info`). */
  logLevel?: string;
  startTimeoutMs?: number;
}

export interface Istiod {
  /** istiod's working directory (etc/cacerts, etc/istio/config/mesh, config/). */
  dir: string;
  ports: IstiodPorts;
  netns: Netns | undefined;
  pki: CaPki;
  rootCertPem: string;
  /** root-cert.pem of the plugged-in CA (give it to agents as ./var/run/secrets/istio/root-cert.pem). */
  rootCertPath: string;
  /** The directory of Istio YAML that istiod watches. */
  configDir: string;
  /** `localhost:<secureGrpc>`: what agents use as discoveryAddress (the Go agent sends SNI istiod.istio-system.svc). */
  discoveryAddress: string;
  jwtRule: string;
  /** An RS256 JWT istiod accepts for `spiffe://cluster.local/ns/<ns>/sa/<sa>` (both non-empty, colon-free). */
  mintToken(ns: string, sa: string, ttlSeconds?: number): string;
  /** Writes (or replaces) config/<name> ; istiod pushes the change. */
  writeConfig(name: string, yaml: string): Promise<void>;
  removeConfig(name: string): Promise<void>;
  /** istiod's output so far. */
  logs(): string;
  /** Whether the process is still running. */
  running(): boolean;
  /** Stops istiod and the JWKS server, removes the temp dir (and nothing else). */
  stop(): Promise<void>;
}

/** The mesh config of docs/real-peers.md (trust domain cluster.local, no tracing, no access log, no metrics providers). */
export function defaultMeshConfig(secureGrpcPort: number): Record<string, unknown> {
  return {
    trustDomain: 'cluster.local',
    rootNamespace: 'istio-system',
    enableTracing: false,
    // no accessLogFile: '/dev/stdout' makes Envoy reject every listener ("unable to open file
    // '/dev/stdout': No such device or address") when its stdout is a socket, as with Node's
    // child_process stdio 'pipe'
    defaultConfig: { discoveryAddress: `istiod.istio-system.svc:${secureGrpcPort}` },
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

async function waitTcpLocal(port: number, timeoutMs: number, alive: () => boolean, host = '127.0.0.1'): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && alive()) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

const JWKS_SCRIPT = `
const http = require('node:http');
const [port, body] = process.argv.slice(1);
http.createServer((req, res) => {
  if (req.url === '/jwks.json') { res.writeHead(200, { 'content-type': 'application/json' }); res.end(body); }
  else { res.writeHead(404); res.end(); }
}).listen(Number(port), '127.0.0.1');`;

/** Refuses the inputs that crash istiod 1.30 or silently change its behaviour. */
function checkCrashTraps(env: Record<string, string>): void {
  for (const k of ['KUBERNETES_SERVICE_HOST', 'TOKEN_ISSUER']) {
    if (env[k]) throw new Error(`istiod env must not set ${k} (see docs/real-peers.md)`);
  }
  if (env.XDS_AUTH === 'false') throw new Error('XDS_AUTH=false disables certificate issuing');
  // Read by istiod at an absolute path: it would enable the TOKEN_ISSUER-style authenticator,
  // whose nil mesh holder crashes istiod on the first token.
  if (existsSync('/var/run/secrets/tokens/istio-token')) {
    throw new Error('/var/run/secrets/tokens/istio-token exists on this machine; istiod would crash on the first token');
  }
}

export async function startIstiod(opts: IstiodOptions = {}): Promise<Istiod> {
  const netns = opts.netns;
  const ports: IstiodPorts = { ...(netns ? DEFAULT_ISTIOD_PORTS : {}), ...opts.ports } as IstiodPorts;
  for (const k of Object.keys(DEFAULT_ISTIOD_PORTS) as (keyof IstiodPorts)[]) {
    if (ports[k] === undefined) ports[k] = await freePort();
  }
  const pki = opts.pki ?? createCaPki();
  const jwt = createJwtIssuer({ issuer: opts.jwtIssuer, audience: opts.jwtAudience });
  const jwtRule = JSON.stringify({
    issuer: jwt.issuer,
    jwks_uri: `http://127.0.0.1:${ports.jwks}/jwks.json`,
    audiences: [jwt.audience],
  });
  const env: Record<string, string> = {
    PATH: PEER_PATH,
    POD_NAMESPACE: 'istio-system',
    POD_NAME: 'istiod-local-0',
    JWT_RULE: jwtRule,
    // stock Envoy lacks Istio's proxy extensions (istio.metadata_exchange, istio.alpn)
    PILOT_ENABLE_METADATA_EXCHANGE: 'false',
    PILOT_ENABLE_ALPN_FILTER: 'false',
    // the WorkloadEntry controller is nil in file-config mode: health reports would crash istiod
    PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS: 'false',
    ISTIOD_CUSTOM_HOST: 'localhost',
    ...opts.env,
  };
  checkCrashTraps(env);

  const dir = await mkdtemp(join(tmpdir(), 'istiod-'));
  env.HOME = dir;
  let jwksServer: Server | undefined;
  let jwksProc: Proc | undefined;
  let proc: Proc | undefined;
  const cleanup = async (): Promise<void> => {
    await proc?.stop(5000);
    await jwksProc?.stop(1000);
    if (jwksServer) await new Promise<void>((r) => jwksServer?.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await writeCacerts(join(dir, 'etc/cacerts'), pki);
    await mkdir(join(dir, 'etc/istio/config'), { recursive: true });
    const mesh = { ...defaultMeshConfig(ports.secureGrpc), ...opts.mesh };
    await writeFile(join(dir, 'etc/istio/config/mesh'), toYaml(mesh));
    const configDir = join(dir, 'config');
    await mkdir(configDir);
    for (const [name, text] of Object.entries(opts.configs ?? {})) await writeFile(join(configDir, name), text);

    // JWKS on loopback, reachable from istiod's namespace
    const jwksBody = JSON.stringify(jwt.jwks);
    if (netns) {
      const [c, a] = netns.wrap(process.execPath, ['-e', JWKS_SCRIPT, String(ports.jwks), jwksBody]);
      jwksProc = startProc(c, a, { env: { PATH: PEER_PATH } });
    } else {
      const srv = createServer((req, res) => {
        if (req.url === '/jwks.json') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(jwksBody);
        } else {
          res.writeHead(404);
          res.end();
        }
      });
      jwksServer = srv;
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(ports.jwks, '127.0.0.1', () => resolve());
      });
    }

    const addr = (p: number): string => `${opts.listenHost ?? '127.0.0.1'}:${p}`;
    const args = [
      '--configDir=./config',
      '--meshConfig=./etc/istio/config/mesh',
      `--httpAddr=${addr(ports.http)}`,
      `--grpcAddr=${addr(ports.grpc)}`,
      `--secureGRPCAddr=${addr(ports.secureGrpc)}`,
      `--monitoringAddr=${addr(ports.monitoring)}`,
      '--domain=cluster.local',
      '--clusterID=Kubernetes',
      '--shutdownDuration=1s',
      `--log_output_level=${opts.logLevel ?? 'default:info'}`,
    ];
    const [cmd, cmdArgs] = netns ? netns.wrap(istiodBin(), args) : [istiodBin(), args];
    const p = startProc(cmd, cmdArgs, { cwd: dir, env });
    proc = p;
    let alive = true;
    void p.exited.then(() => (alive = false));
    const timeoutMs = opts.startTimeoutMs ?? 60_000;
    const probeHost = !opts.listenHost || opts.listenHost === '0.0.0.0' ? '127.0.0.1' : opts.listenHost;
    // 15012 opens only after caches synced and the CA is registered
    const up = netns
      ? await Promise.race([netns.waitTcp(ports.secureGrpc, timeoutMs, probeHost), p.exited.then(() => false)])
      : await waitTcpLocal(ports.secureGrpc, timeoutMs, () => alive, probeHost);
    if (!up) throw new Error(`istiod did not open ${ports.secureGrpc} within ${timeoutMs} ms (alive=${alive}); output:\n${p.output()}`);
    if (netns && !(await netns.waitTcp(ports.jwks, 5000))) throw new Error('the JWKS server did not start');

    return {
      dir,
      ports,
      netns,
      pki,
      rootCertPem: pki.rootCertPem,
      rootCertPath: join(dir, 'etc/cacerts/root-cert.pem'),
      configDir,
      discoveryAddress: `localhost:${ports.secureGrpc}`,
      jwtRule,
      mintToken: (ns, sa, ttl) => jwt.mint(ns, sa, ttl),
      writeConfig: async (name, yaml) => {
        // write then rename, so istiod never reads a half-written file
        const tmp = join(dir, `.${name}.tmp`);
        await writeFile(tmp, yaml);
        await rename(tmp, join(configDir, name));
      },
      removeConfig: async (name) => unlink(join(configDir, name)),
      logs: () => p.output(),
      running: () => alive,
      stop: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

export interface SidecarDirOptions {
  /** Merged over the defaults: istiod's discoveryAddress, the real Envoy, concurrency 1, drain 2s/1s. */
  readonly proxyConfig?: Record<string, unknown>;
  /** Creates `out/certs` and sets OUTPUT_CERTS=./out/certs (pilot-agent does not create it). */
  readonly outputCerts?: boolean;
  /** Added to (and over) the sidecar's environment. */
  readonly env?: Record<string, string>;
}

/**
 * Lays `dir` out as the working directory of an istio-proxy container for workload default/sleep of this
 * istiod (root certificate, a token, Istio's bootstrap template) and returns the injector's environment
 * for either agent (ours or the Go pilot-agent).
 */
export async function sidecarDir(istiod: Istiod, dir: string, o: SidecarDirOptions = {}): Promise<Record<string, string>> {
  await mkdir(join(dir, 'var/run/secrets/istio'), { recursive: true });
  await writeFile(join(dir, 'var/run/secrets/istio/root-cert.pem'), istiod.rootCertPem);
  await mkdir(join(dir, 'var/run/secrets/tokens'), { recursive: true });
  await writeFile(join(dir, 'var/run/secrets/tokens/istio-token'), istiod.mintToken('default', 'sleep'), { mode: 0o600 });
  await mkdir(join(dir, 'var/lib/istio/envoy'), { recursive: true });
  await copyFile(istioBootstrapTemplate(), join(dir, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json'));
  if (o.outputCerts) await mkdir(join(dir, 'out/certs'), { recursive: true });
  return {
    PATH: PEER_PATH,
    HOME: dir,
    POD_NAME: 'sleep-0',
    POD_NAMESPACE: 'default',
    SERVICE_ACCOUNT: 'sleep',
    INSTANCE_IP: '127.0.0.1',
    CLOUD_PLATFORM: 'none',
    TRUST_DOMAIN: 'cluster.local',
    ISTIO_META_CLUSTER_ID: 'Kubernetes',
    ISTIO_META_MESH_ID: 'cluster.local',
    ISTIO_META_WORKLOAD_NAME: 'sleep',
    ISTIO_META_INTERCEPTION_MODE: 'REDIRECT',
    ...(o.outputCerts ? { OUTPUT_CERTS: './out/certs' } : {}),
    PROXY_CONFIG: JSON.stringify({
      discoveryAddress: istiod.discoveryAddress,
      binaryPath: envoyBin(),
      concurrency: 1,
      drainDuration: '2s',
      terminationDrainDuration: '1s',
      ...o.proxyConfig,
    }),
    ...o.env,
  };
}
