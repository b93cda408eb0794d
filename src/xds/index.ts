// Public surface of the xDS proxy component.
export { createXdsProxy } from './proxy.js';
export type { AgentTypeHandler, HealthReport, XdsProxy, XdsProxyEvent, XdsProxyOptions, XdsProxyStatus, XdsTypeStatus } from './proxy.js';
export {
  resolveXdsProxySettings,
  xdsServerName,
  DEFAULT_CONFIG_PATH,
  ISTIO_TOKEN_PATH,
  ISTIOD_ROOT_CERT_PATH,
  PROXYLESS_SOCKET_MODE,
  SIDECAR_SOCKET_MODE,
} from './options.js';
export type { UpstreamTls, XdsProxySettings, XdsSettingsInput } from './options.js';
export { xdsProxyMetrics } from './metrics.js';
export type { XdsProxyMetrics } from './metrics.js';
export * from './types.js';
export type { RawAny } from './wire.js';
