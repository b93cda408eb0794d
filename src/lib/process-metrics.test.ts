import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { EVENT_LOOP_RESOLUTION_MS, loopDelay, registerProcessMetrics, type DelaySamples } from './process-metrics.js';

/** A histogram as perf_hooks gives it, from samples in nanoseconds. */
function samples(ns: readonly number[]): DelaySamples {
  const sorted = [...ns].sort((a, b) => a - b);
  const mean = ns.length ? ns.reduce((a, b) => a + b, 0) / ns.length : NaN;
  return {
    count: ns.length,
    min: ns.length ? sorted[0]! : 9223372036854776000,
    max: ns.length ? sorted.at(-1)! : 0,
    mean,
    stddev: ns.length ? Math.sqrt(ns.reduce((a, b) => a + (b - mean) ** 2, 0) / ns.length) : NaN,
    percentile: (p) => (ns.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0),
  };
}

test('loopDelay reports the delay beyond the resolution, in seconds', () => {
  const ms = 1e6;
  // each sample is the time between two runs of the monitor's timer: 1 s, plus what held the loop
  const d = loopDelay(samples([1000 * ms, 1002 * ms, 1250 * ms, 1000.5 * ms]), 1000);
  assert.equal(d.min, 0);
  assert.equal(d.max, 0.25);
  assert.ok(Math.abs(d.mean - 0.063125) < 1e-9, String(d.mean));
  assert.equal(d.p50, 0.0005);
  assert.equal(d.p99, 0.25);
  assert.ok(d.stddev > 0.1 && d.stddev < 0.11, String(d.stddev));
});

test('loopDelay: no sample since the last scrape reads as no delay (not 9.2e9 s and NaN)', () => {
  assert.deepEqual(loopDelay(samples([]), 1000), { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 });
  // a timer that ran early (clock granularity) is no negative delay
  assert.equal(loopDelay(samples([999.9 * 1e6]), 1000).min, 0);
});

test('registerProcessMetrics registers the families of prom-client\'s defaults, and its event loop figures are finite', async () => {
  const ours = new Registry();
  registerProcessMetrics(ours, 'istio_agent_');
  const theirs = new Registry();
  collectDefaultMetrics({ register: theirs, prefix: 'istio_agent_', eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
  // name, type, help and how a cluster registry would aggregate them: as prom-client's own
  const families = async (r: Registry): Promise<string[]> =>
    (await r.getMetricsAsJSON()).map((m) => `${m.name} ${m.type} ${m.aggregator} ${m.help}`).sort();
  assert.deepEqual(await families(ours), await families(theirs));
  // scraped before the monitor's first sample (it samples once a second)
  const text = await ours.metrics();
  const value = (name: string): number => Number(new RegExp(`^istio_agent_nodejs_eventloop_lag_${name} (\\S+)$`, 'm').exec(text)?.[1]);
  for (const name of ['min_seconds', 'max_seconds', 'mean_seconds', 'stddev_seconds', 'p50_seconds', 'p90_seconds', 'p99_seconds']) {
    assert.equal(value(name), 0, name);
  }
  const lag = value('seconds');
  assert.ok(Number.isFinite(lag) && lag >= 0, `lag ${lag}`);
  assert.match(text, /^istio_agent_process_resident_memory_bytes \d+$/m);
});
