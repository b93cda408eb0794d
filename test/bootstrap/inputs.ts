// Bootstrap inputs shared by the bootstrap tests: the 26 conformance cases (from the shared
// cases.tsv) and variants that exercise the remaining branches (IPv6, dual stack, JSON logs,
// proxy protocol, SotW, waypoint, custom stats, TLS tracers, ...), plus ways to turn an input into
// an AgentConfig in-process or into envoy-rev.json through the built CLI.
import { EventEmitter } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { NetworkInterfaceInfo } from 'node:os';
import { loadProxyCommand } from '../../src/cli/proxy-load.js';
import type { AgentConfig } from '../../src/config/agent-config.js';
import type { Interfaces } from '../../src/config/network.js';
import { formatDownwardApi } from '../../src/config/downward-api.js';
import { AGENT_BIN, SHARED_DIR } from '../helpers/peers.js';
import { PEER_PATH, runProc } from '../helpers/go-agent.js';

export interface BootstrapInput {
  readonly name: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly annotations?: Record<string, string>;
  readonly labels?: Record<string, string>;
  /** Host interfaces seen by the loader (in-process only; the CLI sees the real host). */
  readonly interfaces?: Interfaces;
  /** Set when stock Envoy cannot load the bootstrap, with the reason and how to strip the part. */
  readonly envoyUnsupported?: { readonly reason: string; readonly message: RegExp; readonly strip: (doc: any) => void };
}

/** Splits shell words: bare, '...' and "..." (with backslash escapes) segments. */
export function shellWords(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      cur += text.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        cur += text[i++];
      }
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c === '\\' ? text[++i] : c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

const STRIP_METADATA_DISCOVERY = {
  reason: "the 'metadata_discovery' bootstrap extension (istio.workload.BootstrapExtension) exists only in Istio's Envoy build",
  message: /Didn't find a registered implementation for 'metadata_discovery'/,
  strip: (doc: any) => {
    doc.bootstrap_extensions = doc.bootstrap_extensions.filter((e: any) => e.name !== 'metadata_discovery');
  },
};
const STRIP_LIGHTSTEP = {
  reason: 'the lightstep tracer was removed from upstream Envoy (Istio still emits it)',
  message: /Didn't find a registered implementation for 'envoy.tracers.lightstep'/,
  strip: (doc: any) => {
    delete doc.tracing;
  },
};

/** The 26 conformance cases, as inputs (their configPath is kept; callers rewrite it). */
export function conformanceInputs(): BootstrapInput[] {
  const tsv = readFileSync(join(SHARED_DIR, 'conformance/bootstrap/cases.tsv'), 'utf8');
  const out: BootstrapInput[] = [];
  for (const line of tsv.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const [name, assigns] = line.split('\t') as [string, string];
    const env: Record<string, string> = {};
    for (const w of shellWords(assigns)) {
      const eq = w.indexOf('=');
      env[w.slice(0, eq)] = w.slice(eq + 1);
    }
    out.push({
      name,
      args: ['proxy', 'sidecar', '--outlierLogPath=/dev/stdout'],
      env,
      ...(name === 'ambient' ? { envoyUnsupported: STRIP_METADATA_DISCOVERY } : {}),
      ...(name === 'tracing_lightstep' ? { envoyUnsupported: STRIP_LIGHTSTEP } : {}),
    });
  }
  return out;
}

const iface = (address: string): NetworkInterfaceInfo =>
  address.includes(':')
    ? { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/64`, scopeid: 0 }
    : { address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/24` };

const BASE = { CLOUD_PLATFORM: 'none', POD_NAME: 'app-0', POD_NAMESPACE: 'ns1', INSTANCE_IP: '10.1.1.1' };

/** Inputs beyond the conformance cases, covering the remaining bootstrap branches. */
export const VARIANT_INPUTS: readonly BootstrapInput[] = [
  {
    name: 'injector default sidecar with pod files',
    args: ['proxy', 'sidecar', '--domain', 'ns1.svc.cluster.local', '--proxyLogLevel=warning', '--proxyComponentLogLevel=misc:error'],
    env: { ...BASE, ISTIO_CPU_LIMIT: '2', PROXY_CONFIG: '{}', ISTIO_META_CLUSTER_ID: 'Kubernetes', ISTIO_META_POD_PORTS: '[{"name":"http","containerPort":8080,"protocol":"TCP"}]' },
    labels: { app: 'web', version: 'v2', 'topology.istio.io/locality': 'r1.z1.s1' },
    annotations: { 'sidecar.istio.io/statsHistogramBuckets': '{"cluster":[1,2.5,10],"istio":[0.5,1]}', 'sidecar.istio.io/extraStatTags': 'x_tag' },
    interfaces: { eth0: [iface('10.1.1.1')] },
  },
  {
    name: 'IPv6 only, JSON logs, metrics on localhost',
    args: ['proxy', 'sidecar', '--log_as_json'],
    env: { ...BASE, INSTANCE_IP: 'fd00::5', PROXY_CONFIG: JSON.stringify({ proxyMetadata: { METRICS_LOCALHOST_ACCESS_ONLY: 'true' }, tracing: { zipkin: { address: 'zipkin.istio-system:9411' } } }) },
    interfaces: { eth0: [iface('fd00::5')] },
  },
  {
    name: 'dual stack, proxy protocol on the status port, custom ports',
    args: ['proxy', 'sidecar'],
    env: { ...BASE, ISTIO_DUAL_STACK: 'true', ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL: 'true', ENVOY_STATUS_PORT: '16021', ENVOY_PROMETHEUS_PORT: '16090', PROXY_CONFIG: 'proxyAdminPort: 16000\nstatusPort: 16020\n' },
    interfaces: { eth0: [iface('10.1.1.1'), iface('fd00::1')] },
  },
  {
    name: 'dual stack with IPv6 first, metrics on localhost',
    args: ['proxy', 'sidecar'],
    env: { ...BASE, INSTANCE_IP: 'fd00::7', ISTIO_DUAL_STACK: 'true', PROXY_CONFIG: JSON.stringify({ proxyMetadata: { METRICS_LOCALHOST_ACCESS_ONLY: 'true' } }) },
    interfaces: { eth0: [iface('fd00::7'), iface('10.1.1.7')] },
  },
  {
    name: 'router, SotW, exit on zero connections, STS port, strip-fragment off',
    args: ['proxy', 'router', '--stsPort=15463'],
    env: { ...BASE, ISTIO_DELTA_XDS: 'false', EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true', HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED: 'false', ISTIO_META_ENABLE_HBONE: 'true' },
    interfaces: { eth0: [iface('10.1.1.1')] },
  },
  {
    name: 'waypoint (forces delta xDS and metadata discovery)',
    args: ['proxy', 'waypoint'],
    env: { ...BASE, ISTIO_DELTA_XDS: 'false' },
    interfaces: { eth0: [iface('10.1.1.1')] },
    envoyUnsupported: STRIP_METADATA_DISCOVERY,
  },
  {
    name: 'tracers with TLS: zipkin ISTIO_MUTUAL, metrics/access-log services with keepalive',
    args: ['proxy', 'sidecar'],
    env: {
      ...BASE,
      HOST_IP: '192.168.1.9',
      PROXY_CONFIG: JSON.stringify({
        tracing: { zipkin: { address: '$(HOST_IP):9411' }, tlsSettings: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://td/ns/x/sa/zipkin'] } },
        envoyMetricsService: { address: 'ms.x:15000', tlsSettings: { mode: 'SIMPLE', caCertificates: '/etc/ms/ca.pem', sni: 'ms.x' }, tcpKeepalive: { probes: 3, time: '30s', interval: '10s' } },
        envoyAccessLogService: { address: 'als.x:15000', tcpKeepalive: {} },
        statsdUdpAddress: '127.0.0.1:8125',
      }),
    },
    interfaces: { eth0: [iface('10.1.1.1')] },
  },
  {
    name: 'datadog tracer, tracing service name, proxy stats matcher, histogram, flush and eviction',
    args: ['proxy', 'sidecar'],
    env: {
      ...BASE,
      ISTIO_METAJSON_LABELS: '{"app.kubernetes.io/name":"shop","service.istio.io/canonical-name":"shop-canonical"}',
      PROXY_CONFIG: JSON.stringify({
        tracingServiceName: 'CANONICAL_NAME_AND_NAMESPACE',
        tracing: { datadog: { address: 'dd-agent.x:8126' } },
        proxyStatsMatcher: { inclusionPrefixes: ['upstream'], inclusionSuffixes: ['rq_total'], inclusionRegexps: ['.*outlier.*'] },
      }),
    },
    annotations: { 'sidecar.istio.io/statsFlushInterval': '2s', 'sidecar.istio.io/statsEvictionInterval': '1m' },
    interfaces: { eth0: [iface('10.1.1.1')] },
  },
];

/** A CliContext for in-process loading (output discarded). */
export function quietContext(env: Record<string, string>, cwd: string) {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  return { env, cwd, stdout: sink, stderr: sink, signals: new EventEmitter() };
}

/** Writes the input's pod files into cwd. */
export async function writePodFiles(input: BootstrapInput, cwd: string): Promise<void> {
  await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
  if (input.labels) await writeFile(join(cwd, 'etc/istio/pod/labels'), formatDownwardApi(input.labels));
  if (input.annotations) await writeFile(join(cwd, 'etc/istio/pod/annotations'), formatDownwardApi(input.annotations));
}

/** The input's env with PROXY_CONFIG.configPath pointed into cwd (the conformance cases use /tmp/bootstrap/<case>). */
export function envIn(input: BootstrapInput, cwd: string): Record<string, string> {
  const env = { ...input.env };
  if (env.PROXY_CONFIG?.trim().startsWith('{')) {
    const pc = JSON.parse(env.PROXY_CONFIG) as Record<string, unknown>;
    if (typeof pc.configPath === 'string') env.PROXY_CONFIG = JSON.stringify({ ...pc, configPath: join(cwd, 'etc/istio/proxy') });
  }
  return env;
}

/** Loads the input's AgentConfig in-process (pod files must already be in cwd). */
export async function loadInput(input: BootstrapInput, cwd: string): Promise<AgentConfig> {
  const { config } = await loadProxyCommand(input.args.slice(1), quietContext(envIn(input, cwd), cwd), {
    interfaces: input.interfaces ?? { eth0: [iface('10.4.4.4')] },
    hostCpus: 1,
    lookup: async (host) => (/^[\d.]+$/.test(host) ? [host] : ['10.9.9.9']),
  });
  return config;
}

/** Generates envoy-rev.json with the built CLI (`--bootstrap-only`) in cwd; returns its text. */
export async function generateWithCli(input: BootstrapInput, cwd: string): Promise<string> {
  await writePodFiles(input, cwd);
  const env = { PATH: PEER_PATH, HOME: process.env.HOME ?? '/', ...envIn(input, cwd) };
  const r = await runProc(AGENT_BIN, [...input.args, '--bootstrap-only'], { cwd, env, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`agent --bootstrap-only failed (exit ${r.code}) for ${input.name}:\n${r.stdout}${r.stderr}`);
  return readFile(join(cwd, 'etc/istio/proxy/envoy-rev.json'), 'utf8');
}
