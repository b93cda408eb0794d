// Runs Envoy: spawns it (stdout/stderr passed through), hot-restarts it into a new epoch on request,
// restarts it in place after a crash (under a budget), and kills every epoch on stop.
//
// Exits, as pilot-agent sees them: the current epoch exiting with code 0 on its own (e.g. a Job's
// `curl -X POST localhost:15000/quitquitquit`) ends the agent with that code; only a signal or a non-zero
// code is a crash. Termination wins over every restart path: once `beginShutdown()` or `stop()` is
// called, no new epoch is started, a launch in flight is killed, and stop() waits for every process.
// Each Envoy is started through `setpriv --pdeathsig SIGTERM` (when the host has it), so Envoy is told to
// exit even if the agent itself is killed with SIGKILL, and told to when the agent's process exits.
//
// Envoy is spawned with node:child_process rather than execa (which the agent uses for istio-iptables):
// the supervisor needs a pid, an exit code or signal and inherited stdio, nothing execa adds, and loading
// execa's ~40 modules would sit on the start-up path before Envoy is spawned.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
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
  /** Envoy exited and we do not restart it: a clean exit, or any exit with hot restart disabled (pilot-agent's behaviour). */
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
  /** Called as soon as the current Envoy is gone and a crash restart is pending (readiness must fail now). */
  readonly onCrash?: (exit: ExitInfo) => void;
  /**
   * Resolves once a new hot-restart epoch serves (e.g. its admin reports it LIVE); the hot restart is not
   * done (and the new bootstrap not committed by the caller) before. Default: resolves at once.
   */
  readonly awaitLive?: (epoch: number, signal: AbortSignal) => Promise<void>;
  /** How long a new hot-restart epoch may take to serve before it is given up (default 60 s). */
  readonly liveTimeoutMs?: number;
  /**
   * Called before every crash restart, so the fresh Envoy starts from the last good bootstrap (the caller
   * puts it back on disk if anything else is there, e.g. a hot restart's candidate that failed).
   */
  readonly beforeCrashRestart?: () => Promise<void>;
  /** The parent-death wrapper (default `setpriv` from PATH, when found; '' = none). */
  readonly pdeathsigWrapper?: string;
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
  readonly state: 'idle' | 'running' | 'restarting' | 'draining' | 'stopping' | 'stopped';
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
  /**
   * Starts epoch N+1 beside the running one and resolves once it serves (see `awaitLive`); the old epoch
   * drains and exits on its own. Rejects when the new epoch dies first: the old epoch keeps serving.
   * After such a failure Envoy's hot restart cannot hand over from that parent again, so the next
   * hot restart is a cold one (stop, then a fresh epoch 0).
   */
  hotRestart(reason: string): Promise<number>;
  /** Termination has begun (drain): no restart of any kind from now on; an exit of Envoy ends the agent. */
  beginShutdown(): void;
  /** Resolves when the current Envoy exits (for drain logic that must race Envoy's exit). */
  currentExited(): Promise<ExitInfo>;
  /** Whether the current Envoy process exists and is not a zombie (checked now, not when its exit is noticed). */
  currentAlive(): boolean;
  /** Kills every epoch (SIGKILL, as pilot-agent does after the drain period) and waits for them. */
  stop(): Promise<void>;
  /** Settles when the agent should stop because of Envoy (exit without restart, or crash budget spent). */
  readonly done: Promise<SupervisorOutcome>;
  status(): EnvoyStatus;
}

/** `setpriv` when the host has it (util-linux; Debian and most images do). */
function findPdeathsigWrapper(path = process.env.PATH ?? ''): string {
  for (const dir of path.split(':')) {
    if (dir && existsSync(`${dir}/setpriv`)) return `${dir}/setpriv`;
  }
  return '';
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
  /** A failed hot restart leaves a parent Envoy that will not hand over again. */
  let handoverBroken = false;
  /** The epoch of a hot restart in progress (launched, not yet serving) and the parent it replaces. */
  let handover: { child: Epoch; parent: Epoch } | undefined;
  /** Aborts back-off sleeps when termination begins. */
  const shutdownSignal = new AbortController();
  const wrapper = o.pdeathsigWrapper ?? findPdeathsigWrapper(o.env.PATH);
  if (!wrapper) log.warn('setpriv not found: Envoy would outlive the agent if the agent were killed with SIGKILL');
  const terminating = (): boolean => state === 'draining' || state === 'stopping' || state === 'stopped';

  async function readBaseId(): Promise<number> {
    if (baseId !== undefined) return baseId;
    for (let i = 0; i < 100; i++) {
      const text = await readFile(o.baseIdPath, 'utf8').catch(() => '');
      if (/^\d+$/.test(text.trim())) return (baseId = Number(text.trim()));
      await sleep(50);
    }
    throw new AgentError('AGENT_ERR_ENVOY_EXIT', `Envoy did not write its hot-restart base id to ${o.baseIdPath}`);
  }

  // the agent's process exiting (whatever the reason) takes every Envoy with it
  let exitHook: (() => void) | undefined;
  function watchProcessExit(): void {
    if (exitHook) return;
    exitHook = () => {
      for (const e of alive()) kill(e, 'SIGTERM');
    };
    process.once('exit', exitHook);
  }

  async function launch(hot: HotRestartArgs): Promise<Epoch> {
    const args = o.buildArgs(hot);
    const epochNo = hot.mode === 'epoch' ? hot.epoch : 0;
    log.info(`Envoy command: [${args.join(' ')}]`);
    let child: ChildProcess;
    // setpriv sets the parent-death signal, then execs Envoy (same pid, same argv); a binary it could not
    // exec would only show as setpriv's exit, so check it here first (synchronously: this is the last step
    // before the spawn, src/lib/files.ts)
    if (wrapper && o.binaryPath.includes('/')) {
      try {
        accessSync(resolvePath(o.cwd, o.binaryPath), constants.X_OK);
      } catch (e) {
        throw new AgentError('AGENT_ERR_ENVOY_EXIT', `failed to start Envoy (binaryPath ${o.binaryPath}): ${(e as Error).message}`, { cause: e });
      }
    }
    const [file, argv] = wrapper ? [wrapper, ['--pdeathsig', 'SIGTERM', '--', o.binaryPath, ...args]] : [o.binaryPath, args];
    try {
      child = spawn(file, argv, { cwd: o.cwd, env: o.env as NodeJS.ProcessEnv, stdio: 'inherit' });
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
    child.on('error', (err) => log.warn(`Envoy process ${child.pid}: ${err.message}`));
    const exited = new Promise<ExitInfo>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const ep: Epoch = { epoch: epochNo, pid: child.pid!, startedAt: now(), exited, retiring: false };
    watchProcessExit();
    epochs.push(ep);
    void exited.then((info) => onExit(ep, info));
    if (state === 'stopping' || state === 'stopped') {
      // stop() ran while this launch was in flight: it must not survive
      kill(ep, 'SIGKILL');
      throw new AgentError('AGENT_ERR_USAGE', 'the agent is shutting down');
    }
    return ep;
  }

  function alive(): Epoch[] {
    return epochs.filter((e) => !e.exit);
  }

  /**
   * Marks `e` as handing over. Envoy's new epoch terminates its parent after the parent-shutdown time;
   * if that new epoch dies first, nobody would: the parent (drained, admin closed) would linger forever.
   * So the supervisor ends it itself once the time is up (plus a grace), and at once when its successor is gone.
   */
  function retire(e: Epoch): void {
    e.retiring = true;
    const t = setTimeout(() => {
      if (!e.exit) {
        log.warn(`Envoy epoch ${e.epoch} (pid ${e.pid}) is still running past its parent-shutdown time; stopping it`);
        kill(e, 'SIGTERM');
        setTimeout(() => !e.exit && kill(e, 'SIGKILL'), 5000).unref();
      }
    }, o.parentShutdownS() * 1000 + 5000);
    t.unref();
  }

  function kill(e: Epoch, sig: NodeJS.Signals): void {
    try {
      process.kill(e.pid, sig);
    } catch {
      /* already gone */
    }
  }

  function onExit(ep: Epoch, info: ExitInfo): void {
    ep.exit = info;
    epochs.splice(epochs.indexOf(ep), 1);
    if (state === 'stopping' || state === 'stopped') return;
    if (ep.retiring) {
      if (ep === current) log.info(`Envoy epoch ${ep.epoch} stopped for a cold restart (${describeExit(info)})`);
      else log.info(`Envoy epoch ${ep.epoch} exited after handing over to epoch ${current?.epoch} (${describeExit(info)})`);
      return;
    }
    if (ep !== current) return;
    // the current epoch exited on its own
    const parent = handover?.child === ep && !handover.parent.exit ? handover.parent : undefined;
    if (parent && state !== 'draining') {
      log.warn(`Envoy epoch ${ep.epoch} exited during hot restart (${describeExit(info)}); epoch ${parent.epoch} keeps serving; the next hot restart will be a cold one`);
      parent.retiring = false;
      current = parent;
      handoverBroken = true;
      return;
    }
    const clean = info.code === 0 && !info.signal;
    if (!clean && (info.signal === 'SIGKILL' || (info.code !== null && info.code > 128))) {
      log.warn('Envoy may have been out of memory killed. Check memory usage and limits.');
    }
    if (clean || !o.hotRestart || state === 'draining') {
      // pilot-agent: the agent ends when Envoy does; a clean exit (e.g. /quitquitquit on Envoy's admin) is not a crash
      if (clean) log.info('Envoy exited normally');
      else log.error(`Envoy exited with error: ${describeExit(info)}`);
      current = undefined;
      state = 'stopped';
      settle({ kind: 'exited', exit: info });
      return;
    }
    const t = now();
    const decision = decideRestart(crashTimes, t, o.budget, o.backoff);
    crashTimes.push(t);
    current = undefined;
    if (decision.action === 'give-up') {
      log.error(`Envoy exited unexpectedly (${describeExit(info)}): ${decision.message}`);
      state = 'stopped';
      settle({ kind: 'gave-up', message: decision.message });
      return;
    }
    log.warn(`Envoy exited unexpectedly (${describeExit(info)}); restarting it in ${decision.delayMs}ms (crash ${decision.crashesInWindow} of ${o.budget.max} allowed in ${Math.round(o.budget.windowMs / 1000)}s)`);
    // epochs that had handed over to the crashed one serve nothing now, and nothing would end them
    for (const e of alive().filter((x) => x.retiring)) kill(e, 'SIGTERM');
    state = 'restarting';
    o.onCrash?.(info);
    restartChain = restartChain.then(async () => {
      try {
        await sleep(decision.delayMs, undefined, { signal: shutdownSignal.signal });
      } catch {
        return; // termination began during the back-off
      }
      if (state !== 'restarting') return;
      try {
        // a crash restart starts over: a fresh epoch 0 on a fresh base id (the crashed Envoy may have left
        // its hot-restart shared memory marked "initializing", which would refuse every later epoch)
        await freshBaseId();
        await o.beforeCrashRestart?.();
        const ep = await launch({ mode: 'first', baseIdPath: o.baseIdPath, parentShutdownS: o.parentShutdownS() });
        nextEpoch = 1;
        handoverBroken = false;
        if (state !== 'restarting') {
          kill(ep, 'SIGKILL');
          return;
        }
        current = ep;
        crashRestarts++;
        state = 'running';
        o.onRestart?.(current.epoch, 'crash');
      } catch (e) {
        if (terminating()) return;
        log.error(`failed to restart Envoy: ${(e as Error).message}`);
        state = 'stopped';
        settle({ kind: 'gave-up', message: `failed to restart Envoy: ${(e as Error).message}` });
      }
    });
  }

  /** Stops every epoch (SIGTERM, SIGKILL after graceMs) and waits for them. */
  async function killAll(graceMs: number): Promise<void> {
    const all = alive();
    for (const e of all) kill(e, graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
    if (graceMs > 0) {
      const t = setTimeout(() => all.forEach((e) => kill(e, 'SIGKILL')), graceMs);
      await Promise.all(all.map((e) => e.exited));
      clearTimeout(t);
    } else {
      await Promise.all(all.map((e) => e.exited));
    }
  }

  /** After a failed hand-over: stop the serving Envoy and start a fresh epoch 0 (a short interruption). */
  async function coldRestart(reason: string): Promise<number> {
    log.warn(`restarting Envoy cold (stop, then a fresh epoch 0): ${reason}`);
    const old = alive();
    for (const e of old) e.retiring = true; // their exits are expected
    await killAll(5000);
    await freshBaseId();
    const ep = await launch({ mode: 'first', baseIdPath: o.baseIdPath, parentShutdownS: o.parentShutdownS() });
    current = ep;
    nextEpoch = 1;
    handoverBroken = false;
    hotRestarts++;
    o.onRestart?.(0, reason);
    try {
      await waitLive(ep);
    } catch (e) {
      // it died: its exit is a crash (a fresh Envoy from the last good bootstrap follows); the caller must
      // not keep this bootstrap
      if (ep.exit) throw e;
      // not ready yet (e.g. the control plane went away meanwhile): the old Envoy is gone, this one stays
      log.warn(`${(e as Error).message}; it stays, as the only Envoy`);
    }
    return 0;
  }

  /** Forgets the base id (and removes its shared memory) so the next launch gets a new one. */
  async function freshBaseId(): Promise<void> {
    await cleanupSharedMemory();
    await rm(o.baseIdPath, { force: true });
    baseId = undefined;
  }

  /** Resolves when `ep` serves; rejects when it exits first. */
  async function waitLive(ep: Epoch): Promise<void> {
    if (!o.awaitLive) return;
    let live = false;
    const died = ep.exited.then((info) => {
      if (!live) throw new AgentError('AGENT_ERR_ENVOY_EXIT', `Envoy epoch ${ep.epoch} exited before it was ready (${describeExit(info)})`);
    });
    const aborted = new Promise<never>((_, reject) => {
      const fail = (): void => reject(new AgentError('AGENT_ERR_USAGE', 'the agent is shutting down'));
      if (shutdownSignal.signal.aborted) fail();
      else shutdownSignal.signal.addEventListener('abort', fail, { once: true });
    });
    aborted.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = o.liveTimeoutMs ?? 60_000;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AgentError('AGENT_ERR_ENVOY_EXIT', `Envoy epoch ${ep.epoch} did not become ready within ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
    });
    timedOut.catch(() => undefined);
    const stopWaiting = new AbortController();
    try {
      await Promise.race([o.awaitLive(ep.epoch, stopWaiting.signal).then(() => (live = true)), died, aborted, timedOut]);
    } finally {
      clearTimeout(timer);
      stopWaiting.abort();
    }
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
        if (handoverBroken) return coldRestart(`${reason} (the running Envoy cannot hand over after a failed hot restart)`);
        const bid = await readBaseId();
        const epoch = nextEpoch++;
        log.info(`hot-restarting Envoy into epoch ${epoch}: ${reason}`);
        const parent = current;
        const child = await launch({ mode: 'epoch', epoch, baseId: bid, parentShutdownS: o.parentShutdownS(), afterCrash: false });
        retire(parent);
        current = child;
        hotRestarts++;
        handover = { child, parent };
        o.onRestart?.(epoch, reason);
        try {
          await waitLive(child);
        } catch (e) {
          // never served: stop it (its exit hands serving back to the parent, see onExit)
          if (!child.exit && !terminating()) {
            kill(child, 'SIGKILL');
            await child.exited;
          }
          throw e;
        } finally {
          handover = undefined;
        }
        return epoch;
      });
      restartChain = run.catch(() => undefined);
      return run;
    },
    beginShutdown() {
      if (state === 'running' || state === 'restarting' || state === 'idle') state = 'draining';
      shutdownSignal.abort();
    },
    currentAlive() {
      const pid = current?.pid;
      if (pid === undefined || current?.exit) return false;
      try {
        // /proc/<pid>/stat: "pid (comm) S ..."; Z = exited, not yet reaped
        const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
        return !/\) [ZX] /.test(stat);
      } catch {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      }
    },
    currentExited() {
      return current ? current.exited : Promise.resolve({ code: null, signal: null });
    },
    async stop() {
      if (state === 'stopped' && !alive().length) return;
      state = 'stopping';
      shutdownSignal.abort();
      // a launch in flight finishes (and is killed by launch itself) before we count the processes
      await restartChain.catch(() => undefined);
      await killAll(0);
      state = 'stopped';
      if (exitHook) process.off('exit', exitHook);
      exitHook = undefined;
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
