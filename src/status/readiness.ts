// Envoy readiness as pilot-agent judges it (status/ready/probe.go semantics, our own code):
//   1. config: CDS and LDS `update_success > 0` (latched once true);
//   2. shutdown started => "server is terminated: <cause>";
//   3. state: `server.state == 0` (LIVE) and `listener_manager.workers_started == 1` (latched once true;
//      the first success records the startup duration).
//   4. extra checks (gRPC bootstrap file, DNS table, ...), in order.
// The latches make readiness stable across Envoy hot restarts: the admin port is shared by all epochs and a
// new epoch briefly reports INITIALIZING, which must not flip a ready pod to unready.
import type { EnvoyAdmin } from '../envoy/admin.js';
import { parseStatsText } from '../envoy/admin.js';

export const UPDATE_STATS_FILTER = '^(cluster_manager\\.cds|listener_manager\\.lds)\\.(update_success|update_rejected)$';
export const READY_STATS_FILTER = '^(server\\.state|listener_manager\\.workers_started)';
/** pilot-agent's timeouts: 1s for the update stats (its default HTTP GET), 3s for the readiness stats. */
export const UPDATE_STATS_TIMEOUT_MS = 1000;
export const READY_STATS_TIMEOUT_MS = 3000;

/** An extra readiness check: resolves to a reason when not ready, undefined when ready. */
export type ReadinessCheck = () => Promise<string | undefined> | string | undefined;

export interface ReadinessResult {
  readonly ready: boolean;
  readonly reason?: string;
}

const SERVER_STATES = ['LIVE', 'DRAINING', 'PRE_INITIALIZING', 'INITIALIZING'] as const;

export function serverStateName(state: number): string {
  return SERVER_STATES[state] ?? 'UNKNOWN';
}

export interface UpdateStats {
  cdsSuccess: number;
  cdsRejected: number;
  ldsSuccess: number;
  ldsRejected: number;
}

export function updateStatsText(s: UpdateStats): string {
  return `cds updates: ${s.cdsSuccess} successful, ${s.cdsRejected} rejected; lds updates: ${s.ldsSuccess} successful, ${s.ldsRejected} rejected`;
}

export function parseUpdateStats(text: string): UpdateStats {
  const m = parseStatsText(text);
  return {
    cdsSuccess: m.get('cluster_manager.cds.update_success') ?? 0,
    cdsRejected: m.get('cluster_manager.cds.update_rejected') ?? 0,
    ldsSuccess: m.get('listener_manager.lds.update_success') ?? 0,
    ldsRejected: m.get('listener_manager.lds.update_rejected') ?? 0,
  };
}

/** Judges the CDS/LDS update stats; undefined when the first config was accepted. */
export function configReason(s: UpdateStats): string | undefined {
  const cds = s.cdsSuccess > 0;
  const lds = s.ldsSuccess > 0;
  if (cds && lds) return undefined;
  if (!cds && !lds) return `config not received from XDS server (is Istiod running?): ${updateStatsText(s)}`;
  if (s.ldsRejected > 0 || s.cdsRejected > 0) return `config received from XDS server, but was rejected: ${updateStatsText(s)}`;
  return `config not fully received from XDS server: ${updateStatsText(s)}`;
}

/** Judges the `server.state` / `workers_started` stats text; undefined when LIVE with workers started. */
export function serverStateReason(text: string): string | undefined {
  const trimmed = text.trim();
  if (!text.includes('server.state')) return `failed to get readiness stats: server.state is not yet updated: ${trimmed}`;
  if (!text.includes('listener_manager.workers_started')) {
    return `failed to get readiness stats: listener_manager.workers_started is not yet updated: ${trimmed}`;
  }
  const m = parseStatsText(text);
  const state = m.get('server.state');
  const workers = m.get('listener_manager.workers_started');
  if (state === undefined || workers === undefined) return `failed to get readiness stats: malformed stats: ${trimmed}`;
  if (state !== 0) return `server is not live, current state is: ${serverStateName(state)}`;
  if (workers !== 1) return 'workers have not yet started';
  return undefined;
}

export interface ReadinessProbeOptions {
  /** Envoy admin; omit (or `noEnvoy`) to check only the extra checks. */
  readonly admin?: Pick<EnvoyAdmin, 'statsText'>;
  readonly noEnvoy?: boolean;
  readonly checks?: readonly ReadinessCheck[];
  /** Called once, on the first time Envoy is LIVE with workers started. */
  readonly onFirstReady?: () => void;
}

/** Stateful prober: holds the latches and the shutdown cause. Concurrent checks are safe. */
export class ReadinessProbe {
  private receivedFirstUpdate = false;
  private atLeastOnceReady = false;
  private terminatedCause: string | undefined;
  private readonly checks: ReadinessCheck[];

  constructor(private readonly o: ReadinessProbeOptions) {
    this.checks = [...(o.checks ?? [])];
  }

  /** Adds a check after construction (e.g. once the gRPC bootstrap path is known). */
  addCheck(check: ReadinessCheck): void {
    this.checks.push(check);
  }

  /** From now on readiness fails with "server is terminated: <cause>". */
  setShuttingDown(cause: string): void {
    this.terminatedCause ??= cause;
  }

  get shuttingDown(): boolean {
    return this.terminatedCause !== undefined;
  }

  /** True once Envoy has been seen LIVE with config: the latches hold. */
  get latched(): boolean {
    return this.receivedFirstUpdate && this.atLeastOnceReady;
  }

  /** Forgets the latches: for a new Envoy that is NOT a hot-restart child (crash restart in place). */
  reset(): void {
    this.receivedFirstUpdate = false;
    this.atLeastOnceReady = false;
  }

  async check(): Promise<ReadinessResult> {
    const envoyReason = await this.checkEnvoy();
    if (envoyReason !== undefined) return { ready: false, reason: envoyReason };
    for (const c of this.checks) {
      let reason: string | undefined;
      try {
        reason = await c();
      } catch (e) {
        reason = e instanceof Error ? e.message : String(e);
      }
      if (reason !== undefined) return { ready: false, reason };
    }
    return { ready: true };
  }

  private async checkEnvoy(): Promise<string | undefined> {
    const admin = this.o.admin;
    if (this.o.noEnvoy || !admin) {
      return this.terminatedCause !== undefined ? `server is terminated: ${this.terminatedCause}` : undefined;
    }
    if (!this.receivedFirstUpdate) {
      let text: string;
      try {
        text = await admin.statsText(UPDATE_STATS_FILTER, { usedOnly: true, timeoutMs: UPDATE_STATS_TIMEOUT_MS });
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
      const reason = configReason(parseUpdateStats(text));
      if (reason !== undefined) return reason;
      this.receivedFirstUpdate = true;
    }
    if (this.terminatedCause !== undefined) return `server is terminated: ${this.terminatedCause}`;
    if (this.atLeastOnceReady) return undefined;
    let text: string;
    try {
      text = await admin.statsText(READY_STATS_FILTER, { usedOnly: true, timeoutMs: READY_STATS_TIMEOUT_MS });
    } catch (e) {
      return `failed to get readiness stats: ${e instanceof Error ? e.message : String(e)}`;
    }
    const reason = serverStateReason(text);
    if (reason !== undefined) return reason;
    if (!this.atLeastOnceReady) {
      this.atLeastOnceReady = true;
      this.o.onFirstReady?.();
    }
    return undefined;
  }
}
