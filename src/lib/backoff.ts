// Jittered exponential back-off, as a pure sequence: the delay before retry n. The defaults are
// pilot-agent's (Istio's pkg/backoff over cenkalti/backoff): 500 ms initial, ×1.5, ±50 %, at most 60 s.

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier: number;
  /** 0.5 = each delay is drawn uniformly from [d × 0.5, d × 1.5]. */
  readonly randomization: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 60_000, multiplier: 1.5, randomization: 0.5 };

/** The delay before retry `attempt` (0 = the first retry). */
export function backoffDelayMs(p: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(p.maxMs, p.initialMs * p.multiplier ** Math.max(0, attempt));
  const delta = p.randomization * base;
  return Math.round(Math.min(p.maxMs, base - delta + random() * 2 * delta));
}
