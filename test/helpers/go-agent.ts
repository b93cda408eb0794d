// Runs the real Go pilot-agent (Istio 1.30, built by scripts/peers.sh) as an oracle for
// differential tests, and small network-namespace helpers to run real peers in isolation.
//
// Every spawned process gets an explicit environment (PATH plus what the caller passes): nothing
// is inherited from the test process, so stray KUBERNETES_SERVICE_HOST, ISTIO_META_* or
// iptables-bound variables cannot change the oracle's output.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createCaPki } from './pki.js';
import { istioBootstrapTemplate, pilotAgentBin } from './peers.js';

/** PATH for spawned peers (the test process's own PATH, else a standard one). */
export const PEER_PATH = process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// ---------------------------------------------------------------------------------------------
// processes

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A spawned process in its own process group, with captured output. */
export interface Proc {
  child: ChildProcess;
  /** stdout + stderr so far, interleaved in arrival order. */
  output(): string;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<Finished>;
  /** SIGTERM, then SIGKILL to the whole process group after graceMs; resolves once exited. */
  stop(graceMs?: number): Promise<Finished>;
}

/** Spawns cmd detached (own process group) so stop() also reaches its children. */
export function startProc(cmd: string, args: readonly string[], opts: { cwd?: string; env: Record<string, string> }): Proc {
  const child = spawn(cmd, [...args], { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let all = '';
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    all += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    all += d;
  });
  const exited = new Promise<Finished>((resolve) => {
    child.on('error', (e) => {
      err += String(e);
      all += String(e);
    });
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  const killGroup = (sig: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  let done = false;
  void exited.then(() => {
    done = true;
  });
  return {
    child,
    output: () => all,
    exited,
    async stop(graceMs = 5000) {
      if (!done) {
        killGroup('SIGTERM');
        const t = setTimeout(() => killGroup('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      killGroup('SIGKILL'); // leftovers in the group (e.g. an orphaned child)
      return exited;
    },
  };
}

/** Runs a command to completion with a timeout (the process group is killed on timeout). */
export async function runProc(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env: Record<string, string>; timeoutMs?: number },
): Promise<Finished> {
  const p = startProc(cmd, args, opts);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
  const first = await Promise.race([p.exited, timedOut]);
  clearTimeout(timer);
  if (first === 'timeout') {
    const f = await p.stop(500);
    throw new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms; output:\n${f.stdout}${f.stderr}`);
  }
  return first;
}

// ---------------------------------------------------------------------------------------------
// network namespaces (needs root and iproute2)

export interface Netns {
  readonly name: string;
  /** [cmd, args] that run cmd inside the namespace. */
  wrap(cmd: string, args: readonly string[]): [string, string[]];
  /** HTTP GET from inside the namespace (through a short-lived node process). */
  fetch(url: string, timeoutMs?: number): Promise<{ status: number; body: string }>;
  /** Resolves true once host:port accepts TCP inside the namespace, false after timeoutMs. */
  waitTcp(port: number, timeoutMs: number, host?: string): Promise<boolean>;
  dispose(): Promise<void>;
}

const FETCH_SCRIPT = `
const [url, ms] = process.argv.slice(1);
fetch(url, { signal: AbortSignal.timeout(Number(ms)) })
  .then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })))
  .catch((e) => { process.stderr.write(String(e)); process.exitCode = 1; });`;

const TCP_SCRIPT = `
const net = require('node:net');
const [host, port, ms] = process.argv.slice(1);
const deadline = Date.now() + Number(ms);
const attempt = () => {
  const s = net.connect(Number(port), host);
  s.once('connect', () => { s.destroy(); process.exitCode = 0; });
  s.once('error', () => { s.destroy(); if (Date.now() > deadline) process.exitCode = 1; else setTimeout(attempt, 100); });
};
attempt();`;

/** Creates a fresh network namespace with only loopback up. */
export async function createNetns(prefix = 'mgo'): Promise<Netns> {
  const name = `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const env = { PATH: PEER_PATH };
  const ip = async (...args: string[]): Promise<void> => {
    const r = await runProc('ip', args, { env, timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`);
  };
  await ip('netns', 'add', name);
  try {
    await ip('-n', name, 'link', 'set', 'lo', 'up');
  } catch (e) {
    await ip('netns', 'del', name);
    throw e;
  }
  const wrap = (cmd: string, args: readonly string[]): [string, string[]] => ['ip', ['netns', 'exec', name, cmd, ...args]];
  return {
    name,
    wrap,
    async fetch(url, timeoutMs = 5000) {
      const [c, a] = wrap(process.execPath, ['-e', FETCH_SCRIPT, url, String(timeoutMs)]);
      const r = await runProc(c, a, { env, timeoutMs: timeoutMs + 5000 });
      if (r.code !== 0) throw new Error(`GET ${url} in netns ${name} failed: ${r.stderr.trim()}`);
      return JSON.parse(r.stdout) as { status: number; body: string };
    },
    async waitTcp(port, timeoutMs, host = '127.0.0.1') {
      const [c, a] = wrap(process.execPath, ['-e', TCP_SCRIPT, host, String(port), String(timeoutMs)]);
      const r = await runProc(c, a, { env, timeoutMs: timeoutMs + 5000 });
      return r.code === 0;
    },
    async dispose() {
      await ip('netns', 'del', name);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// istio-iptables --dry-run

export interface IptablesDryRun {
  /** Contents of DRY_RUN_FILE_PATH: every would-be command, then each stdin line of iptables-restore. */
  transcript: string;
  /** The agent's log output (stdout), which also shows the iptables-restore input. */
  stdout: string;
  stderr: string;
  exitCode: number | null;
}

/**
 * Runs `pilot-agent istio-iptables --dry-run <args>` (`--dry-run` is added when absent) with env
 * (plus PATH and DRY_RUN_FILE_PATH; nothing else is inherited). Needs no root. Pass `-u/-g`
 * explicitly: otherwise the proxy uid comes from the machine's users. Give `netns` to read the
 * interface addresses of another namespace (a namespace with only loopback fails with
 * "no valid local IP address found").
 */
export async function runGoIptablesDryRun(
  args: readonly string[],
  env: Record<string, string> = {},
  opts: { netns?: Netns; timeoutMs?: number } = {},
): Promise<IptablesDryRun> {
  const dir = await mkdtemp(join(tmpdir(), 'go-ipt-'));
  try {
    const file = join(dir, 'dry-run.txt');
    const full = ['istio-iptables', ...(args.includes('--dry-run') || args.includes('-n') ? [] : ['--dry-run']), ...args];
    const [cmd, cmdArgs] = opts.netns ? opts.netns.wrap(pilotAgentBin(), full) : [pilotAgentBin(), full];
    const r = await runProc(cmd, cmdArgs, {
      cwd: dir,
      env: { PATH: PEER_PATH, ...env, DRY_RUN_FILE_PATH: file },
      timeoutMs: opts.timeoutMs ?? 30_000,
    });
    const transcript = existsSync(file) ? await readFile(file, 'utf8') : '';
    return { transcript, stdout: r.stdout, stderr: r.stderr, exitCode: r.code };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// bootstrap generation (pilot-agent proxy sidecar with a fake Envoy)

export interface GoBootstrapOptions {
  /** Agent environment (PATH and CLOUD_PLATFORM=none are added unless given). PROXY_CONFIG (JSON or YAML) is kept, with binaryPath replaced. */
  env?: Record<string, string>;
  /** Arguments after the binary; default `['proxy', 'sidecar']`. */
  args?: readonly string[];
  /**
   * Working directory of the agent. Missing inputs are created in it: the root cert
   * (./var/run/secrets/istio/root-cert.pem) and, unless env.ISTIO_BOOTSTRAP is set, the template
   * (./var/lib/istio/envoy/envoy_bootstrap_tmpl.json). Default: a fresh temp dir, removed afterwards.
   */
  cwd?: string;
  /** Root cert written when cwd has none (default: a freshly generated one). */
  rootCertPem?: string;
  /** Run in this namespace. Default: a private namespace created and removed by the helper. */
  netns?: Netns;
  /** Run in the caller's network namespace (agent status port 15020 must be free). */
  hostNetwork?: boolean;
  timeoutMs?: number;
}

export interface GoBootstrap {
  /** Parsed envoy-rev.json as the agent generated it. */
  bootstrap: any;
  bootstrapText: string;
  /** Envoy's argv (without argv[0]). */
  envoyArgv: string[];
  /** Parsed grpc-bootstrap.json from the config dir, if the agent wrote one. */
  grpcBootstrap: any;
  /** The fake Envoy path used as binaryPath (appears in node.metadata.PROXY_CONFIG). */
  fakeEnvoyPath: string;
  /** The agent's stdout + stderr. */
  agentOutput: string;
  exitCode: number | null;
}

function fakeEnvoyScript(outDir: string): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh
# Stand-in for Envoy: records argv, copies the bootstrap it was given, exits 0 (the agent then exits).
out=${q(outDir)}
: > "$out/argv.txt"
prev=""
for a in "$@"; do
  printf '%s\\n' "$a" >> "$out/argv.txt"
  if [ "$prev" = "-c" ] || [ "$prev" = "--config-path" ]; then
    cp "$a" "$out/bootstrap.json"
    if [ -f "$(dirname "$a")/grpc-bootstrap.json" ]; then cp "$(dirname "$a")/grpc-bootstrap.json" "$out/grpc-bootstrap.json"; fi
  fi
  prev="$a"
done
`;
}

/**
 * Runs `pilot-agent proxy sidecar` with a fake Envoy as ProxyConfig.binaryPath and returns the
 * generated bootstrap and Envoy argv. istiod need not run: the CA connection is lazy.
 */
export async function runGoBootstrap(opts: GoBootstrapOptions = {}): Promise<GoBootstrap> {
  const scratch = await mkdtemp(join(tmpdir(), 'go-bs-'));
  const cwd = opts.cwd ?? join(scratch, 'agent');
  let ownNetns: Netns | undefined;
  try {
    const outDir = join(scratch, 'out');
    await mkdir(outDir, { recursive: true });
    await mkdir(cwd, { recursive: true });
    const fakeEnvoyPath = join(scratch, 'fake-envoy.sh');
    await writeFile(fakeEnvoyPath, fakeEnvoyScript(outDir));
    await chmod(fakeEnvoyPath, 0o755);

    const env: Record<string, string> = { PATH: PEER_PATH, CLOUD_PLATFORM: 'none', ...opts.env };
    const given = env.PROXY_CONFIG ? (parseYaml(env.PROXY_CONFIG) as Record<string, unknown> | null) : null;
    env.PROXY_CONFIG = JSON.stringify({ ...(given ?? {}), binaryPath: fakeEnvoyPath });

    const rootCert = join(cwd, 'var/run/secrets/istio/root-cert.pem');
    if (!existsSync(rootCert)) {
      await mkdir(join(cwd, 'var/run/secrets/istio'), { recursive: true });
      await writeFile(rootCert, opts.rootCertPem ?? createCaPki().rootCertPem);
    }
    const template = join(cwd, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json');
    if (!env.ISTIO_BOOTSTRAP && !existsSync(template)) {
      await mkdir(join(cwd, 'var/lib/istio/envoy'), { recursive: true });
      await copyFile(istioBootstrapTemplate(), template);
    }

    const args = [...(opts.args ?? ['proxy', 'sidecar'])];
    let netns = opts.netns;
    if (!netns && !opts.hostNetwork) netns = ownNetns = await createNetns('mgo-bs');
    const [cmd, cmdArgs] = netns ? netns.wrap(pilotAgentBin(), args) : [pilotAgentBin(), args];
    const r = await runProc(cmd, cmdArgs, { cwd, env, timeoutMs: opts.timeoutMs ?? 30_000 });
    const agentOutput = r.stdout + r.stderr;
    const bsFile = join(outDir, 'bootstrap.json');
    if (!existsSync(bsFile)) throw new Error(`the Go agent never started Envoy (exit ${r.code}); output:\n${agentOutput}`);
    const bootstrapText = await readFile(bsFile, 'utf8');
    const grpcFile = join(outDir, 'grpc-bootstrap.json');
    return {
      bootstrap: JSON.parse(bootstrapText),
      bootstrapText,
      envoyArgv: (await readFile(join(outDir, 'argv.txt'), 'utf8')).split('\n').slice(0, -1),
      grpcBootstrap: existsSync(grpcFile) ? JSON.parse(await readFile(grpcFile, 'utf8')) : undefined,
      fakeEnvoyPath,
      agentOutput,
      exitCode: r.code,
    };
  } finally {
    await ownNetns?.dispose();
    await rm(scratch, { recursive: true, force: true });
  }
}
