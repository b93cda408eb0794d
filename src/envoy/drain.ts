// Termination policy (pilot-agent's): drain listeners, then wait terminationDrainDuration, or with
// EXIT_ON_ZERO_ACTIVE_CONNECTIONS poll active connections after MINIMUM_DRAIN_DURATION. Every wait
// races Envoy's own exit, and a failing stats call never aborts the drain early (it is retried).
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../lib/log.js';

export interface DrainAdmin {
  /** POST drain_listeners; `inboundOnly` for sidecars. */
  drainListeners(opts: { inboundOnly: boolean; graceful: boolean; skipExit: boolean }): Promise<void>;
  /** Active downstream connections by pilot-agent's rule; -1 when the stat is unavailable. */
  activeConnections(): Promise<number>;
}

export interface DrainOptions {
  readonly admin: DrainAdmin;
  /** Resolves when the current Envoy exits. */
  readonly envoyExited: () => Promise<unknown>;
  readonly log: Logger;
  readonly sidecar: boolean;
  readonly terminationDrainMs: number;
  readonly minDrainMs: number;
  readonly exitOnZeroActiveConnections: boolean;
  /** True when `/drain` already drained Envoy (native-sidecar preStop): then no wait at all. */
  readonly alreadyDrained: boolean;
  readonly pollIntervalMs?: number;
}

export type DrainResult = 'envoy-exited' | 'drain-complete' | 'skipped';

export async function drainForTermination(o: DrainOptions): Promise<DrainResult> {
  const log = o.log;
  log.info('Agent draining Proxy for termination');
  if (o.alreadyDrained) {
    log.info('Agent already drained, exiting immediately');
    return 'skipped';
  }
  const ac = new AbortController();
  const exited = o.envoyExited().then(() => 'envoy-exited' as const);
  const wait = (ms: number) => sleep(ms, undefined, { signal: ac.signal }).then(() => 'waited' as const, () => 'waited' as const);
  try {
    await o.admin.drainListeners({ inboundOnly: o.sidecar, graceful: true, skipExit: false }).catch((e: unknown) => {
      log.warn(`Error in invoking drain listeners endpoint: ${(e as Error).message}`);
    });
    if (!o.exitOnZeroActiveConnections) {
      log.info(`Graceful termination period is ${o.terminationDrainMs / 1000}s, starting...`);
      const r = await Promise.race([exited, wait(o.terminationDrainMs)]);
      if (r === 'envoy-exited') {
        log.info('Graceful termination logic ended prematurely, envoy process terminated early');
        return r;
      }
      log.info('Graceful termination period complete, terminating remaining proxies.');
      return 'drain-complete';
    }
    log.info(`Agent draining proxy for ${o.minDrainMs / 1000}s, then waiting for active connections to terminate...`);
    if ((await Promise.race([exited, wait(o.minDrainMs)])) === 'envoy-exited') return 'envoy-exited';
    log.info('Checking for active connections...');
    let failures = 0;
    for (;;) {
      if ((await Promise.race([exited, wait(o.pollIntervalMs ?? 1000)])) === 'envoy-exited') {
        log.info('Graceful termination logic ended prematurely, envoy process terminated early');
        return 'envoy-exited';
      }
      let n: number;
      try {
        n = await o.admin.activeConnections();
      } catch (e) {
        failures++;
        log.error(`unable to get listener stats from Envoy: ${(e as Error).message}`);
        if (failures > 4) {
          log.warn(`Graceful termination logic ended prematurely, error while obtaining downstream_cx_active stat (Max retry ${failures} exceeded)`);
          return 'drain-complete';
        }
        log.warn(`Retrying (${failures} attempt) to obtain active connections...`);
        continue;
      }
      failures = 0;
      if (n === -1) {
        log.info('downstream_cx_active are not available. This either means there are no downstream connection established yet or the stats are not enabled. Skipping active connections check...');
        return 'drain-complete';
      }
      if (n === 0) {
        log.info('There are no more active connections. terminating proxy...');
        return 'drain-complete';
      }
      log.info(`There are still ${n} active connections`);
    }
  } finally {
    ac.abort();
  }
}
