// The agent's own Prometheus metrics. One registry per agent (never prom-client's global one), exposed only
// through the status server's merged `/stats/prometheus`. Names are exactly pilot-agent's (its OTel exporter
// adds the `istio_agent_` prefix and no `_total` suffix of its own), plus a few of ours for hot restart.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
  // the event-loop-lag monitor samples every 10ms by default: a steady 1% CPU on an idle agent; 1s is plenty
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: p, eventLoopMonitoringPrecision: 1000 });
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
