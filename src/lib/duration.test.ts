import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatGoDuration, parseGoDuration } from './duration.js';

test('parseGoDuration reads every unit of Go\'s time.ParseDuration, both spellings of micro among them', () => {
  assert.equal(parseGoDuration('1h2m3.5s'), 3_723_500);
  assert.equal(parseGoDuration('250ms'), 250);
  assert.equal(parseGoDuration('-1.5s'), -1500);
  assert.equal(parseGoDuration('2us'), 0.002);
  assert.equal(parseGoDuration('2\u00b5s'), 0.002); // micro sign
  assert.equal(parseGoDuration('2\u03bcs'), 0.002); // Greek small letter mu
  assert.equal(parseGoDuration('3ns'), 3e-6);
  assert.throws(() => parseGoDuration('5'), /missing unit in duration "5"/);
  assert.throws(() => parseGoDuration('5x'), /unknown unit "x" in duration "5x"/);
  assert.throws(() => parseGoDuration(''), /invalid duration ""/);
});

test('formatGoDuration writes what Go\'s time.Duration.String() writes', () => {
  assert.equal(formatGoDuration(0), '0s');
  assert.equal(formatGoDuration(90_000), '1m30s');
  assert.equal(formatGoDuration(500), '500ms');
  assert.equal(formatGoDuration(0.0015), '1.5\u00b5s');
  assert.equal(formatGoDuration(-3_723_500), '-1h2m3.5s');
});
