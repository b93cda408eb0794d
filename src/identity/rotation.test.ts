// When a workload certificate is renewed: pilot-agent's rotateTime (Istio's TestRotateTimeNoJitter and
// TestRotateTimeWithJitter), with `created` the time the agent received the certificate.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rotationDelayMs, type RotationInput } from './rotation.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const NOW = Date.parse('2026-03-01T12:00:00Z');

/** A random source that returns the given values in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error('random() called more often than expected');
    return values[i++]!;
  };
}

/** Istio's almostEqual: within a second. */
function almostEqual(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= SECOND, `${what}: expected ${expected / MINUTE} min, got ${actual / MINUTE} min`);
}

void describe('rotationDelayMs without jitter (Istio TestRotateTimeNoJitter)', () => {
  const cases: Array<{ name: string; created: number; expire: number; ratio: number; expected: number }> = [
    { name: 'already expired', created: NOW - 2 * SECOND, expire: NOW - SECOND, ratio: 0.5, expected: 0 },
    { name: 'grace period .50', created: NOW, expire: NOW + HOUR, ratio: 0.5, expected: 30 * MINUTE },
    { name: 'grace period .25', created: NOW, expire: NOW + HOUR, ratio: 0.25, expected: 45 * MINUTE },
    { name: 'grace period .75', created: NOW, expire: NOW + HOUR, ratio: 0.75, expected: 15 * MINUTE },
    { name: 'grace period 1', created: NOW, expire: NOW + HOUR, ratio: 1, expected: 0 },
    { name: 'grace period 0', created: NOW, expire: NOW + HOUR, ratio: 0, expected: HOUR },
    { name: 'grace period .25 shifted', created: NOW + 30 * MINUTE, expire: NOW + 90 * MINUTE, ratio: 0.25, expected: 75 * MINUTE },
    { name: 'jitter cannot make grace ratio exceed 1', created: NOW, expire: NOW + HOUR, ratio: 1, expected: 0 },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const input: RotationInput = { createdMs: c.created, expireMs: c.expire, graceRatio: c.ratio, graceRatioJitter: 0 };
      // whatever the random draws, no jitter means no change
      for (const draws of [[0, 0], [0.999, 0.2], [0.5, 0.9]] as const) {
        almostEqual(rotationDelayMs(input, NOW, sequence(...draws)), c.expected, c.name);
      }
      almostEqual(rotationDelayMs(input, NOW), c.expected, `${c.name} (Math.random)`);
    });
  }

  void it('the renewal point is measured from when the agent got the certificate, not from now', () => {
    // received 20 min ago, 1 h lifetime, ratio .5: due 10 min from now
    const input: RotationInput = { createdMs: NOW - 20 * MINUTE, expireMs: NOW + 40 * MINUTE, graceRatio: 0.5, graceRatioJitter: 0 };
    almostEqual(rotationDelayMs(input, NOW), 10 * MINUTE, 'aged certificate');
    // past the renewal point but not expired: due now
    assert.equal(rotationDelayMs(input, NOW + 15 * MINUTE), 0);
  });

  void it('ratios above 1 are capped at 1 (renew now), below 0 at 0 (renew at expiry)', () => {
    const base = { createdMs: NOW, expireMs: NOW + HOUR, graceRatioJitter: 0 };
    assert.equal(rotationDelayMs({ ...base, graceRatio: 1.7 }, NOW), 0);
    almostEqual(rotationDelayMs({ ...base, graceRatio: -0.5 }, NOW), HOUR, 'negative ratio');
  });
});

void describe('rotationDelayMs with jitter (Istio TestRotateTimeWithJitter)', () => {
  const cases = [
    { name: 'jitter ratio between .5 and 1', ratio: 1, jitter: 0.5, min: 0, max: HOUR / 2 },
    { name: 'jitter ratio between 0 and 1', ratio: 0.5, jitter: 0.5, min: 0, max: HOUR },
    { name: 'jitter ratio between 0 and .5', ratio: 0, jitter: 0.5, min: HOUR / 2, max: HOUR },
  ];
  for (const c of cases) {
    void it(`${c.name}: 1000 samples in range, and spread over it`, () => {
      const input: RotationInput = { createdMs: NOW, expireMs: NOW + HOUR, graceRatio: c.ratio, graceRatioJitter: c.jitter };
      const samples: number[] = [];
      for (let i = 0; i < 1000; i++) {
        const got = rotationDelayMs(input, NOW);
        assert.ok(got + SECOND >= c.min && got <= c.max, `sample ${i}: ${got / MINUTE} min not in [${c.min / MINUTE}, ${c.max / MINUTE}] min`);
        samples.push(got);
      }
      // the jitter really moves the renewal point: the samples are not all equal and cover most of the range
      const lo = Math.min(...samples);
      const hi = Math.max(...samples);
      const nominal = HOUR * (1 - c.ratio);
      assert.ok(hi - lo > 0.8 * (c.max - c.min), `spread ${(hi - lo) / MINUTE} min too small`);
      // clamping: a ratio of 1 (0) can only move towards later (earlier) renewal
      if (c.ratio === 1) assert.ok(samples.filter((s) => s === 0).length > 300, 'about half the draws are clamped to "now"');
      if (c.ratio === 0) assert.ok(samples.filter((s) => s === HOUR).length > 300, 'about half the draws are clamped to expiry');
      if (c.ratio === 0.5) {
        assert.ok(samples.some((s) => s < nominal - 10 * MINUTE) && samples.some((s) => s > nominal + 10 * MINUTE), 'both signs occur');
      }
    });
  }

  void it('magnitude uniform in [0, jitter) with a random sign: exact values with chosen draws', () => {
    const input: RotationInput = { createdMs: NOW, expireMs: NOW + HOUR, graceRatio: 0.5, graceRatioJitter: 0.1 };
    // first draw: magnitude 0.5 × 0.1 = 0.05; second: sign
    const a = rotationDelayMs(input, NOW, sequence(0.5, 0.1));
    const b = rotationDelayMs(input, NOW, sequence(0.5, 0.9));
    const [early, late] = [a, b].sort((x, y) => x - y) as [number, number];
    assert.ok(Math.abs(early - 0.45 * HOUR) < 1 && Math.abs(late - 0.55 * HOUR) < 1, `${early / MINUTE}, ${late / MINUTE} min`);
    // zero magnitude: no change whichever the sign
    assert.equal(rotationDelayMs(input, NOW, sequence(0, 0.1)), 30 * MINUTE);
    assert.equal(rotationDelayMs(input, NOW, sequence(0, 0.9)), 30 * MINUTE);
  });

  void it('pilot-agent defaults (ratio .5, jitter .01) on a 24 h certificate: 12 h ± 14.4 min', () => {
    const input: RotationInput = { createdMs: NOW, expireMs: NOW + 24 * HOUR, graceRatio: 0.5, graceRatioJitter: 0.01 };
    let below = 0;
    let above = 0;
    for (let i = 0; i < 1000; i++) {
      const got = rotationDelayMs(input, NOW);
      assert.ok(Math.abs(got - 12 * HOUR) <= 14.4 * MINUTE + 1, `${(got - 12 * HOUR) / MINUTE} min off 12 h`);
      if (got < 12 * HOUR) below++;
      else if (got > 12 * HOUR) above++;
    }
    assert.ok(below > 350 && above > 350, `both directions: ${below} earlier, ${above} later`);
  });
});
