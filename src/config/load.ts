// `agent proxy` start-up configuration: flags -> logger -> environment -> pod files -> proxy IPs ->
// ProxyConfig layers (defaults, --meshConfig file, PROXY_CONFIG, annotation) -> post-processing ->
// validation. Every problem found on the way is collected; if there are any, one ConfigError lists
// them all with their sources.
import { lookup as dnsLookup } from 'node:dns/promises';
import { stat } from 'node:fs/promises';
import { availableParallelism, networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify as yamlStringify } from 'yaml';
import type { CliContext } from '../cli/context.js';
import { parseFlags, type ParsedFlags } from '../cli/flags.js';
import { checkLogFlags, checkLogTargets, loggerFromFlags } from '../cli/global-flags.js';
import { PROXY_FLAGS, PROXY_TYPES, type ProxyType } from '../cli/proxy-flags.js';
import { IssueList } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { AGENT_NAME, AGENT_VERSION, ISTIO_GIT_REVISION, ISTIO_VERSION } from '../version.js';
import type { AgentConfig, AgentPaths, ProxySettings } from './agent-config.js';
import { parseDownwardApi } from './downward-api.js';
import { parseAgentEnv, type AgentEnv } from './env.js';
import { formatGoDurationNs, goQuote } from './gocompat.js';
import { discoverProxyIps, ipMode, type Interfaces } from './network.js';
import { applyProxyConfigLayer, defaultProxyConfig, durationMs, proxyConfigToJson, type ProxyConfig } from './proxy-config.js';
import { splitHostPort, validateProxyConfig } from './validate.js';
import { parseYamlOrJson } from './yaml.js';
import { nodeMetadataIssues } from '../bootstrap/metadata.js';
import { clip, InputTooLargeError, MAX_FILE_BYTES, readTextFileLimited, valueSizeProblem } from './limits.js';
import { BootstrapError, bootstrapParams } from '../bootstrap/params.js';

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
  /** Log the FLAG lines and the version (default true; a reload for a hot restart can turn it off). */
  readonly logStartup?: boolean;
}

export interface LoadedProxyCommand {
  readonly config: AgentConfig;
  readonly log: Logger;
}

interface PodFile {
  readonly values: Record<string, string>;
  readonly exists: boolean;
}

async function readPodFile(path: string, label: string, issues: IssueList): Promise<PodFile> {
  let text: string;
  try {
    text = await readTextFileLimited(path, MAX_FILE_BYTES);
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

function flagValueText(p: ParsedFlags, name: string): string {
  const v = p.values.get(name);
  const spec = PROXY_FLAGS.find((s) => s.name === name)!;
  if (spec.type === 'duration') return formatGoDurationNs(BigInt(Math.round((v as number) * 1e6)));
  if (Array.isArray(v)) return `[${v.join(',')}]`;
  return String(v);
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

interface LayerResult {
  readonly pc: ProxyConfig;
}

/** One ProxyConfig layer from the environment or the annotation (`from`: pilot-agent's log wording). */
function applyLayer(pc: ProxyConfig, text: string, source: string, from: 'env' | 'annotation', issues: IssueList, log: Logger): LayerResult {
  const tooBig = valueSizeProblem(text);
  if (tooBig) {
    issues.add(source, tooBig);
    return { pc };
  }
  log.info(`Apply proxy config from ${from} ${text}`);
  let parsed: unknown;
  try {
    parsed = parseYamlOrJson(text);
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

const defaultLookup = async (host: string): Promise<string[]> =>
  (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

function yamlOf(pc: ProxyConfig): string {
  return yamlStringify(proxyConfigToJson(pc), { sortMapEntries: true, lineWidth: 0 });
}

/** Parses `agent proxy` arguments and the environment into an AgentConfig. Throws ConfigError. */
export async function loadProxyCommand(args: readonly string[], ctx: CliContext, opts: LoadOptions = {}): Promise<LoadedProxyCommand> {
  const issues = new IssueList();
  const p = parseFlags(args, PROXY_FLAGS, {});
  for (const i of p.issues) issues.add(i.source, i.message);
  const before = issues.items.length;
  checkLogFlags(p, issues.items);
  const badLevels = issues.items.length > before;
  const beforeTargets = issues.items.length;
  checkLogTargets(p, ctx.cwd, issues.items);
  const badTargets = issues.items.length > beforeTargets;
  // with a bad level or log file the logger falls back to the defaults; the problem is still reported
  let logFlags: ParsedFlags = p;
  if (badLevels || badTargets) {
    const values = new Map(p.values);
    const fallback = [...(badLevels ? ['log_output_level', 'log_stacktrace_level'] : []), ...(badTargets ? ['log_target'] : [])];
    for (const name of fallback) values.set(name, PROXY_FLAGS.find((f) => f.name === name)!.default);
    logFlags = { ...p, values };
  }
  const log = loggerFromFlags(logFlags, ctx);

  if (opts.logStartup ?? true) {
    for (const spec of [...PROXY_FLAGS].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      log.info(`FLAG: --${spec.name}=${goQuote(flagValueText(p, spec.name))}`);
    }
    for (const u of p.unknown) log.warn(`ignoring unknown flag ${u} (pilot-agent accepts and ignores unknown flags)`);
    log.info(`Version ${ISTIO_VERSION}-${ISTIO_GIT_REVISION}-Clean (${AGENT_NAME} ${AGENT_VERSION})`);
  }

  const typeArg = p.positionals[0] ?? 'sidecar';
  if (!(PROXY_TYPES as readonly string[]).includes(typeArg)) issues.add('argument proxy type', `invalid proxy Type: ${typeArg}`);
  const proxyType = typeArg as ProxyType;

  const env = parseAgentEnv(ctx.env, issues);
  if (['aws', 'azure', 'gcp'].includes(env.cloudPlatform)) {
    log.warn(`CLOUD_PLATFORM=${env.cloudPlatform}: platform metadata and locality are not read from the cloud metadata server; the platform is treated as unknown`);
  } else if (env.cloudPlatform !== 'none') {
    log.debug('no CLOUD_PLATFORM: cloud metadata servers are not probed; the platform is treated as unknown');
  }
  const cwd = ctx.cwd;
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
  const domainFlag = p.values.get('domain') as string;
  const dnsDomain = domainFlag === '' ? `${env.podNamespace}.svc.cluster.local` : domainFlag;
  const nodeId = [proxyType, nodeIPs[0] ?? '', podId, dnsDomain].join('~');
  log.info('Proxy role', { ips: `[${nodeIPs.join(' ')}]`, type: proxyType, id: podId, domain: dnsDomain });

  // ProxyConfig layers
  let pc = defaultProxyConfig();
  const meshFlag = p.values.get('meshConfig') as string;
  const meshPath = resolve(cwd, meshFlag);
  if (await fileExists(meshPath)) {
    let text = '';
    try {
      text = await readTextFileLimited(meshPath, MAX_FILE_BYTES);
    } catch (e) {
      issues.add(`file ${meshFlag}`, `failed to read mesh config file: ${(e as Error).message}`);
    }
    if (text !== '') {
      log.info(`Apply mesh config from file ${text}`);
      let mesh: unknown;
      try {
        mesh = parseYamlOrJson(text);
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
  if (env.proxyConfigEnv !== '') pc = applyLayer(pc, env.proxyConfigEnv, 'env PROXY_CONFIG', 'env', issues, log).pc;
  const annoPc = annotations[ANNOTATION_PROXY_CONFIG];
  if (annoPc) pc = applyLayer(pc, annoPc, `annotation ${ANNOTATION_PROXY_CONFIG} (${POD_ANNOTATIONS_PATH})`, 'annotation', issues, log).pc;

  // post-processing (pilot-agent config.ConstructProxyConfig)
  if (pc.concurrency === undefined && env.cpuLimit !== 0) {
    log.info(`cpu limit detected as ${env.cpuLimit}, setting concurrency`);
    pc.concurrency = env.cpuLimit;
  }
  const concurrencyFlag = p.values.get('concurrency') as number;
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
  if (pc.serviceCluster === '') pc.serviceCluster = p.values.get('serviceCluster') as string;
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
  const templateFile = p.values.get('templateFile') as string;
  if (templateFile !== '' && !pc.customConfigFile) pc.proxyBootstrapTemplatePath = templateFile;

  const stsPort = p.values.get('stsPort') as number;
  if (stsPort < 0 || stsPort > 65535) issues.add('flag --stsPort', `port ${stsPort} must be in the range 0..65535`);
  const budget = p.values.get('restart-budget') as number;
  if (budget < 0) issues.add('flag --restart-budget', `must not be negative (got ${budget})`);
  const window = p.values.get('restart-budget-window') as number;
  if (window <= 0) issues.add('flag --restart-budget-window', 'must be a positive duration');

  for (const p of nodeMetadataIssues(ctx.env, pc)) {
    // a variable already reported by the environment parser is not reported twice
    if (p.source !== p.origin && issues.items.some((i) => i.source === p.origin)) continue;
    const message = p.path === '' ? p.message : `${p.key}${p.path}: ${p.message}`;
    if (issues.items.some((i) => i.source === p.source && i.message === message)) continue;
    issues.add(p.source, message);
  }

  log.info(`Effective config: ${yamlOf(pc)}`);
  issues.throwIfAny();

  const proxyLogLevel = p.values.get('proxyLogLevel') as string;
  const proxyComponentLogLevel = p.values.get('proxyComponentLogLevel') as string;
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
    logAsJson: p.values.get('log_as_json') as boolean,
    outlierLogPath: p.values.get('outlierLogPath') as string,
    stsPort,
    tokenManagerPlugin: p.values.get('tokenManagerPlugin') as string,
    templateFile,
    enableProfiling: p.values.get('profiling') as boolean,
    env,
    processEnv: ctx.env,
    podAnnotations: annotations,
    podLabels: pod.labels.values,
    podLabelsFileExists: pod.labels.exists,
    podAnnotationsFileExists: pod.annotations.exists,
    paths: agentPaths(cwd, meshPath, settings.configPath, env),
    bootstrapOnly: p.values.get('bootstrap-only') as boolean,
    disableHotRestart: p.values.get('disable-hot-restart') as boolean,
    restartBudget: budget,
    restartBudgetWindowMs: window,
    unknownFlags: p.unknown,
  };
  // inputs that only the bootstrap renders (stackdriver tracer, LOAD_STATS_CONFIG_JSON, tracer
  // addresses after annotation overrides) fail here rather than when Envoy is about to start
  try {
    bootstrapParams(config);
  } catch (e) {
    if (!(e instanceof BootstrapError)) throw e;
    issues.add('bootstrap', e.message);
    issues.throwIfAny();
  }
  // processEnv is the caller's object (often process.env): never freeze it
  for (const [k, v] of Object.entries(config)) if (k !== 'processEnv') deepFreeze(v);
  return { config: Object.freeze(config), log };
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
