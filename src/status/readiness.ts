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

/**
 * A named readiness check: the registry of what can block readiness (gRPC bootstrap, Envoy process,
 * workload certificate, DNS table, ...). Components plug theirs in with `addCheck`.
 */
export interface NamedReadinessCheck {
  readonly name: string;
  readonly check: ReadinessCheck;
}

/** One thing that keeps the proxy from being ready. */
export interface ReadinessBlocker {
  /** The check's name: `envoy` for Envoy's own state, else the registered name. */
  readonly check: string;
  readonly reason: string;
}

export interface ReadinessResult {
  readonly ready: boolean;
  /** The first reason, in pilot-agent's words (its log line); the blockers explain more. */
  readonly reason?: string;
  /** Every blocker, Envoy's first, then the checks in registration order. */
  readonly blockers?: readonly ReadinessBlocker[];
}

/** A blocker's reason is cut to this many characters in the 503 body (NACK messages can be long). */
export const MAX_BLOCKER_TEXT = 2048;

/**
 * The 503 body of /healthz/ready and `agent wait`'s time-out message: every blocker, one per line (a
 * multi-line reason, such as Envoy's NACK text, is folded onto its line).
 */
export function notReadyText(r: ReadinessResult): string {
  const blockers = r.blockers ?? (r.reason !== undefined ? [{ check: 'envoy', reason: r.reason }] : []);
  return blockers
    .map((b) => {
      const one = b.reason.replace(/\s*[\r\n]+\s*/g, ' ');
      return `not ready: ${b.check}: ${one.length > MAX_BLOCKER_TEXT ? `${one.slice(0, MAX_BLOCKER_TEXT)}...` : one}`;
    })
    .join('\n');
}

/** Envoy's admin port refusing connections: Envoy is not started (or not far enough to serve admin). */
export function adminErrorDetail(msg: string): string {
  return /ECONNREFUSED|ECONNRESET|socket hang up/.test(msg) ? 'Envoy is not started: its admin port does not answer' : "Envoy's admin port does not answer in time";
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

/** The last NACK message Envoy sent for CDS and LDS, when known (from the xDS proxy). */
export interface LastNacks {
  readonly cds?: string | undefined;
  readonly lds?: string | undefined;
}

/** Judges the CDS/LDS update stats (pilot-agent's reasons, word for word); undefined when the first config was accepted. */
export function configReason(s: UpdateStats): string | undefined {
  const cds = s.cdsSuccess > 0;
  const lds = s.ldsSuccess > 0;
  if (cds && lds) return undefined;
  if (!cds && !lds) return `config not received from XDS server (is Istiod running?): ${updateStatsText(s)}`;
  if (s.ldsRejected > 0 || s.cdsRejected > 0) return `config received from XDS server, but was rejected: ${updateStatsText(s)}`;
  return `config not fully received from XDS server: ${updateStatsText(s)}`;
}

/** What our explanation adds to pilot-agent's config reason: the types not yet accepted and their last NACK. */
export function configDetail(s: UpdateStats, nacks: LastNacks = {}): string {
  const missing = [s.cdsSuccess > 0 ? '' : 'CDS', s.ldsSuccess > 0 ? '' : 'LDS'].filter(Boolean);
  const parts = [`${missing.join(' and ')} not yet accepted by Envoy`];
  if (!(s.cdsSuccess > 0) && nacks.cds) parts.push(`last CDS NACK: ${nacks.cds}`);
  if (!(s.ldsSuccess > 0) && nacks.lds) parts.push(`last LDS NACK: ${nacks.lds}`);
  return parts.join('; ');
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
  /** Checks after Envoy's; an unnamed one is named `check-<n>`. */
  readonly checks?: ReadonlyArray<ReadinessCheck | NamedReadinessCheck>;
  /** Called once, on the first time Envoy is LIVE with workers started. */
  readonly onFirstReady?: () => void;
  /** The last CDS/LDS NACK messages, named in the reason while that type is not yet accepted. */
  readonly lastNacks?: () => LastNacks;
}

/** Stateful prober: holds the latches and the shutdown cause. Concurrent checks are safe. */
export class ReadinessProbe {
  private receivedFirstUpdate = false;
  private atLeastOnceReady = false;
  private terminatedCause: string | undefined;
  private readonly checks: NamedReadinessCheck[] = [];

  constructor(private readonly o: ReadinessProbeOptions) {
    for (const c of o.checks ?? []) this.addCheck(c);
  }

  /**
   * Adds a check after construction (e.g. once the gRPC bootstrap path is known, or a component such as the
   * DNS proxy starts). A named check replaces an earlier one of the same name.
   */
  addCheck(check: ReadinessCheck | NamedReadinessCheck): void {
    const named = typeof check === 'function' ? { name: `check-${this.checks.length + 1}`, check } : check;
    const i = this.checks.findIndex((c) => c.name === named.name);
    if (i >= 0) this.checks[i] = named;
    else this.checks.push(named);
  }

  /** The registered check names, in order. */
  get checkNames(): string[] {
    return ['envoy', ...this.checks.map((c) => c.name)];
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

  /** Runs Envoy's check, then every registered check (all of them, so that every blocker is named). */
  async check(): Promise<ReadinessResult> {
    const blockers: ReadinessBlocker[] = [];
    let first: string | undefined;
    const envoy = await this.checkEnvoy();
    if (envoy !== undefined) {
      first = envoy.reason;
      blockers.push({ check: 'envoy', reason: envoy.detail ? `${envoy.reason} (${envoy.detail})` : envoy.reason });
    }
    for (const c of this.checks) {
      let reason: string | undefined;
      try {
        reason = await c.check();
      } catch (e) {
        reason = e instanceof Error ? e.message : String(e);
      }
      if (reason !== undefined) blockers.push({ check: c.name, reason });
    }
    if (!blockers.length) return { ready: true };
    return { ready: false, reason: first ?? blockers[0]!.reason, blockers };
  }

  /** Envoy's own state: pilot-agent's reason, and what we add to explain it. */
  private async checkEnvoy(): Promise<{ reason: string; detail?: string } | undefined> {
    const admin = this.o.admin;
    if (this.o.noEnvoy || !admin) {
      return this.terminatedCause !== undefined ? { reason: `server is terminated: ${this.terminatedCause}` } : undefined;
    }
    if (!this.receivedFirstUpdate) {
      let text: string;
      try {
        text = await admin.statsText(UPDATE_STATS_FILTER, { usedOnly: true, timeoutMs: UPDATE_STATS_TIMEOUT_MS });
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        return { reason: msg, detail: adminErrorDetail(msg) };
      }
      const stats = parseUpdateStats(text);
      const reason = configReason(stats);
      if (reason !== undefined) {
        let nacks: LastNacks = {};
        try {
          nacks = this.o.lastNacks?.() ?? {};
        } catch {
          // the reason without the NACK message
        }
        return { reason, detail: configDetail(stats, nacks) };
      }
      this.receivedFirstUpdate = true;
    }
    if (this.terminatedCause !== undefined) return { reason: `server is terminated: ${this.terminatedCause}` };
    if (this.atLeastOnceReady) return undefined;
    let text: string;
    try {
      text = await admin.statsText(READY_STATS_FILTER, { usedOnly: true, timeoutMs: READY_STATS_TIMEOUT_MS });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      return { reason: `failed to get readiness stats: ${msg}`, detail: adminErrorDetail(msg) };
    }
    const reason = serverStateReason(text);
    if (reason !== undefined) {
      const detail = reason.startsWith('server is not live') ? 'Envoy is not LIVE yet' : reason === 'workers have not yet started' ? "Envoy's workers are not started yet" : undefined;
      return detail ? { reason, detail } : { reason };
    }
    if (!this.atLeastOnceReady) {
      this.atLeastOnceReady = true;
      this.o.onFirstReady?.();
    }
    return undefined;
  }
}
