// What the agent did, for operators: the start-up phases (each recorded once, as seconds since the process
// started; logged once at ready and exported as `istio_agent_startup_phase_seconds{phase}`), and a bounded
// ring of recent events (restarts, pushes, ACK/NACKs, rejections, rotations) for the status page.

/** The start-up phases, in the order they normally happen. */
export const STARTUP_PHASES = [
  'envoy_spawned',
  'status_server_up',
  'xds_connected',
  'first_cds_ack',
  'first_lds_ack',
  'certificate_served',
  'ready',
] as const;
export type StartupPhase = (typeof STARTUP_PHASES)[number];

export class StartupPhases {
  private readonly at = new Map<StartupPhase, number>();

  constructor(
    private readonly processStartMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records `phase` the first time only (later calls are ignored); `atMs` defaults to now. */
  mark(phase: StartupPhase, atMs?: number): void {
    if (this.at.has(phase)) return;
    this.at.set(phase, Math.max(0, (atMs ?? this.now()) - this.processStartMs));
  }

  has(phase: StartupPhase): boolean {
    return this.at.has(phase);
  }

  /** Milliseconds since the process started, per recorded phase, in phase order. */
  snapshot(): Partial<Record<StartupPhase, number>> {
    const out: Partial<Record<StartupPhase, number>> = {};
    for (const p of STARTUP_PHASES) {
      const v = this.at.get(p);
      if (v !== undefined) out[p] = v;
    }
    return out;
  }

  /** One line, in time order: `envoy_spawned=12ms status_server_up=30ms ...` (phases not reached are left out). */
  text(): string {
    return Object.entries(this.snapshot())
      .sort(([, a], [, b]) => a - b)
      .map(([k, v]) => `${k}=${Math.round(v)}ms`)
      .join(' ');
  }
}

export interface AgentEvent {
  /** ISO time. */
  readonly at: string;
  /** e.g. `restart`, `push`, `ack`, `nack`, `rejection`, `rotation`, `stuck-stream`, `ready`. */
  readonly kind: string;
  readonly message: string;
}

/** The most recent events, oldest first; at most `capacity` kept (a busy control plane must not grow memory). */
export class EventLog {
  private readonly ring: AgentEvent[] = [];
  private dropped = 0;

  constructor(
    readonly capacity = 200,
    private readonly now: () => number = Date.now,
  ) {}

  add(kind: string, message: string): void {
    // messages can come from peers (NACK texts): cap their size too
    const text = message.length > 1024 ? `${message.slice(0, 1024)}...` : message;
    this.ring.push({ at: new Date(this.now()).toISOString(), kind, message: text });
    if (this.ring.length > this.capacity) {
      this.ring.shift();
      this.dropped++;
    }
  }

  list(): { readonly events: readonly AgentEvent[]; readonly dropped: number } {
    return { events: [...this.ring], dropped: this.dropped };
  }
}
