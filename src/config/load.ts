// `agent proxy` start-up configuration, from what the CLI parsed (flag values, proxy type) and the
// process (environment, cwd): environment -> pod files -> proxy IPs -> ProxyConfig layers (defaults,
// --meshConfig file, PROXY_CONFIG, annotation) -> post-processing -> validation. Every problem found on
// the way is collected and returned, so that the caller reports them in one ConfigError together with
// its own (the flags before, the bootstrap's checks of the result after).
import { createRequire } from 'node:module';
import { pathExistsSync } from '../lib/files.js';
import { availableParallelism, networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { IssueList, type ConfigIssue } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { PROXY_TYPES, type AgentConfig, type AgentPaths, type ProxySettings, type ProxyType } from './agent-config.js';
import { parseDownwardApi } from './downward-api.js';
import { parseAgentEnv, type AgentEnv } from './env.js';
import { discoverProxyIps, ipMode, type Interfaces } from './network.js';
import { applyProxyConfigLayer, defaultProxyConfig, durationMs, proxyConfigToJson, type ProxyConfig } from './proxy-config.js';
import { splitHostPort, validateProxyConfig } from './validate.js';
import { parseYamlOrJson } from './yaml.js';
import { toYaml } from './yaml-emit.js';
import { clip, InputTooLargeError, MAX_FILE_BYTES, readTextFileLimitedSync, valueSizeProblem } from './limits.js';

export const POD_ANNOTATIONS_PATH = './etc/istio/pod/annotations';
export const POD_LABELS_PATH = './etc/istio/pod/labels';
export const ANNOTATION_PROXY_CONFIG = 'proxy.istio.io/config';
export const ANNOTATION_DISCOVERY_ADDRESS = 'sidecar.istio.io/discoveryAddress';
export const ANNOTATION_STATUS_PORT = 'status.sidecar.istio.io/port';
export const ANNOTATION_EXCLUDE_INTERFACES = 'traffic.sidecar.istio.io/excludeInterfaces';

/** Seams for tests: the host facts the loader would otherwise read from the OS. */
export interface LoadOptions {
  readonly interfaces?: Interfaces;
  readonly hostCpus?: number;
  /** Resolves a host name to IP addresses (statsdUdpAddress); default: the system resolver. */
  readonly lookup?: (host: string) => Promise<string[]>;
}

/** The `agent proxy` flag values config reads (every one set: the flag's default when not given). */
export interface ProxyFlagValues {
  readonly domain: string;
  readonly meshConfig: string;
  readonly stsPort: number;
  readonly tokenManagerPlugin: string;
  readonly serviceCluster: string;
  readonly proxyLogLevel: string;
  readonly proxyComponentLogLevel: string;
  readonly concurrency: number;
  readonly templateFile: string;
  readonly outlierLogPath: string;
  readonly profiling: boolean;
  readonly logAsJson: boolean;
  readonly bootstrapOnly: boolean;
  readonly disableHotRestart: boolean;
  readonly restartBudget: number;
  readonly restartBudgetWindowMs: number;
}

/** What the CLI parsed from `agent proxy`'s command line, and the process facts config reads. */
export interface ProxyCommandInput {
  /** The positional proxy type as given (`sidecar` when there is none); checked here. */
  readonly proxyType: string;
  readonly flags: ProxyFlagValues;
  /** Flags the command line had that `agent proxy` does not know (ignored, as pilot-agent does). */
  readonly unknownFlags: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly log: Logger;
}

/** The outcome of loading: config's problems and, for the checks made on top, the effective ProxyConfig. */
export interface LoadedProxyConfig {
  /** Every problem config found, in the order found; none when the configuration is usable. */
  readonly issues: readonly ConfigIssue[];
  /** The effective ProxyConfig (also when there are problems). */
  readonly proxyConfig: ProxyConfig;
  /**
   * Builds the agent's configuration (frozen); throws the ConfigError when config found problems. The
   * caller builds it once its own checks of the inputs found none either.
   */
  agentConfig(): AgentConfig;
}

interface PodFile {
  readonly values: Record<string, string>;
  readonly exists: boolean;
}

async function readPodFile(path: string, label: string, issues: IssueList): Promise<PodFile> {
  let text: string;
  try {
    text = readTextFileLimitedSync(path, MAX_FILE_BYTES);
  } catch (e) {
    if (e instanceof InputTooLargeError) {
      issues.add(`file ${label}`, `${e.message} for a downward-API file`);
      return { values: {}, exists: true };
    }
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return { values: {}, exists: false };
    issues.add(`file ${label}`, `cannot read: ${err.message}`);
    return { values: {}, exists: false };
  }
  try {
    return { values: parseDownwardApi(text), exists: true };
  } catch (e) {
    issues.add(`file ${label}`, (e as Error).message);
    return { values: {}, exists: true };
  }
}

/** Pod annotations/labels files (downward API). Missing files give empty maps. */
export async function readPodInfo(cwd: string, issues: IssueList): Promise<{ annotations: PodFile; labels: PodFile }> {
  return {
    annotations: await readPodFile(resolve(cwd, POD_ANNOTATIONS_PATH), POD_ANNOTATIONS_PATH, issues),
    labels: await readPodFile(resolve(cwd, POD_LABELS_PATH), POD_LABELS_PATH, issues),
  };
}

/** pilot-agent's splitComponentLog: bare entries set `-l`, `comp:level` entries the component levels. */
export function splitEnvoyLogLevel(level: string, componentLevel: string, log?: Logger): { level: string; components: string } {
  let global = '';
  const comps: string[] = [];
  for (const item of level.split(',')) {
    const parts = item.split(':');
    if (parts.length === 1) global = parts[0]!;
    else if (parts.length === 2) comps.push(item);
    else log?.warn(`dropping invalid log level: ${item}`);
  }
  return { level: global, components: comps.length ? comps.join(',') : componentLevel };
}


interface LayerResult {
  readonly pc: ProxyConfig;
}

/** One ProxyConfig layer from the environment or the annotation (`from`: pilot-agent's log wording). */
async function applyLayer(pc: ProxyConfig, text: string, source: string, from: 'env' | 'annotation', issues: IssueList, log: Logger): Promise<LayerResult> {
  const tooBig = valueSizeProblem(text);
  if (tooBig) {
    issues.add(source, tooBig);
    return { pc };
  }
  log.info(`Apply proxy config from ${from} ${text}`);
  let parsed: unknown;
  try {
    parsed = await parseYamlOrJson(text);
  } catch (e) {
    issues.add(source, (e as Error).message);
    return { pc };
  }
  const r = applyProxyConfigLayer(pc, parsed);
  for (const e of r.errors) issues.add(source, e);
  if (r.unknown.length) log.warn(`ignoring unknown ProxyConfig fields in ${source}: ${r.unknown.join(', ')}`);
  return { pc: r.value };
}

/** Resolves statsdUdpAddress to `ip:port` as pilot-agent does (first IPv4, else the last address). */
async function resolveStatsd(addr: string, lookup: (host: string) => Promise<string[]>, log: Logger): Promise<string> {
  let host: string;
  let port: string;
  try {
    [host, port] = splitHostPort(addr);
  } catch (e) {
    log.warn(`resolve StatsdUdpAddress failed: ${(e as Error).message}`);
    return '';
  }
  if (!/^\d+$/.test(port) || Number(port) > 65535) return addr; // left for validation to report
  log.info(`Attempting to lookup address: ${host}`);
  let addrs: string[];
  try {
    addrs = await Promise.race([
      lookup(host),
      new Promise<string[]>((_r, rej) => setTimeout(() => rej(new Error('lookup timed out after 15s')), 15_000).unref()),
    ]);
  } catch (e) {
    log.warn(`resolve StatsdUdpAddress failed: lookup failed for IP address: ${(e as Error).message}`);
    return '';
  }
  log.info(`Finished lookup of address: ${host}`);
  if (addrs.length === 0) {
    log.warn('resolve StatsdUdpAddress failed: lookup failed for IP address: no addresses');
    return '';
  }
  const unmap = (a: string): string => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a);
  const v4 = addrs.map(unmap).find((a) => !a.includes(':'));
  const pick = v4 ?? unmap(addrs[addrs.length - 1]!);
  return pick.includes(':') ? `[${pick}]:${Number(port)}` : `${pick}:${Number(port)}`;
}

// node:dns is loaded only when a statsd address is configured, not on every start-up
const defaultLookup = async (host: string): Promise<string[]> => {
  const dns = createRequire(import.meta.url)('node:dns/promises') as typeof import('node:dns/promises');
  return (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);
};


/**
 * Loads `agent proxy`'s configuration from what the CLI parsed: reads the pod files and the mesh config
 * file, resolves the statsd address, applies and validates the ProxyConfig layers. Problems are
 * returned, not thrown.
 */
export async function loadProxyConfig(input: ProxyCommandInput, opts: LoadOptions = {}): Promise<LoadedProxyConfig> {
  const issues = new IssueList();
  const { flags, log } = input;

  const typeArg = input.proxyType;
  if (!(PROXY_TYPES as readonly string[]).includes(typeArg)) issues.add('argument proxy type', `invalid proxy Type: ${typeArg}`);
  const proxyType = typeArg as ProxyType;

  const env = parseAgentEnv(input.env, issues);
  if (['aws', 'azure', 'gcp'].includes(env.cloudPlatform)) {
    log.warn(`CLOUD_PLATFORM=${env.cloudPlatform}: platform metadata and locality are not read from the cloud metadata server; the platform is treated as unknown`);
  } else if (env.cloudPlatform !== 'none') {
    log.debug('no CLOUD_PLATFORM: cloud metadata servers are not probed; the platform is treated as unknown');
  }
  const cwd = input.cwd;
  const pod = await readPodInfo(cwd, issues);
  const annotations = pod.annotations.values;

  // proxy IPs, node id, DNS domain
  const exclude = annotations[ANNOTATION_EXCLUDE_INTERFACES];
  const ifaces = opts.interfaces ?? networkInterfaces();
  const nodeIPs = discoverProxyIps(env.instanceIp, ifaces, exclude ? exclude.split(',') : []);
  if (exclude) {
    for (const name of exclude.split(',')) if (!ifaces[name]) log.warn(`Unable to get interface ${name}: no such network interface`);
  }
  const mode = ipMode(nodeIPs);
  const podId = `${env.podName}.${env.podNamespace}`;
  const dnsDomain = flags.domain === '' ? `${env.podNamespace}.svc.cluster.local` : flags.domain;
  const nodeId = [proxyType, nodeIPs[0] ?? '', podId, dnsDomain].join('~');
  log.info('Proxy role', { ips: `[${nodeIPs.join(' ')}]`, type: proxyType, id: podId, domain: dnsDomain });

  // ProxyConfig layers
  let pc = defaultProxyConfig();
  const meshFlag = flags.meshConfig;
  const meshPath = resolve(cwd, meshFlag);
  if (pathExistsSync(meshPath)) {
    let text = '';
    try {
      text = readTextFileLimitedSync(meshPath, MAX_FILE_BYTES);
    } catch (e) {
      issues.add(`file ${meshFlag}`, `failed to read mesh config file: ${(e as Error).message}`);
    }
    if (text !== '') {
      log.info(`Apply mesh config from file ${text}`);
      let mesh: unknown;
      try {
        mesh = await parseYamlOrJson(text);
      } catch (e) {
        issues.add(`file ${meshFlag}`, (e as Error).message);
      }
      if (mesh !== undefined && mesh !== null && (typeof mesh !== 'object' || Array.isArray(mesh))) {
        issues.add(`file ${meshFlag}`, 'mesh config must be a YAML mapping');
      } else if (mesh && (mesh as Record<string, unknown>).defaultConfig != null) {
        const r = applyProxyConfigLayer(pc, (mesh as Record<string, unknown>).defaultConfig);
        for (const e of r.errors) issues.add(`file ${meshFlag} (defaultConfig)`, e);
        if (r.unknown.length) log.warn(`ignoring unknown ProxyConfig fields in file ${meshFlag} (defaultConfig): ${r.unknown.join(', ')}`);
        pc = r.value;
      }
    }
  }
  if (env.proxyConfigEnv !== '') pc = (await applyLayer(pc, env.proxyConfigEnv, 'env PROXY_CONFIG', 'env', issues, log)).pc;
  const annoPc = annotations[ANNOTATION_PROXY_CONFIG];
  if (annoPc) pc = (await applyLayer(pc, annoPc, `annotation ${ANNOTATION_PROXY_CONFIG} (${POD_ANNOTATIONS_PATH})`, 'annotation', issues, log)).pc;

  // post-processing (pilot-agent config.ConstructProxyConfig)
  if (pc.concurrency === undefined && env.cpuLimit !== 0) {
    log.info(`cpu limit detected as ${env.cpuLimit}, setting concurrency`);
    pc.concurrency = env.cpuLimit;
  }
  const concurrencyFlag = flags.concurrency;
  if (concurrencyFlag < 0 || concurrencyFlag > 2 ** 31 - 1) issues.add('flag --concurrency', `${concurrencyFlag} is out of range`);
  else if (concurrencyFlag !== 0) {
    log.warn(`legacy --concurrency=${concurrencyFlag} flag detected; prefer to use ProxyConfig`);
    pc.concurrency = concurrencyFlag;
  }
  const hostCpus = opts.hostCpus ?? availableParallelism();
  if (!pc.concurrency && env.cpuLimit < hostCpus) {
    log.warn(
      `concurrency is set to 0, which will use a thread per CPU on the host. However, CPU limit is set lower. This is not recommended and may lead to performance issues. CPU count: ${hostCpus}, CPU Limit: ${env.cpuLimit}.`,
    );
  }
  if (pc.serviceCluster === '') pc.serviceCluster = flags.serviceCluster;
  if (pc.statsdUdpAddress) {
    const resolved = await resolveStatsd(pc.statsdUdpAddress, opts.lookup ?? defaultLookup, log);
    if (resolved === '') delete pc.statsdUdpAddress;
    else pc.statsdUdpAddress = resolved;
  }
  const v = validateProxyConfig(pc);
  for (const e of v.errors) issues.add('effective ProxyConfig', e);
  for (const w of v.warnings) log.warn(w);
  // annotation overrides, applied after validation as pilot-agent does
  const discAnno = annotations[ANNOTATION_DISCOVERY_ADDRESS];
  if (discAnno !== undefined) pc.discoveryAddress = discAnno;
  const statusAnno = annotations[ANNOTATION_STATUS_PORT];
  if (statusAnno !== undefined) {
    if (!/^[+-]?\d+$/.test(statusAnno) || Number(statusAnno) < 0 || Number(statusAnno) > 65535) {
      issues.add(`annotation ${ANNOTATION_STATUS_PORT} (${POD_ANNOTATIONS_PATH})`, `invalid status port "${clip(statusAnno)}" (want 0..65535; 0 disables the status server)`);
    } else if (Number(statusAnno) === 0) delete pc.statusPort;
    else pc.statusPort = Number(statusAnno);
  }
  const templateFile = flags.templateFile;
  if (templateFile !== '' && !pc.customConfigFile) pc.proxyBootstrapTemplatePath = templateFile;

  const stsPort = flags.stsPort;
  if (stsPort < 0 || stsPort > 65535) issues.add('flag --stsPort', `port ${stsPort} must be in the range 0..65535`);
  const budget = flags.restartBudget;
  if (budget < 0) issues.add('flag --restart-budget', `must not be negative (got ${budget})`);
  const window = flags.restartBudgetWindowMs;
  if (window <= 0) issues.add('flag --restart-budget-window', 'must be a positive duration');

  log.info(`Effective config: ${toYaml(proxyConfigToJson(pc))}`);

  const agentConfig = (): AgentConfig => {
    issues.throwIfAny();
    const { proxyLogLevel, proxyComponentLogLevel } = flags;
    const split = splitEnvoyLogLevel(proxyLogLevel, proxyComponentLogLevel, log);
    const settings = proxySettings(pc);
    const config: AgentConfig = {
      proxyType,
      nodeId,
      nodeIPs,
      ipMode: mode,
      dnsDomain,
      proxyConfig: pc,
      proxy: settings,
      proxyLogLevel,
      proxyComponentLogLevel,
      envoyLogLevel: split.level,
      envoyComponentLogLevel: split.components,
      logAsJson: flags.logAsJson,
      outlierLogPath: flags.outlierLogPath,
      stsPort,
      tokenManagerPlugin: flags.tokenManagerPlugin,
      templateFile,
      enableProfiling: flags.profiling,
      env,
      processEnv: input.env,
      podAnnotations: annotations,
      podLabels: pod.labels.values,
      podLabelsFileExists: pod.labels.exists,
      podAnnotationsFileExists: pod.annotations.exists,
      paths: agentPaths(cwd, meshPath, settings.configPath, env),
      bootstrapOnly: flags.bootstrapOnly,
      disableHotRestart: flags.disableHotRestart,
      restartBudget: budget,
      restartBudgetWindowMs: window,
      unknownFlags: input.unknownFlags,
    };
    // processEnv is the caller's object (often process.env): never freeze it
    for (const [k, v] of Object.entries(config)) if (k !== 'processEnv') deepFreeze(v);
    return Object.freeze(config);
  };
  return { issues: issues.items, proxyConfig: pc, agentConfig };
}

function proxySettings(pc: ProxyConfig): ProxySettings {
  return {
    binaryPath: pc.binaryPath ?? '',
    configPath: pc.configPath ?? '',
    drainDurationMs: durationMs(pc.drainDuration),
    terminationDrainDurationMs: durationMs(pc.terminationDrainDuration),
    proxyAdminPort: pc.proxyAdminPort ?? 0,
    statusPort: pc.statusPort ?? 0,
    concurrency: pc.concurrency ?? 0,
    discoveryAddress: pc.discoveryAddress ?? '',
    controlPlaneAuthPolicy: pc.controlPlaneAuthPolicy ?? 'NONE',
    fileFlushIntervalMs: durationMs(pc.fileFlushInterval, 1000),
    fileFlushMinSizeKb: pc.fileFlushMinSizeKb ?? 0,
    customConfigFile: pc.customConfigFile ?? '',
    proxyBootstrapTemplatePath: pc.proxyBootstrapTemplatePath ?? '',
    holdApplicationUntilProxyStarts: pc.holdApplicationUntilProxyStarts ?? false,
    proxyMetadata: pc.proxyMetadata ?? {},
  };
}

function agentPaths(cwd: string, meshConfig: string, configPath: string, env: AgentEnv): AgentPaths {
  const configDir = resolve(cwd, configPath);
  return {
    cwd,
    podAnnotations: resolve(cwd, POD_ANNOTATIONS_PATH),
    podLabels: resolve(cwd, POD_LABELS_PATH),
    meshConfig,
    configDir,
    envoyBootstrap: join(configDir, 'envoy-rev.json'),
    grpcBootstrap: resolve(cwd, env.grpcXdsBootstrap),
    xdsUds: join(configDir, 'XDS'),
    istioRootCert: resolve(cwd, './var/run/secrets/istio/root-cert.pem'),
    istioToken: resolve(cwd, './var/run/secrets/tokens/istio-token'),
    workloadSdsSocket: resolve(cwd, './var/run/secrets/workload-spiffe-uds', env.workloadIdentitySocketFile || 'socket'),
    credentialSdsSocket: resolve(cwd, './var/run/secrets/credential-uds/socket'),
    bootstrapOverride: env.istioBootstrapOverride === '' ? '' : resolve(cwd, env.istioBootstrapOverride),
  };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}
