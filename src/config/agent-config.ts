// The agent's resolved, read-only configuration: what `agent proxy` was asked to do, the effective
// ProxyConfig, the environment pilot-agent reads, and the files it watches. Built by `loadProxyConfig`.
import type { AgentEnv } from './env.js';
import type { IpMode } from './network.js';
import type { AuthenticationPolicy, ProxyConfig } from './proxy-config.js';

/** Positional proxy types pilot-agent accepts (model.IsApplicationNodeType). */
export const PROXY_TYPES = ['sidecar', 'router', 'waypoint', 'ztunnel', 'agentgateway'] as const;
export type ProxyType = (typeof PROXY_TYPES)[number];

/** The ProxyConfig fields the agent acts on, as plain typed values (durations in milliseconds). */
export interface ProxySettings {
  readonly binaryPath: string;
  /** As configured (usually relative, `./etc/istio/proxy`); bootstrap contents use it verbatim. */
  readonly configPath: string;
  readonly drainDurationMs: number;
  readonly terminationDrainDurationMs: number;
  readonly proxyAdminPort: number;
  /** 0 disables the status server (annotation `status.sidecar.istio.io/port: "0"`). */
  readonly statusPort: number;
  /** Envoy worker threads; 0 = not set (Envoy picks one per host CPU). */
  readonly concurrency: number;
  readonly discoveryAddress: string;
  readonly controlPlaneAuthPolicy: AuthenticationPolicy;
  readonly fileFlushIntervalMs: number;
  readonly fileFlushMinSizeKb: number;
  readonly customConfigFile: string;
  readonly proxyBootstrapTemplatePath: string;
  readonly holdApplicationUntilProxyStarts: boolean;
  readonly proxyMetadata: Readonly<Record<string, string>>;
}

/** Absolute paths of every file the agent reads or writes (resolved against the agent's cwd). */
export interface AgentPaths {
  readonly cwd: string;
  readonly podAnnotations: string;
  readonly podLabels: string;
  /** `--meshConfig` (read only when it exists). */
  readonly meshConfig: string;
  /** `<configPath>` resolved. */
  readonly configDir: string;
  /** `<configPath>/envoy-rev.json`. */
  readonly envoyBootstrap: string;
  /** GRPC_XDS_BOOTSTRAP. */
  readonly grpcBootstrap: string;
  /** `<configPath>/XDS`, the xDS proxy's UDS. */
  readonly xdsUds: string;
  /** `./var/run/secrets/istio/root-cert.pem`. */
  readonly istioRootCert: string;
  /** `./var/run/secrets/tokens/istio-token`. */
  readonly istioToken: string;
  /** `./var/run/secrets/workload-spiffe-uds/<WORKLOAD_IDENTITY_SOCKET_FILE>`. */
  readonly workloadSdsSocket: string;
  /** `./var/run/secrets/credential-uds/socket`. */
  readonly credentialSdsSocket: string;
  /** ISTIO_BOOTSTRAP_OVERRIDE, resolved, or '' when unset. */
  readonly bootstrapOverride: string;
}

export interface AgentConfig {
  readonly proxyType: ProxyType;
  /** `<type>~<first IP>~<POD_NAME>.<POD_NAMESPACE>~<domain>`. */
  readonly nodeId: string;
  /** Pod IP first, then the host's addresses (see config/network.ts). */
  readonly nodeIPs: readonly string[];
  readonly ipMode: IpMode;
  /** `--domain`, or `<POD_NAMESPACE>.svc.cluster.local`. */
  readonly dnsDomain: string;

  /** The effective ProxyConfig in canonical protobuf-JSON form (what goes into node metadata). */
  readonly proxyConfig: Readonly<ProxyConfig>;
  /** The same, as typed values. */
  readonly proxy: ProxySettings;

  /** `--proxyLogLevel` and `--proxyComponentLogLevel` as given. */
  readonly proxyLogLevel: string;
  readonly proxyComponentLogLevel: string;
  /** Envoy's `-l` level ('' = omit) and `--component-log-level` ('' = omit), split as pilot-agent does. */
  readonly envoyLogLevel: string;
  readonly envoyComponentLogLevel: string;
  readonly logAsJson: boolean;
  readonly outlierLogPath: string;
  readonly stsPort: number;
  readonly tokenManagerPlugin: string;
  readonly templateFile: string;
  readonly enableProfiling: boolean;

  readonly env: AgentEnv;
  /** The whole process environment (pilot-agent passes it to Envoy unchanged). */
  readonly processEnv: Readonly<Record<string, string | undefined>>;
  readonly podAnnotations: Readonly<Record<string, string>>;
  readonly podLabels: Readonly<Record<string, string>>;
  /** True when the labels / annotations files exist (absent files are not an error). */
  readonly podLabelsFileExists: boolean;
  readonly podAnnotationsFileExists: boolean;
  readonly paths: AgentPaths;

  // our extensions
  readonly bootstrapOnly: boolean;
  readonly disableHotRestart: boolean;
  readonly restartBudget: number;
  readonly restartBudgetWindowMs: number;
  /** Flags we did not recognise (accepted with a warning, as pilot-agent ignores them). */
  readonly unknownFlags: readonly string[];
}
