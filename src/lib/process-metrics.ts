// The Node.js process collectors (`istio_agent_process_*`, `istio_agent_nodejs_*`): prom-client's default
// set, but for its event-loop-delay collector, which is replaced here by one that reports the delay.
import type { Registry } from 'prom-client';
import { Gauge } from 'prom-client';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
// prom-client's collectors one by one (what its collectDefaultMetrics() registers, less eventLoopLag)
import gc from 'prom-client/lib/metrics/gc.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processCpuTotal from 'prom-client/lib/metrics/processCpuTotal.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import version from 'prom-client/lib/metrics/version.js';

/**
 * How often the event-loop-delay monitor samples. prom-client's default, 10 ms, wakes an idle agent 100
 * times a second (a steady 1 % of a CPU). A block of the loop shows as the delay of the sample it held
 * back; the interval in which a scrape restarts the histogram is not recorded (as with prom-client).
 */
export const EVENT_LOOP_RESOLUTION_MS = 1000;

/** What one scrape reports of the event loop's delay, in seconds. */
export interface LoopDelay {
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly stddev: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

/** The statistics a `perf_hooks` histogram gives (nanoseconds). */
export interface DelaySamples {
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly stddev: number;
  percentile(p: number): number;
}

/**
 * The event loop's delay from Node.js's histogram. Node.js records, at each run of its timer, the time since
 * the previous run: the resolution plus the delay. Reported as recorded (as prom-client does), an idle agent
 * sampling every second showed a lag of about 1 s, and a scrape with no sample since the last one a minimum
 * of 9.2e9 s and a mean of NaN. Here the resolution is taken off, and no sample reads as no delay.
 */
export function loopDelay(h: DelaySamples, resolutionMs: number): LoopDelay {
  if (h.count === 0) return { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 };
  const r = resolutionMs * 1e6;
  const s = (ns: number): number => (Number.isFinite(ns) ? Math.max(0, ns - r) / 1e9 : 0);
  return {
    min: s(h.min),
    max: s(h.max),
    mean: s(h.mean),
    stddev: Number.isFinite(h.stddev) ? h.stddev / 1e9 : 0,
    p50: s(h.percentile(50)),
    p90: s(h.percentile(90)),
    p99: s(h.percentile(99)),
  };
}

/** Registers the process collectors on `registry`, each name prefixed by `prefix`. */
export function registerProcessMetrics(registry: Registry, prefix: string): void {
  const config = { prefix };
  for (const collector of [
    processCpuTotal,
    processStartTime,
    osMemoryHeap,
    processOpenFileDescriptors,
    processMaxFileDescriptors,
    processResources,
    processHandles,
    processRequests,
    heapSizeAndUsed,
    heapSpacesSizeAndUsed,
    version,
    gc,
  ]) {
    collector(registry, config);
  }
  eventLoop(registry, prefix);
}

/** prom-client's `nodejs_eventloop_lag_*` families, with the delay as `loopDelay` computes it. */
function eventLoop(registry: Registry, prefix: string): void {
  const h = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  h.enable();
  // (aggregator: how prom-client's cluster registry would combine workers' values, kept as prom-client's)
  const gauge = (name: string, help: string, aggregator: 'min' | 'max' | 'average', pick: (d: LoopDelay) => number): Gauge =>
    new Gauge({
      name: `${prefix}nodejs_eventloop_lag_${name}_seconds`,
      help,
      registers: [registry],
      aggregator,
      collect(this: Gauge) {
        this.set(pick(current()));
      },
    });
  // one reading per scrape, shared by the seven families (a scrape collects them within microseconds);
  // the histogram starts anew after it, as prom-client's did
  let reading: LoopDelay | undefined;
  let readAt = -Infinity;
  const current = (): LoopDelay => {
    const now = performance.now();
    if (reading === undefined || now - readAt > 100) {
      reading = loopDelay(h, EVENT_LOOP_RESOLUTION_MS);
      readAt = now;
      h.reset();
    }
    return reading;
  };
  gauge('min', 'The minimum recorded event loop delay.', 'min', (d) => d.min);
  gauge('max', 'The maximum recorded event loop delay.', 'max', (d) => d.max);
  gauge('mean', 'The mean of the recorded event loop delays.', 'average', (d) => d.mean);
  gauge('stddev', 'The standard deviation of the recorded event loop delays.', 'average', (d) => d.stddev);
  gauge('p50', 'The 50th percentile of the recorded event loop delays.', 'average', (d) => d.p50);
  gauge('p90', 'The 90th percentile of the recorded event loop delays.', 'average', (d) => d.p90);
  gauge('p99', 'The 99th percentile of the recorded event loop delays.', 'average', (d) => d.p99);
  // the lag of the loop at the scrape itself: how long a callback queued now waits for its turn
  new Gauge({
    name: `${prefix}nodejs_eventloop_lag_seconds`,
    help: 'Lag of event loop in seconds.',
    registers: [registry],
    aggregator: 'average',
    async collect(this: Gauge) {
      const start = process.hrtime.bigint();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
    },
  });
}
