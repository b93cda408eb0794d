// Workload identity metrics. pilot-agent's names first (its OTel exporter adds `istio_agent_` and no
// suffix, so these are exactly what dashboards query), then ours for what operators ask and pilot-agent
// lacks: when the certificate was last refreshed, when it will be next, and why refreshes failed.
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { counterIn, gaugeIn, histogramIn } from '../lib/metrics.js';

export interface IdentityMetrics {
  /** `istio_agent_cert_expiry_seconds{resource_name}`: seconds until the workload certificate expires (negative once expired). */
  readonly certExpirySeconds: Gauge<'resource_name'>;
  /** `istio_agent_num_outgoing_requests{request_type="csr"}`: one per certificate request (not per retry). */
  readonly outgoingRequests: Counter<'request_type'>;
  readonly failedOutgoingRequests: Counter<'request_type'>;
  /** `istio_agent_outgoing_latency{request_type}`: total milliseconds spent in CA calls. */
  readonly outgoingLatency: Counter<'request_type'>;
  readonly outgoingRetries: Counter<'request_type'>;
  readonly fileWatcherFailures: Counter;
  readonly fileSecretFailures: Counter;
  // the SDS server (pilot-agent's pkg/xds metrics, type="sds")
  readonly xdsExpiredNonce: Counter<'type'>;
  readonly xdsRejects: Counter<'type'>;
  readonly xdsSendTime: Histogram;
  readonly xdsWriteTimeouts: Counter;
  readonly xdsInternalErrors: Counter;
  /** `istio_agent_pilot_xds_recv_max`: the largest SDS request received so far, in bytes. */
  readonly xdsRecvMax: Gauge;
  // ours
  /** `istio_agent_cert_last_refresh_timestamp_seconds`: when the current workload certificate was installed. */
  readonly certLastRefresh: Gauge;
  /** `istio_agent_cert_next_rotation_timestamp_seconds`: when it will be renewed. */
  readonly certNextRotation: Gauge;
  /** `istio_agent_cert_refresh_failures_total{reason}`: failed attempts to get a certificate, by what went wrong. */
  readonly certRefreshFailures: Counter<'reason'>;
  /** `istio_agent_sds_rejected_requests_total{reason}`: SDS requests refused (malformed, no node). */
  readonly sdsRejectedRequests: Counter<'reason'>;
}

export function identityMetrics(registry: Registry, expiry: () => Record<string, number> = () => ({})): IdentityMetrics {
  const p = 'istio_agent_';
  return {
    certExpirySeconds: gaugeIn(registry, `${p}cert_expiry_seconds`, 'The time remaining, in seconds, before the certificate chain will expire. A negative value indicates the cert is expired.', ['resource_name'], (g) => {
      g.reset();
      for (const [name, seconds] of Object.entries(expiry())) g.set({ resource_name: name }, seconds);
    }),
    outgoingRequests: counterIn(registry, `${p}num_outgoing_requests`, 'Number of total outgoing requests (e.g. to a token exchange server, CA, etc.)', ['request_type']),
    failedOutgoingRequests: counterIn(registry, `${p}num_failed_outgoing_requests`, 'Number of failed outgoing requests (e.g. to a token exchange server, CA, etc.)', ['request_type']),
    outgoingLatency: counterIn(registry, `${p}outgoing_latency`, 'The latency of outgoing requests (e.g. to a token exchange server, CA, etc.) in milliseconds.', ['request_type']),
    outgoingRetries: counterIn(registry, `${p}num_outgoing_retries`, 'Number of outgoing retry requests (e.g. to a token exchange server, CA, etc.)', ['request_type']),
    fileWatcherFailures: counterIn(registry, `${p}num_file_watcher_failures_total`, 'Number of times file watcher failed to add watchers'),
    fileSecretFailures: counterIn(registry, `${p}num_file_secret_failures_total`, 'Number of times secret generation failed for files'),
    xdsExpiredNonce: counterIn(registry, `${p}pilot_xds_expired_nonce`, 'Total number of XDS requests with an expired nonce.', ['type']),
    xdsRejects: counterIn(registry, `${p}pilot_total_xds_rejects`, 'Total number of XDS responses from pilot rejected by proxy.', ['type']),
    xdsSendTime: histogramIn(registry, `${p}pilot_xds_send_time`, 'Total time in seconds Pilot takes to send generated configuration.', [0.01, 0.1, 1, 3, 5, 10, 20, 30]),
    xdsWriteTimeouts: counterIn(registry, `${p}pilot_xds_write_timeout`, 'Pilot XDS response write timeouts.'),
    xdsInternalErrors: counterIn(registry, `${p}pilot_total_xds_internal_errors`, 'Total number of internal XDS errors in pilot.'),
    xdsRecvMax: gaugeIn(registry, `${p}pilot_xds_recv_max`, 'The maximum size request we have received so far.'),
    certLastRefresh: gaugeIn(registry, `${p}cert_last_refresh_timestamp_seconds`, 'When the current workload certificate was installed (Unix seconds).'),
    certNextRotation: gaugeIn(registry, `${p}cert_next_rotation_timestamp_seconds`, 'When the workload certificate will be renewed (Unix seconds).'),
    certRefreshFailures: counterIn(registry, `${p}cert_refresh_failures_total`, 'Failed attempts to obtain a workload certificate, by reason.', ['reason']),
    sdsRejectedRequests: counterIn(registry, `${p}sds_rejected_requests_total`, 'SDS requests refused by the agent, by reason.', ['reason']),
  };
}
