import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../lib/errors.js';
import { formatDownwardApi } from './downward-api.js';
import { loadProxyCommand, type LoadOptions } from '../cli/proxy-load.js';
import { splitEnvoyLogLevel } from './load.js';

const eth0 = (address: string): NetworkInterfaceInfo => ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null });

interface Setup {
  env?: Record<string, string>;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  mesh?: string;
  opts?: LoadOptions;
}

void describe('loadProxyCommand', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const load = async (args: string[], s: Setup = {}) => {
    const cwd = await mkdtemp(join(tmpdir(), 'load-'));
    dirs.push(cwd);
    await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
    if (s.annotations) await writeFile(join(cwd, 'etc/istio/pod/annotations'), formatDownwardApi(s.annotations));
    if (s.labels) await writeFile(join(cwd, 'etc/istio/pod/labels'), formatDownwardApi(s.labels));
    if (s.mesh !== undefined) {
      await mkdir(join(cwd, 'etc/istio/config'), { recursive: true });
      await writeFile(join(cwd, 'etc/istio/config/mesh'), s.mesh);
    }
    let out = '';
    const stdout = new Writable({
      write: (c: Buffer, _e, cb) => {
        out += c.toString();
        cb();
      },
    });
    const env = { CLOUD_PLATFORM: 'none', POD_NAME: 'p', POD_NAMESPACE: 'ns', INSTANCE_IP: '10.0.0.2', ...s.env };
    const ctx = { env, cwd, stdout, stderr: stdout, signals: new EventEmitter() };
    const r = await loadProxyCommand(args, ctx, { interfaces: { eth0: [eth0('10.0.0.2'), eth0('10.0.0.3')] }, hostCpus: 4, ...s.opts });
    return { ...r, out: () => out, cwd, env };
  };

  void it('builds identity, node id and paths like pilot-agent', async () => {
    const { config, cwd } = await load(['sidecar']);
    assert.equal(config.proxyType, 'sidecar');
    assert.deepEqual(config.nodeIPs, ['10.0.0.2', '10.0.0.3']);
    assert.equal(config.ipMode, 'IPv4');
    assert.equal(config.dnsDomain, 'ns.svc.cluster.local');
    assert.equal(config.nodeId, 'sidecar~10.0.0.2~p.ns~ns.svc.cluster.local');
    assert.equal(config.paths.envoyBootstrap, join(cwd, 'etc/istio/proxy/envoy-rev.json'));
    assert.equal(config.paths.grpcBootstrap, join(cwd, 'etc/istio/proxy/grpc-bootstrap.json'));
    assert.equal(config.paths.xdsUds, join(cwd, 'etc/istio/proxy/XDS'));
    assert.equal(config.paths.podAnnotations, join(cwd, 'etc/istio/pod/annotations'));
    assert.equal(config.paths.meshConfig, join(cwd, 'etc/istio/config/mesh'));
    assert.equal(config.proxy.drainDurationMs, 45_000);
    assert.equal(config.proxy.terminationDrainDurationMs, 5000);
    assert.equal(config.proxy.fileFlushIntervalMs, 1000);
    assert.equal(config.envoyLogLevel, 'warning');
    assert.equal(config.envoyComponentLogLevel, '');
    assert.equal(config.restartBudget, 5);
    assert.equal(config.restartBudgetWindowMs, 600_000);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.proxyConfig) && Object.isFrozen(config.env));
  });

  void it('layers defaults < mesh file defaultConfig < PROXY_CONFIG < annotation, then annotation overrides', async () => {
    const { config } = await load(['router', '--domain', 'custom.domain'], {
      mesh: 'defaultConfig:\n  drainDuration: 10s\n  statNameLength: 100\n  proxyMetadata: {A: mesh, B: mesh}\n',
      env: { PROXY_CONFIG: '{"drainDuration":"20s","proxyMetadata":{"B":"env"}}' },
      annotations: {
        'proxy.istio.io/config': 'drainDuration: 30s\nproxyMetadata: {C: anno}\n',
        'sidecar.istio.io/discoveryAddress': 'istiod-x.istio-system.svc:15012',
        'status.sidecar.istio.io/port': '0',
      },
    });
    assert.equal(config.proxyConfig.drainDuration, '30s');
    assert.equal(config.proxyConfig.statNameLength, 100);
    assert.deepEqual(config.proxyConfig.proxyMetadata, { A: 'mesh', B: 'env', C: 'anno' });
    assert.equal(config.proxy.discoveryAddress, 'istiod-x.istio-system.svc:15012');
    assert.equal(config.proxy.statusPort, 0, 'status port 0 disables the status server');
    assert.equal(config.nodeId, 'router~10.0.0.2~p.ns~custom.domain');
  });

  void it('derives concurrency from ISTIO_CPU_LIMIT unless set, and --concurrency overrides both', async () => {
    assert.equal((await load(['sidecar'], { env: { ISTIO_CPU_LIMIT: '2' } })).config.proxy.concurrency, 2);
    assert.equal((await load(['sidecar'], { env: { ISTIO_CPU_LIMIT: '2', PROXY_CONFIG: 'concurrency: 0' } })).config.proxy.concurrency, 0);
    const r = await load(['sidecar', '--concurrency', '6'], { env: { ISTIO_CPU_LIMIT: '2', PROXY_CONFIG: 'concurrency: 4' } });
    assert.equal(r.config.proxy.concurrency, 6);
    assert.match(r.out(), /warn\tlegacy --concurrency=6 flag detected/);
  });

  void it('fills an empty serviceCluster from --serviceCluster and applies --templateFile', async () => {
    const { config } = await load(['sidecar', '--serviceCluster', 'legacy', '--templateFile', '/t.json'], { env: { PROXY_CONFIG: 'serviceCluster: ""' } });
    assert.equal(config.proxyConfig.serviceCluster, 'legacy');
    assert.equal(config.proxy.proxyBootstrapTemplatePath, '/t.json');
    const custom = await load(['sidecar', '--templateFile', '/t.json'], { env: { PROXY_CONFIG: 'customConfigFile: /c.json' } });
    assert.equal(custom.config.proxy.proxyBootstrapTemplatePath, '');
  });

  void it('resolves statsdUdpAddress (first IPv4, else the last address) and clears it when resolution fails', async () => {
    const lookup = async (h: string): Promise<string[]> => {
      if (h === 'statsd.v6') return ['fd00::9', 'fd00::8'];
      if (h === 'statsd.mixed') return ['fd00::9', '::ffff:10.1.1.1', '10.2.2.2'];
      throw new Error(`ENOTFOUND ${h}`);
    };
    const get = async (addr: string) => (await load(['sidecar'], { env: { PROXY_CONFIG: JSON.stringify({ statsdUdpAddress: addr }) }, opts: { lookup } })).config.proxyConfig.statsdUdpAddress;
    assert.equal(await get('statsd.v6:8125'), '[fd00::8]:8125');
    assert.equal(await get('statsd.mixed:8125'), '10.1.1.1:8125');
    assert.equal(await get('statsd.gone:8125'), undefined);
  });

  void it('splits Envoy log levels as pilot-agent does', () => {
    assert.deepEqual(splitEnvoyLogLevel('warning', 'misc:error'), { level: 'warning', components: 'misc:error' });
    assert.deepEqual(splitEnvoyLogLevel('info,upstream:debug,http:trace', 'misc:error'), { level: 'info', components: 'upstream:debug,http:trace' });
    assert.deepEqual(splitEnvoyLogLevel('a:b:c,debug', ''), { level: 'debug', components: '' });
  });

  void it('logs FLAG lines sorted by name and the effective config as YAML', async () => {
    const r = await load(['sidecar', '--stsPort=15463']);
    const flags = r.out().split('\n').filter((l) => l.includes('\tFLAG: --')).map((l) => l.split('\tFLAG: ')[1]);
    const names = flags.map((f) => f!.split('=')[0]!);
    assert.deepEqual(names, [...names].sort());
    assert.ok(flags.includes('--stsPort="15463"'));
    assert.ok(flags.includes('--log_target="[stdout]"'));
    assert.ok(flags.includes('--restart-budget-window="10m0s"'));
    assert.match(r.out(), /Effective config: binaryPath: \/usr\/local\/bin\/envoy\nconfigPath: \.\/etc\/istio\/proxy\n/);
  });

  void it('reads the pod files and the environment into the config', async () => {
    const { config } = await load(['sidecar'], {
      labels: { app: 'a' },
      annotations: { x: 'y' },
      env: { XDS_HEADER_X_Trace: 'on', CA_HEADER_Foo: 'bar', SECRET_TTL: '12h', PEER_METADATA_DISCOVERY: 'true' },
    });
    assert.deepEqual(config.podLabels, { app: 'a' });
    assert.deepEqual(config.podAnnotations, { x: 'y' });
    assert.ok(config.podLabelsFileExists && config.podAnnotationsFileExists);
    assert.deepEqual(config.env.xdsHeaders, { X_Trace: 'on' });
    assert.deepEqual(config.env.caHeaders, { Foo: 'bar' });
    assert.equal(config.env.secretTtlMs, 12 * 3600_000);
    assert.equal(config.env.peerMetadataDiscovery, true);
    assert.equal(config.env.deltaXds, true);
    assert.equal(config.env.workloadIdentitySocketFile, 'socket');
    assert.equal(config.env.trustDomain, 'cluster.local');
  });

  void it('throws one ConfigError with every problem', async () => {
    await assert.rejects(
      load(['nope', '--concurrency=x'], { env: { PROXY_CONFIG: '{"statusPort": "x"}', ENVOY_PROMETHEUS_PORT: '0' } }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.deepEqual(
          e.issues.map((i) => i.source),
          ['flag --concurrency', 'argument proxy type', 'env ENVOY_PROMETHEUS_PORT', 'env PROXY_CONFIG'],
        );
        return true;
      },
    );
  });
});
