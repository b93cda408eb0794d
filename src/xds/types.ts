// xDS type URLs the proxy cares about, and which of them may reach Envoy.

export const TYPE_PREFIX = 'type.googleapis.com/';
const ENVOY_TYPE_PREFIX = `${TYPE_PREFIX}envoy.`;

export const LISTENER_TYPE = `${TYPE_PREFIX}envoy.config.listener.v3.Listener`;
export const CLUSTER_TYPE = `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`;
export const ROUTE_TYPE = `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`;
export const ENDPOINT_TYPE = `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`;
export const SECRET_TYPE = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`;
export const EXTENSION_CONFIG_TYPE = `${TYPE_PREFIX}envoy.config.core.v3.TypedExtensionConfig`;
/** NDS: the DNS name table, consumed by the agent's DNS proxy. */
export const NAME_TABLE_TYPE = `${TYPE_PREFIX}istio.networking.nds.v1.NameTable`;
/** PCDS: dynamic ProxyConfig (trust bundle), consumed by the agent. */
export const PROXY_CONFIG_TYPE = `${TYPE_PREFIX}istio.mesh.v1alpha1.ProxyConfig`;
export const HEALTH_INFO_TYPE = `${TYPE_PREFIX}istio.v1.HealthInformation`;
export const WORKLOAD_TYPE = `${TYPE_PREFIX}istio.workload.Workload`;
export const ADDRESS_TYPE = `${TYPE_PREFIX}istio.workload.Address`;

/** Only Envoy's own types and istio.workload.Workload are forwarded to Envoy (pilot-agent's rule). */
export function isForwardedToEnvoy(typeUrl: string): boolean {
  return typeUrl.startsWith(ENVOY_TYPE_PREFIX) || typeUrl === WORKLOAD_TYPE;
}

/** Short names for logs, as istiod/pilot-agent print them. */
export function shortType(typeUrl: string): string {
  switch (typeUrl) {
    case CLUSTER_TYPE:
      return 'CDS';
    case LISTENER_TYPE:
      return 'LDS';
    case ROUTE_TYPE:
      return 'RDS';
    case ENDPOINT_TYPE:
      return 'EDS';
    case SECRET_TYPE:
      return 'SDS';
    case NAME_TABLE_TYPE:
      return 'NDS';
    case PROXY_CONFIG_TYPE:
      return 'PCDS';
    case EXTENSION_CONFIG_TYPE:
      return 'ECDS';
    case ADDRESS_TYPE:
    case WORKLOAD_TYPE:
      return 'WDS';
    default:
      return typeUrl;
  }
}

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const SOTW_METHOD = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const DELTA_METHOD = `/${ADS_SERVICE}/DeltaAggregatedResources`;
