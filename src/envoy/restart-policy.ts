// Pure crash-restart policy: restart in place with exponential back-off, unless the crash budget
// (at most `max` crashes within `windowMs`) is spent.

export interface RestartBudget {
  readonly max: number;
  readonly windowMs: number;
}
export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}
export type RestartDecision =
  | { readonly action: 'restart'; readonly delayMs: number; readonly crashesInWindow: number }
  | { readonly action: 'give-up'; readonly crashesInWindow: number; readonly message: string };

export const DEFAULT_BACKOFF: Backoff = { initialMs: 200, maxMs: 10_000 };

/** `crashTimes` holds earlier crash times (ms); `now` is the time of the crash being decided. */
export function decideRestart(crashTimes: readonly number[], now: number, budget: RestartBudget, backoff: Backoff = DEFAULT_BACKOFF): RestartDecision {
  const recent = crashTimes.filter((t) => now - t < budget.windowMs).length + 1;
  if (recent > budget.max) {
    return {
      action: 'give-up',
      crashesInWindow: recent,
      message: `Envoy crashed ${recent} times within ${Math.round(budget.windowMs / 1000)}s, over the restart budget of ${budget.max} (--restart-budget, --restart-budget-window); giving up`,
    };
  }
  const delayMs = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (recent - 1));
  return { action: 'restart', delayMs, crashesInWindow: recent };
}
