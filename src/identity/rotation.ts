// When to renew a workload certificate: pilot-agent's rule, as a pure function. The renewal point is
// `expire - ratio × (expire - created)`, with the ratio SECRET_GRACE_PERIOD_RATIO moved by a uniform
// jitter of up to ±SECRET_GRACE_PERIOD_RATIO_JITTER (so a fleet does not renew at once), clamped to [0, 1].
// `created` is when the agent received the certificate (not its NotBefore), as in pilot-agent.

export interface RotationInput {
  readonly createdMs: number;
  readonly expireMs: number;
  readonly graceRatio: number;
  readonly graceRatioJitter: number;
}

/**
 * Milliseconds from `nowMs` until the certificate should be renewed (0 when already due).
 * `random` returns [0, 1) (Math.random by default); two draws give the magnitude and the sign.
 */
export function rotationDelayMs(c: RotationInput, nowMs: number, random: () => number = Math.random): number {
  const magnitude = random() * c.graceRatioJitter;
  const sign = random() < 0.5 ? -1 : 1;
  const ratio = Math.min(1, Math.max(0, c.graceRatio + sign * magnitude));
  const lifetime = c.expireMs - c.createdMs;
  const due = c.expireMs - ratio * lifetime;
  return Math.max(0, due - nowMs);
}
