// The xDS proxy's counters, named exactly as pilot-agent's. The agent passes the handles from
// `createAgentMetrics()` (src/lib/metrics.ts); `xdsProxyMetrics(registry)` finds or creates them in any registry.
import type { Counter, Registry } from 'prom-client';
import { counterIn } from '../lib/metrics.js';

export interface XdsProxyMetrics {
  /** `istio_agent_istiod_connection_failures` */
  readonly istiodConnectionFailures: Counter;
  /** `istio_agent_istiod_connection_terminations{type="cancelled"|"error"}` */
  readonly istiodConnectionTerminations: Counter<'type'>;
  /** `istio_agent_envoy_connection_terminations{type="cancelled"|"error"}` */
  readonly envoyConnectionTerminations: Counter<'type'>;
  /** `istio_agent_xds_proxy_requests` */
  readonly xdsProxyRequests: Counter;
  /** `istio_agent_xds_proxy_responses` */
  readonly xdsProxyResponses: Counter;
  /** Ours: `istio_agent_xds_stuck_streams_total{reason="no-answer"|"keepalive"}`: streams ended because istiod stopped answering. */
  readonly xdsStuckStreams: Counter<'reason'>;
}

export const XDS_STUCK_STREAMS_METRIC = 'istio_agent_xds_stuck_streams_total';
export const XDS_STUCK_STREAMS_HELP = 'The total number of xDS streams ended because istiod did not answer a request it must answer in time, or its keepalive failed.';

const counter = <L extends string = never>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> => counterIn(registry, name, help, labelNames);

export function xdsProxyMetrics(registry: Registry): XdsProxyMetrics {
  return {
    istiodConnectionFailures: counter(registry, 'istio_agent_istiod_connection_failures', 'The total number of connection failures to Istiod', []),
    istiodConnectionTerminations: counter(registry, 'istio_agent_istiod_connection_terminations', 'The total number of connection errors to Istiod', ['type']),
    envoyConnectionTerminations: counter(registry, 'istio_agent_envoy_connection_terminations', 'The total number of connection errors from envoy', ['type']),
    xdsProxyRequests: counter(registry, 'istio_agent_xds_proxy_requests', 'The total number of Xds Proxy Requests', []),
    xdsProxyResponses: counter(registry, 'istio_agent_xds_proxy_responses', 'The total number of Xds Proxy Responses', []),
    xdsStuckStreams: counter(registry, XDS_STUCK_STREAMS_METRIC, XDS_STUCK_STREAMS_HELP, ['reason']),
  };
}
