// `npm run bench` (scripts/bench.sh): our agent vs the Go pilot-agent, side by side, on the same Envoy,
// the same control plane and the same pod inputs. Each trial runs in a fresh network namespace (so both
// agents use their default ports 15000/15020/15021/15090), one after the other, alternating agents per
// trial kind. Writes BENCHMARKS.md (and, with --json FILE, the raw results).
//
//   node bench/run.mjs [--quick] [--out BENCHMARKS.md] [--json FILE] [--agents go,ours] [--only startup,steady,cert,istiod,soak,dns]
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, release, totalmem, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderReport } from './report.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const { createNetns } = await import(join(ROOT, 'build/test/helpers/go-agent.js'));
const { envoyBin, pilotAgentBin, AGENT_BIN } = await import(join(ROOT, 'build/test/helpers/peers.js'));

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'BENCHMARKS.md') },
    json: { type: 'string' },
    agents: { type: 'string', default: 'go,ours' },
    only: { type: 'string', default: 'startup,steady,cert,istiod,soak,dns' },
  },
});

const quick = opt.quick;
/** The plan: trial kinds in order, each run for every agent. */
const PLAN = {
  startup: { kind: 'startup', reps: quick ? 3 : 7, warmup: 1, baseClusters: 50 },
  steady: { kind: 'steady', runs: quick ? 1 : 2, idleMs: 10_000, settleMs: 3000, baseClusters: 50, churnRate: 20, churnMs: quick ? 5000 : 10_000, churnBurst: 200, burstReps: 3, large: { n: 1000, bytes: 20_000 }, largeReps: quick ? 2 : 3, afterLargeIdleMs: quick ? 20_000 : 60_000 },
  // each run: one trial per agent with the in-repo CA, one with the real istiod as the CA
  cert: { kind: 'cert', runs: quick ? 1 : 3, cas: ['in-repo', 'istiod'], secretTtlS: 16, rotations: quick ? 2 : 3, certTimeoutMs: 20_000 },
  istiod: { kind: 'istiod', reps: quick ? 2 : 5, warmup: 1, serviceEntries: 20, pushes: quick ? 5 : 10, readyTimeoutMs: 30_000 },
  // one agent per run: a warm-up of `warmup` of each, then 1,000 scrapes (plain / gzip / gzip cut mid-body),
  // 1,000 app probe calls (HTTP / gRPC) and 1,000 route pushes (each ACKed), `concurrency` requests in flight
  // DNS proxy (real istiod, 20 ServiceEntries): per run and agent, `reps` UDP loads of `seconds` each, `concurrency`
  // queries outstanding, for a name of the table and for a name forwarded to a local upstream
  dns: { kind: 'dns', runs: quick ? 1 : 2, reps: 3, seconds: quick ? 3 : 5, warmupS: 1, concurrency: 16, serviceEntries: 20, readyTimeoutMs: 60_000 },
  soak: { kind: 'soak', runs: quick ? 1 : 3, warmup: 100, scrapes: 1000, probes: 1000, pushes: 1000, concurrency: 4, settleMs: 2000, idleMs: 5000 },
};
const TRIAL_TIMEOUT_MS = 300_000;

const log = (m) => process.stderr.write(`bench: ${m}\n`);

if (process.getuid?.() !== 0) {
  log('needs root (it creates network namespaces): run it as root, e.g. `sudo npm run bench`');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// machine facts

/** The image's allocator environment (Dockerfile `ENV MALLOC_*`), which bench/trial.mjs gives our agent. */
function imageMallocEnv() {
  return [...readFileSync(join(ROOT, 'Dockerfile'), 'utf8').matchAll(/^ENV (MALLOC_[A-Z_]+=\S+)$/gm)].map((m) => m[1]).join(' ');
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return `unknown (${String(e.message).split('\n')[0]})`;
  }
}

function facts() {
  const c = cpus();
  const envoy = /version: (\S+)/.exec(sh(envoyBin(), ['--version']))?.[1] ?? 'unknown';
  let goAgent = 'unknown';
  try {
    const v = JSON.parse(sh(pilotAgentBin(), ['version', '-o', 'json'])).clientVersion;
    goAgent = `${v.version} (istio git ${v.revision}, ${v.golang_version})`;
  } catch {
    goAgent = sh(pilotAgentBin(), ['version', '-s']).replace(/^client version: /, '');
  }
  const oursVersion = /\((meshagent [^)]+)\)/.exec(sh(AGENT_BIN, ['version']))?.[1] ?? 'meshagent';
  const commit = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no']) ? ' + uncommitted changes' : '';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: `${c[0]?.model ?? 'unknown'}`,
    cores: c.length,
    memGiB: (totalmem() / 2 ** 30).toFixed(1),
    kernel: release(),
    node: process.version,
    envoy,
    goAgent,
    ours: `${oursVersion} (git ${commit}${dirty}), run with ${process.version} and the image's allocator setting (${imageMallocEnv() || 'none'})`,
  };
}

// ---------------------------------------------------------------------------------------------
// trials

let current; // { child, netns, done } of the running trial, for signal cleanup
let stopping = false; // set by SIGINT/SIGTERM: start no further trial
let scratch; // TMPDIR of every trial: pod directories and istiod's live here

async function runTrial(agent, cfg) {
  const netns = await createNetns('mbench');
  if (stopping) {
    await netns.dispose();
    throw new Error('stopped');
  }
  // the dns trial's nameserver: `ip netns exec` shows /etc/netns/<ns>/resolv.conf as /etc/resolv.conf
  const etc = join('/etc/netns', netns.name);
  if (cfg.kind === 'dns') {
    await mkdir(etc, { recursive: true });
    await writeFile(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n');
  }
  const trial = join(HERE, 'trial.mjs');
  const [cmd, args] = netns.wrap(process.execPath, [trial, JSON.stringify({ ...cfg, agent })]);
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: scratch },
  });
  let finished;
  current = { child, netns, done: new Promise((r) => (finished = r)) };
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => {
    err += d;
    process.stderr.write(d);
  });
  const timer = setTimeout(() => {
    log(`${agent}/${cfg.kind}: timed out after ${TRIAL_TIMEOUT_MS} ms, stopping it`);
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }, TRIAL_TIMEOUT_MS);
  const code = await new Promise((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  await reapNetns(netns);
  if (cfg.kind === 'dns') await rm(etc, { recursive: true, force: true });
  current = undefined;
  finished();
  if (stopping) throw new Error('stopped');
  const line = out.trim().split('\n').pop();
  if (code !== 0 || !line) {
    return { agent, kind: cfg.kind, ...(cfg.ca ? { ca: cfg.ca } : {}), failed: `exit ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}` };
  }
  return JSON.parse(line);
}

/** Kills whatever is still running in the namespace (only our trial's processes live there), then deletes it. */
async function reapNetns(netns) {
  const pids = sh('ip', ['netns', 'pids', netns.name]).split('\n').filter((p) => /^\d+$/.test(p));
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (pids.length) await new Promise((r) => setTimeout(r, 500));
  await netns.dispose().catch((e) => log(`could not delete netns ${netns.name}: ${e.message}`));
}

async function cleanupAndExit(sig) {
  log(`${sig}: stopping`);
  stopping = true;
  const running = current;
  if (running) {
    // the trial stops its agent (and istiod) on SIGTERM; runTrial then empties and deletes the namespace
    try {
      process.kill(-running.child.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const t = setTimeout(() => {
      try {
        process.kill(-running.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 15_000);
    await running.done;
    clearTimeout(t);
  }
  if (scratch) await rm(scratch, { recursive: true, force: true });
  process.exit(130);
}
process.once('SIGINT', () => void cleanupAndExit('SIGINT'));
process.once('SIGTERM', () => void cleanupAndExit('SIGTERM'));

async function main() {
  const t0 = Date.now();
  const agents = opt.agents.split(',').filter(Boolean);
  const kinds = opt.only.split(',').filter(Boolean);
  for (const k of kinds) if (!PLAN[k]) throw new Error(`unknown trial kind "${k}" (have: ${Object.keys(PLAN).join(', ')})`);
  const machine = facts();
  log(`machine: ${JSON.stringify(machine)}`);
  scratch = await mkdtemp(join(tmpdir(), 'meshagent-bench-'));
  const results = [];
  try {
    for (const [ki, kind] of kinds.entries()) {
      const { runs = 1, cas, ...cfg } = PLAN[kind];
      // the cert trial runs once per CA; the others have one variant
      const variants = cas ? cas.map((ca) => ({ ca })) : [{}];
      for (let r = 0; r < runs; r++) {
        // alternate which agent goes first (per run and per kind), so neither always runs on a warmer machine
        const order = (r + ki) % 2 === 0 ? agents : [...agents].reverse();
        for (const agent of order) {
          for (const v of variants) {
            // an agent without SDS gets one cert trial per CA, not several 20 s time-outs
            if (results.some((x) => x.agent === agent && x.kind === kind && x.ca === v.ca && x.sds && !x.sds.implemented)) continue;
            log(`--- ${kind} ${runs > 1 ? `run ${r + 1}/${runs} ` : ''}(${agent}${v.ca ? `, CA: ${v.ca}` : ''})`);
            results.push({ ...(await runTrial(agent, { ...cfg, ...v })), run: r });
          }
        }
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const elapsedS = Math.round((Date.now() - t0) / 1000);
  const argv = process.argv.slice(2).filter((a, i, all) => !(a.startsWith('--out') || a.startsWith('--json') || all[i - 1] === '--out' || all[i - 1] === '--json'));
  const command = ['npm run bench', ...(argv.length ? ['--', ...argv] : [])].join(' ');
  const md = renderReport({ machine, plan: PLAN, kinds, results, elapsedS, command });
  await writeFile(opt.out, md);
  if (opt.json) await writeFile(opt.json, `${JSON.stringify({ machine, plan: PLAN, results }, null, 1)}\n`);
  log(`wrote ${relative(process.cwd(), opt.out) || opt.out} in ${elapsedS} s`);
  const failed = results.filter((r) => r.failed);
  for (const f of failed) log(`FAILED ${f.agent}/${f.kind}: ${f.failed}`);
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (e) => {
    if (stopping) return; // cleanupAndExit exits
    log(`failed: ${e?.stack ?? e}`);
    if (scratch) await rm(scratch, { recursive: true, force: true });
    process.exit(1);
  },
);
