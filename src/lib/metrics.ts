// The agent's own Prometheus metrics. One registry per agent (never prom-client's global one), exposed only
// through the status server's merged `/stats/prometheus`. Names are exactly pilot-agent's (its OTel exporter
// adds the `istio_agent_` prefix and no `_total` suffix of its own), plus a few of ours for hot restart.
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from './process-metrics.js';

export const AGENT_METRIC_PREFIX = 'istio_agent_';

/** Label values of `istio_agent_scrape_failures_total{type}`. */
export type ScrapeType = 'envoy' | 'application' | 'agent';

export interface AgentMetrics {
  readonly registry: Registry;
  /** `istio_agent_startup_duration_seconds`: process start to the first full Envoy readiness. */
  readonly startupDurationSeconds: Gauge;
  /** `istio_agent_scrapes_total`. */
  readonly scrapesTotal: Counter;
  /** `istio_agent_scrape_failures_total{type}`. */
  readonly scrapeFailuresTotal: Counter<'type'>;
  /** `istio_agent_istiod_connection_failures`. */
  readonly istiodConnectionFailures: Counter;
  /** `istio_agent_istiod_connection_terminations{type="cancelled"|"error"}`. */
  readonly istiodConnectionTerminations: Counter<'type'>;
  /** `istio_agent_envoy_connection_terminations{type}`. */
  readonly envoyConnectionTerminations: Counter<'type'>;
  /** `istio_agent_xds_proxy_requests`. */
  readonly xdsProxyRequests: Counter;
  /** `istio_agent_xds_proxy_responses`. */
  readonly xdsProxyResponses: Counter;
  /** Ours: `istio_agent_xds_stuck_streams_total{reason}` (stuck-stream detection in the xDS proxy). */
  readonly xdsStuckStreams: Counter<'reason'>;
  /** Ours: `istio_agent_startup_phase_seconds{phase}`: when each start-up phase was first reached. */
  readonly startupPhaseSeconds: Gauge<'phase'>;
  /** Ours: `istio_agent_envoy_restarts_total{reason}` (hot restart or crash restart). */
  readonly envoyRestartsTotal: Counter<'reason'>;
  /** Ours: `istio_agent_config_rejections_total{source}` (a bootstrap input change that was rejected). */
  readonly configRejectionsTotal: Counter<'source'>;
}

export interface AgentMetricsOptions {
  /** Register Node process collectors as `istio_agent_process_*` / `istio_agent_nodejs_*` (default true). */
  readonly processMetrics?: boolean;
}

/** A fresh, empty registry for agent metrics. */
export function createAgentRegistry(): Registry {
  return new Registry();
}

/** Creates a registry holding every agent metric and returns typed handles to them. */
export function createAgentMetrics(opts: AgentMetricsOptions = {}): AgentMetrics {
  const registry = createAgentRegistry();
  const p = AGENT_METRIC_PREFIX;
  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> =>
    new Counter<L>({ name: p + name, help, labelNames, registers: [registry] });
  if (opts.processMetrics ?? true) {
    registerProcessMetrics(registry, p);
    processExtras(registry, p);
  }
  return {
    registry,
    startupDurationSeconds: new Gauge({
      name: `${p}startup_duration_seconds`,
      help: 'The time from the process starting to being marked ready.',
      registers: [registry],
    }),
    scrapesTotal: counter('scrapes_total', 'The total number of scrapes.'),
    scrapeFailuresTotal: counter('scrape_failures_total', 'The total number of failed scrapes.', ['type']),
    istiodConnectionFailures: counter('istiod_connection_failures', 'The total number of connection failures to Istiod'),
    istiodConnectionTerminations: counter(
      'istiod_connection_terminations',
      'The total number of connection errors to Istiod',
      ['type'],
    ),
    envoyConnectionTerminations: counter(
      'envoy_connection_terminations',
      'The total number of connection errors from envoy',
      ['type'],
    ),
    xdsProxyRequests: counter('xds_proxy_requests', 'The total number of Xds Proxy Requests'),
    xdsProxyResponses: counter('xds_proxy_responses', 'The total number of Xds Proxy Responses'),
    xdsStuckStreams: counter(
      'xds_stuck_streams_total',
      'The total number of xDS streams ended because istiod did not answer a request it must answer in time, or its keepalive failed.',
      ['reason'],
    ),
    startupPhaseSeconds: new Gauge<'phase'>({
      name: `${p}startup_phase_seconds`,
      help: 'When each start-up phase was first reached, in seconds since the process started.',
      labelNames: ['phase'],
      registers: [registry],
    }),
    envoyRestartsTotal: counter('envoy_restarts_total', 'The total number of Envoy restarts by the agent, by reason.', ['reason']),
    configRejectionsTotal: counter(
      'config_rejections_total',
      'The total number of rejected bootstrap configuration changes, by source.',
      ['source'],
    ),
  };
}

/** Bytes received and sent over every interface of the process's network namespace (/proc/self/net/dev). */
export function parseNetDev(text: string): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (f.length < 9) continue;
    rx += f[0] ?? 0;
    tx += f[8] ?? 0;
  }
  return { rx, tx };
}

/** The soft `Max address space` limit in bytes (/proc/self/limits); unlimited as Go's procfs reports it (2^64-1). */
export function parseAddressSpaceLimit(text: string): number | undefined {
  const m = /^Max address space\s+(\S+)/m.exec(text);
  if (!m) return undefined;
  return m[1] === 'unlimited' ? 2 ** 64 - 1 : Number(m[1]);
}

/**
 * The Go process collector's families prom-client lacks (pilot-agent exports them):
 * `process_network_receive_bytes_total`, `process_network_transmit_bytes_total` (counters) and
 * `process_virtual_memory_max_bytes`. Read at scrape time; left out where /proc is not there.
 */
function processExtras(registry: Registry, p: string): void {
  const read = (path: string): string | undefined => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  };
  const netCounter = (name: string, help: string, pick: (n: { rx: number; tx: number }) => number): void => {
    new Counter({
      name: `${p}${name}`,
      help,
      registers: [registry],
      collect(this: Counter) {
        const text = read('/proc/self/net/dev');
        if (text === undefined) return;
        this.reset();
        this.inc(pick(parseNetDev(text)));
      },
    });
  };
  netCounter('process_network_receive_bytes_total', 'Number of bytes received by the process over the network.', (n) => n.rx);
  netCounter('process_network_transmit_bytes_total', 'Number of bytes sent by the process over the network.', (n) => n.tx);
  new Gauge({
    name: `${p}process_virtual_memory_max_bytes`,
    help: 'Maximum amount of virtual memory available in bytes.',
    registers: [registry],
    collect(this: Gauge) {
      const text = read('/proc/self/limits');
      const v = text === undefined ? undefined : parseAddressSpaceLimit(text);
      if (v !== undefined) this.set(v);
    },
  });
}

/** The counter `name` in `registry`, created on first use (components share the agent's registry). */
export function counterIn<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) {
    if (!(existing instanceof Counter)) throw new Error(`metric ${name} is already registered and is not a counter`);
    return existing as Counter<L>;
  }
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}

/** The gauge `name` in `registry`, created on first use; `collect` (if given) runs at each scrape. */
export function gaugeIn<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = [], collect?: (g: Gauge<L>) => void): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) {
    if (!(existing instanceof Gauge)) throw new Error(`metric ${name} is already registered and is not a gauge`);
    return existing as Gauge<L>;
  }
  return new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    ...(collect ? { collect(this: Gauge<L>) { collect(this); } } : {}),
  });
}

/** The histogram `name` in `registry`, created on first use. */
export function histogramIn(registry: Registry, name: string, help: string, buckets: readonly number[]): Histogram {
  const existing = registry.getSingleMetric(name);
  if (existing) {
    if (!(existing instanceof Histogram)) throw new Error(`metric ${name} is already registered and is not a histogram`);
    return existing as Histogram;
  }
  return new Histogram({ name, help, buckets: [...buckets], registers: [registry] });
}
