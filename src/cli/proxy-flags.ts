// The `agent proxy` flag table: every flag `pilot-agent proxy` (Istio 1.30) accepts, with the same
// names and defaults (pilot-agent/app/cmd.go + the global logging flags), then our extensions.
// pilot-agent binds no environment variables to these flags.
import type { ProxyFlagValues } from '../config/load.js';
import type { FlagSpec, ParsedFlags } from './flags.js';
import { LOG_FLAGS } from './global-flags.js';

export const PILOT_AGENT_PROXY_FLAGS: readonly FlagSpec[] = [
  { name: 'domain', type: 'string', default: '', help: 'DNS domain suffix. If not provided uses ${POD_NAMESPACE}.svc.cluster.local' },
  {
    name: 'meshConfig',
    type: 'string',
    default: './etc/istio/config/mesh',
    help: 'File name for Istio mesh configuration. If not specified, a default mesh will be used. This may be overridden by PROXY_CONFIG environment variable or proxy.istio.io/config annotation.',
  },
  { name: 'stsPort', type: 'int', default: 0, help: 'HTTP Port on which to serve Security Token Service (STS). If zero, STS service will not be provided.' },
  { name: 'tokenManagerPlugin', type: 'string', default: '', help: 'Token provider specific plugin name.' },
  { name: 'serviceCluster', type: 'string', default: 'istio-proxy', help: 'Service cluster' },
  {
    name: 'proxyLogLevel',
    type: 'string',
    default: 'warning',
    help: "The log level used to start the Envoy proxy (choose from {trace, debug, info, warning, error, critical, off}).Level may also include one or more scopes, such as 'info,misc:error,upstream:debug'",
  },
  { name: 'concurrency', type: 'int', default: 0, help: 'number of worker threads to run' },
  { name: 'proxyComponentLogLevel', type: 'string', default: '', help: 'The component log level used to start the Envoy proxy. Deprecated, use proxyLogLevel instead' },
  { name: 'templateFile', type: 'string', default: '', help: 'Go template bootstrap config' },
  { name: 'outlierLogPath', type: 'string', default: '', help: 'The log path for outlier detection' },
  { name: 'profiling', type: 'bool', default: true, help: 'Enable profiling via web interface host:port/debug/pprof/.' },
  { name: 'help', short: 'h', type: 'bool', default: false, help: 'help for proxy' },
];

/** Flags that pilot-agent does not have. */
export const AGENT_PROXY_EXTENSION_FLAGS: readonly FlagSpec[] = [
  { name: 'bootstrap-only', type: 'bool', default: false, help: 'Write the Envoy bootstrap (<configPath>/envoy-rev.json) and grpc-bootstrap.json, then exit 0 without starting anything' },
  { name: 'disable-hot-restart', type: 'bool', default: false, help: "pilot-agent's exact behaviour: one Envoy per agent, the agent exits when Envoy exits" },
  { name: 'restart-budget', type: 'int', default: 5, help: 'Envoy crash restarts allowed within --restart-budget-window before the agent gives up and exits non-zero' },
  { name: 'restart-budget-window', type: 'duration', default: 600_000, help: 'Window for --restart-budget' },
];

export const PROXY_FLAGS: readonly FlagSpec[] = [...PILOT_AGENT_PROXY_FLAGS, ...AGENT_PROXY_EXTENSION_FLAGS, ...LOG_FLAGS];

/** The flag values config reads, from flags parsed with PROXY_FLAGS. */
export function proxyFlagValues(p: ParsedFlags): ProxyFlagValues {
  return {
    domain: p.values.get('domain') as string,
    meshConfig: p.values.get('meshConfig') as string,
    stsPort: p.values.get('stsPort') as number,
    tokenManagerPlugin: p.values.get('tokenManagerPlugin') as string,
    serviceCluster: p.values.get('serviceCluster') as string,
    proxyLogLevel: p.values.get('proxyLogLevel') as string,
    proxyComponentLogLevel: p.values.get('proxyComponentLogLevel') as string,
    concurrency: p.values.get('concurrency') as number,
    templateFile: p.values.get('templateFile') as string,
    outlierLogPath: p.values.get('outlierLogPath') as string,
    profiling: p.values.get('profiling') as boolean,
    logAsJson: p.values.get('log_as_json') as boolean,
    bootstrapOnly: p.values.get('bootstrap-only') as boolean,
    disableHotRestart: p.values.get('disable-hot-restart') as boolean,
    restartBudget: p.values.get('restart-budget') as number,
    restartBudgetWindowMs: p.values.get('restart-budget-window') as number,
  };
}
