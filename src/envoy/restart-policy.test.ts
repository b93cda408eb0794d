import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRestart } from './restart-policy.js';

test('restarts with doubling back-off until the budget within the window is spent', () => {
  const budget = { max: 3, windowMs: 60_000 };
  const backoff = { initialMs: 100, maxMs: 250 };
  assert.deepEqual(decideRestart([], 1000, budget, backoff), { action: 'restart', delayMs: 100, crashesInWindow: 1 });
  assert.deepEqual(decideRestart([1000], 2000, budget, backoff), { action: 'restart', delayMs: 200, crashesInWindow: 2 });
  assert.deepEqual(decideRestart([1000, 2000], 3000, budget, backoff), { action: 'restart', delayMs: 250, crashesInWindow: 3 });
  const d = decideRestart([1000, 2000, 3000], 4000, budget, backoff);
  assert.equal(d.action, 'give-up');
  assert.match(d.action === 'give-up' ? d.message : '', /crashed 4 times within 60s, over the restart budget of 3/);
});

test('crashes older than the window do not count', () => {
  const d = decideRestart([0, 1, 2, 3], 100_000, { max: 2, windowMs: 60_000 });
  assert.equal(d.action, 'restart');
});
