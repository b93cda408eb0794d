// The DNS proxy's metrics, named exactly as pilot-agent's (no labels). Found or created in the agent's
// registry (src/lib/metrics.ts), so they appear on the status port's /stats/prometheus with the others.
import type { Counter, Histogram, Registry } from 'prom-client';
import { counterIn, histogramIn } from '../lib/metrics.js';

export interface DnsMetrics {
  /** `istio_agent_dns_requests_total`: every query handled. */
  readonly requests: Counter;
  /** `istio_agent_dns_upstream_requests_total`: queries forwarded upstream. */
  readonly upstreamRequests: Counter;
  /** `istio_agent_dns_upstream_failures_total`: forwarded queries no upstream answered (SERVFAIL). */
  readonly upstreamFailures: Counter;
  /** `istio_agent_dns_upstream_request_duration_seconds`: per forwarded query, failures included. */
  readonly upstreamDuration: Histogram;
}

export const UPSTREAM_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.1, 1, 5] as const;

export function dnsMetrics(registry: Registry): DnsMetrics {
  return {
    requests: counterIn(registry, 'istio_agent_dns_requests_total', 'Total number of DNS requests.'),
    upstreamRequests: counterIn(registry, 'istio_agent_dns_upstream_requests_total', 'Total number of DNS requests forwarded to upstream.'),
    upstreamFailures: counterIn(registry, 'istio_agent_dns_upstream_failures_total', 'Total number of DNS failures.'),
    upstreamDuration: histogramIn(registry, 'istio_agent_dns_upstream_request_duration_seconds', 'Total time in seconds Istio takes to get DNS response from upstream.', UPSTREAM_DURATION_BUCKETS),
  };
}
