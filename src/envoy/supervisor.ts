// Runs Envoy: spawns it with execa (stdout/stderr passed through), hot-restarts it into a new epoch on
// request, restarts it in place after a crash (under a budget), and kills every epoch on stop.
import { execa, type ResultPromise } from 'execa';
import { readFile, readdir, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../lib/log.js';
import { AgentError } from '../lib/errors.js';
import type { HotRestartArgs } from './args.js';
import { decideRestart, type Backoff, type RestartBudget } from './restart-policy.js';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
}

export type SupervisorOutcome =
  /** Envoy exited and we do not restart it (hot restart disabled: pilot-agent's behaviour). */
  | { readonly kind: 'exited'; readonly exit: ExitInfo }
  /** Envoy kept crashing: the crash budget is spent. */
  | { readonly kind: 'gave-up'; readonly message: string };

export interface SupervisorOptions {
  readonly binaryPath: string;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Builds the argv for a launch; called for every epoch so config reloads take effect. */
  readonly buildArgs: (hot: HotRestartArgs) => string[];
  readonly hotRestart: boolean;
  readonly baseIdPath: string;
  readonly parentShutdownS: () => number;
  readonly budget: RestartBudget;
  readonly backoff?: Backoff;
  readonly log: Logger;
  readonly now?: () => number;
  /** Called after a new epoch is spawned (hot restart or crash restart). */
  readonly onRestart?: (epoch: number, reason: string) => void;
}

interface Epoch {
  readonly epoch: number;
  readonly pid: number;
  readonly startedAt: number;
  readonly exited: Promise<ExitInfo>;
  retiring: boolean;
  exit?: ExitInfo;
}

export interface EnvoyStatus {
  readonly state: 'idle' | 'running' | 'restarting' | 'stopping' | 'stopped';
  readonly epoch: number;
  readonly pid: number | undefined;
  readonly startedAt: number | undefined;
  readonly hotRestarts: number;
  readonly crashRestarts: number;
  readonly retiringEpochs: readonly number[];
}

export interface EnvoySupervisor {
  /** Spawns the first Envoy. Rejects when the binary cannot be started. */
  start(): Promise<void>;
  /** Starts epoch N+1 beside the running one; the old epoch drains and exits on its own. */
  hotRestart(reason: string): Promise<number>;
  /** Resolves when the current Envoy exits (for drain logic that must race Envoy's exit). */
  currentExited(): Promise<ExitInfo>;
  /** Kills every epoch (SIGKILL, as pilot-agent does after the drain period) and waits for them. */
  stop(): Promise<void>;
  /** Settles when the agent should stop because of Envoy (exit without restart, or crash budget spent). */
  readonly done: Promise<SupervisorOutcome>;
  status(): EnvoyStatus;
}

function describeExit(e: ExitInfo): string {
  return e.signal ? `signal: ${e.signal === 'SIGKILL' ? 'killed' : e.signal}` : `exit status ${e.code}`;
}

export function createEnvoySupervisor(o: SupervisorOptions): EnvoySupervisor {
  const log = o.log;
  const now = o.now ?? Date.now;
  const epochs: Epoch[] = [];
  const crashTimes: number[] = [];
  let state: EnvoyStatus['state'] = 'idle';
  let current: Epoch | undefined;
  let nextEpoch = 0;
  let baseId: number | undefined;
  let hotRestarts = 0;
  let crashRestarts = 0;
  let settle!: (r: SupervisorOutcome) => void;
  const done = new Promise<SupervisorOutcome>((r) => (settle = r));
  let restartChain: Promise<unknown> = Promise.resolve();

  async function readBaseId(): Promise<number> {
    if (baseId !== undefined) return baseId;
    for (let i = 0; i < 100; i++) {
      const text = await readFile(o.baseIdPath, 'utf8').catch(() => '');
      if (/^\d+$/.test(text.trim())) return (baseId = Number(text.trim()));
      await sleep(50);
    }
    throw new AgentError('AGENT_ERR_ENVOY_EXIT', `Envoy did not write its hot-restart base id to ${o.baseIdPath}`);
  }

  async function launch(hot: HotRestartArgs): Promise<Epoch> {
    const args = o.buildArgs(hot);
    const epochNo = hot.mode === 'epoch' ? hot.epoch : 0;
    log.info(`Envoy command: [${args.join(' ')}]`);
    let child: ResultPromise<{ stdio: 'inherit'; reject: false }>;
    try {
      child = execa(o.binaryPath, args, { cwd: o.cwd, env: o.env as Record<string, string>, extendEnv: false, stdio: 'inherit', reject: false, cleanup: true });
    } catch (e) {
      throw new AgentError('AGENT_ERR_ENVOY_EXIT', `failed to start Envoy (${o.binaryPath}): ${(e as Error).message}`, { cause: e });
    }
    const spawned = await Promise.race([
      new Promise<'ok'>((r) => child.once('spawn', () => r('ok'))),
      new Promise<Error>((r) => child.once('error', (err) => r(err))),
    ]);
    if (spawned !== 'ok') {
      throw new AgentError('AGENT_ERR_ENVOY_EXIT', `failed to start Envoy (binaryPath ${o.binaryPath}): ${spawned.message}`, { cause: spawned });
    }
    const exited = child.then((r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null }));
    const ep: Epoch = { epoch: epochNo, pid: child.pid!, startedAt: now(), exited, retiring: false };
    epochs.push(ep);
    void exited.then((info) => onExit(ep, info));
    return ep;
  }

  function alive(): Epoch[] {
    return epochs.filter((e) => !e.exit);
  }

  function onExit(ep: Epoch, info: ExitInfo): void {
    ep.exit = info;
    epochs.splice(epochs.indexOf(ep), 1);
    if (state === 'stopping' || state === 'stopped') return;
    if (ep.retiring) {
      log.info(`Envoy epoch ${ep.epoch} exited after handing over to epoch ${current?.epoch} (${describeExit(info)})`);
      return;
    }
    if (ep !== current) return;
    // the current epoch exited on its own
    const parent = alive().filter((e) => e.retiring).pop();
    if (parent) {
      log.warn(`Envoy epoch ${ep.epoch} exited during hot restart (${describeExit(info)}); epoch ${parent.epoch} keeps serving`);
      parent.retiring = false;
      current = parent;
      return;
    }
    if (info.signal === 'SIGKILL' || (info.code !== null && info.code > 128)) {
      log.warn('Envoy may have been out of memory killed. Check memory usage and limits.');
    }
    if (!o.hotRestart) {
      if (info.code === 0 && !info.signal) log.info('Envoy exited normally');
      else log.error(`Envoy exited with error: ${describeExit(info)}`);
      state = 'stopped';
      settle({ kind: 'exited', exit: info });
      return;
    }
    const t = now();
    const decision = decideRestart(crashTimes, t, o.budget, o.backoff);
    crashTimes.push(t);
    if (decision.action === 'give-up') {
      log.error(`Envoy exited unexpectedly (${describeExit(info)}): ${decision.message}`);
      state = 'stopped';
      settle({ kind: 'gave-up', message: decision.message });
      return;
    }
    log.warn(`Envoy exited unexpectedly (${describeExit(info)}); restarting it in ${decision.delayMs}ms (crash ${decision.crashesInWindow} of ${o.budget.max} allowed in ${Math.round(o.budget.windowMs / 1000)}s)`);
    state = 'restarting';
    current = undefined;
    restartChain = restartChain.then(async () => {
      await sleep(decision.delayMs);
      if (state !== 'restarting') return;
      try {
        const epoch = nextEpoch++;
        const bid = await readBaseId().catch(() => undefined);
        const hot: HotRestartArgs =
          bid === undefined
            ? { mode: 'first', baseIdPath: o.baseIdPath, parentShutdownS: o.parentShutdownS() }
            : { mode: 'epoch', epoch, baseId: bid, parentShutdownS: o.parentShutdownS(), afterCrash: true };
        current = await launch(hot);
        crashRestarts++;
        state = 'running';
        o.onRestart?.(current.epoch, 'crash');
      } catch (e) {
        log.error(`failed to restart Envoy: ${(e as Error).message}`);
        state = 'stopped';
        settle({ kind: 'gave-up', message: `failed to restart Envoy: ${(e as Error).message}` });
      }
    });
  }

  return {
    done,
    async start() {
      if (state !== 'idle') throw new Error('Envoy supervisor already started');
      await rm(o.baseIdPath, { force: true });
      const hot: HotRestartArgs = o.hotRestart ? { mode: 'first', baseIdPath: o.baseIdPath, parentShutdownS: o.parentShutdownS() } : { mode: 'disabled' };
      current = await launch(hot);
      nextEpoch = 1;
      state = 'running';
    },
    async hotRestart(reason) {
      if (!o.hotRestart) throw new AgentError('AGENT_ERR_USAGE', 'hot restart is disabled (--disable-hot-restart)');
      const run = restartChain.then(async () => {
        if (state !== 'running' || !current) throw new AgentError('AGENT_ERR_USAGE', `cannot hot-restart Envoy while it is ${state}`);
        const bid = await readBaseId();
        const epoch = nextEpoch++;
        log.info(`hot-restarting Envoy into epoch ${epoch}: ${reason}`);
        const parent = current;
        const child = await launch({ mode: 'epoch', epoch, baseId: bid, parentShutdownS: o.parentShutdownS(), afterCrash: false });
        parent.retiring = true;
        current = child;
        hotRestarts++;
        o.onRestart?.(epoch, reason);
        return epoch;
      });
      restartChain = run.catch(() => undefined);
      return run;
    },
    currentExited() {
      return current ? current.exited : Promise.resolve({ code: null, signal: null });
    },
    async stop() {
      if (state === 'stopped' && !alive().length) return;
      state = 'stopping';
      const all = alive();
      for (const e of all) {
        try {
          process.kill(e.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      await Promise.all(all.map((e) => e.exited));
      state = 'stopped';
      await cleanupSharedMemory();
      settle({ kind: 'exited', exit: { code: null, signal: 'SIGKILL' } });
    },
    status() {
      return {
        state,
        epoch: current?.epoch ?? -1,
        pid: current?.pid,
        startedAt: current?.startedAt,
        hotRestarts,
        crashRestarts,
        retiringEpochs: alive().filter((e) => e.retiring).map((e) => e.epoch),
      };
    },
  };

  async function cleanupSharedMemory(): Promise<void> {
    // Envoy leaves its hot-restart shared memory behind; remove ours so repeated runs do not pile up.
    if (baseId === undefined) baseId = await readFile(o.baseIdPath, 'utf8').then((t) => Number(t.trim()), () => undefined);
    if (baseId === undefined || !Number.isFinite(baseId)) return;
    const prefix = `envoy_shared_memory_${baseId}`;
    const names = await readdir('/dev/shm').catch(() => [] as string[]);
    await Promise.all(names.filter((n) => n.startsWith(prefix) && n.length === prefix.length + 1).map((n) => rm(`/dev/shm/${n}`, { force: true })));
  }
}
