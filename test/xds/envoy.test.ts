// The real thing: Envoy 1.40 gets its ADS stream through our proxy's Unix socket, the proxy relays it to
// the test control plane, and an HTTP request sent to the listener Envoy received reaches the upstream.
// Both ADS flavours: GRPC (State of the World) and DELTA_GRPC (Istio's default).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/lib/log.js';
import { createAgentMetrics } from '../../src/lib/metrics.js';
import { createXdsProxy } from '../../src/xds/index.js';
import { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/xds/types.js';
import { startHttpUpstream } from '../controlplane/http-upstream.js';
import { startControlPlane } from '../controlplane/server.js';
import { envoyBin } from '../helpers/peers.js';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function bootstrap(apiType: 'GRPC' | 'DELTA_GRPC'): unknown {
  return {
    node: { id: 'sidecar~127.0.0.1~envoy-test.default~default.svc.cluster.local', cluster: 'envoy-test.default' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    dynamic_resources: {
      ads_config: {
        api_type: apiType,
        transport_api_version: 'V3',
        set_node_on_first_message_only: true,
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
      cds_config: { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: '0s' },
      lds_config: { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: '0s' },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds-grpc',
          type: 'STATIC',
          connect_timeout: '1s',
          // Relative, as Istio's bootstrap has it: Envoy runs in the pod's working directory.
          load_assignment: { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: './etc/istio/proxy/XDS' } } } }] }] },
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        },
      ],
    },
  };
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function runEnvoyThroughProxy(apiType: 'GRPC' | 'DELTA_GRPC'): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'xds-envoy-'));
  const upstream = await startHttpUpstream({ name: `upstream-${apiType}` });
  const listenerPort = await freePort();
  const cp = await startControlPlane({ http: { listenerPort, upstreamPort: upstream.port } });
  const agentMetrics = createAgentMetrics({ processMetrics: false });
  const logLines: string[] = [];
  const proxy = createXdsProxy({
    udsPath: join(dir, 'etc', 'istio', 'proxy', 'XDS'),
    discoveryAddress: cp.address,
    tls: null,
    tokenPath: join(dir, 'var', 'run', 'secrets', 'tokens', 'istio-token'),
    clusterId: 'Kubernetes',
    log: createLogger({ outputLevels: 'default:info', sink: { write: (l) => void logLines.push(l) } }),
    metrics: agentMetrics,
  });
  let envoy: ChildProcess | undefined;
  const envoyOut: string[] = [];
  try {
    await proxy.start();
    await writeFile(join(dir, 'envoy.json'), JSON.stringify(bootstrap(apiType)));
    envoy = spawn(
      envoyBin(),
      ['-c', 'envoy.json', '--disable-hot-restart', '--admin-address-path', 'admin.txt', '--log-level', 'warn', '--concurrency', '1'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    envoy.stdout?.on('data', (d: Buffer) => envoyOut.push(d.toString()));
    envoy.stderr?.on('data', (d: Buffer) => envoyOut.push(d.toString()));

    // Envoy subscribes through the proxy with the configured flavour and ACKs what it got.
    const flavour = apiType === 'GRPC' ? 'sotw' : 'delta';
    for (const t of [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE]) {
      await cp.waitFor(`Envoy's ${t} ACK`, () => cp.requests.find((r) => r.flavour === flavour && r.typeUrl === t && r.kind === 'ack'), 20_000);
    }
    assert.equal(cp.streams.at(-1)?.metadata.clusterid, 'Kubernetes');
    assert.match(cp.streams.at(-1)?.nodeId ?? '', /^sidecar~127\.0\.0\.1~envoy-test/);
    assert.equal(cp.requests.some((r) => r.kind === 'nack'), false, 'Envoy accepted every resource');

    // A request to Envoy's listener reaches the upstream (retry while the listener warms up).
    const deadline = Date.now() + 20_000;
    let res: Awaited<ReturnType<typeof httpGet>> | undefined;
    while (Date.now() < deadline) {
      res = await httpGet(listenerPort, '/through-envoy').catch(() => undefined);
      if (res?.status === 200) break;
      await sleep(200);
    }
    assert.equal(res?.status, 200, `request through Envoy failed; envoy output:\n${envoyOut.join('')}`);
    assert.equal(res?.body, `hello from upstream-${apiType}: GET /through-envoy\n`);
    assert.ok(upstream.requests >= 1);

    const admin = (await readFile(join(dir, 'admin.txt'), 'utf8')).trim();
    const stats = await httpGet(Number(admin.split(':').pop()), '/stats?filter=^(cluster_manager.cds|listener_manager.lds).update_success$');
    assert.match(stats.body, /cluster_manager\.cds\.update_success: [1-9]/);
    assert.match(stats.body, /listener_manager\.lds\.update_success: [1-9]/);
    const status = proxy.getStatus();
    assert.equal(status.connected, true);
    assert.equal(status.stream?.flavour, flavour);
    assert.ok(logLines.some((l) => l.includes('connected to') && l.includes(cp.address)));
    const exposition = await agentMetrics.registry.metrics();
    assert.match(exposition, /^istio_agent_xds_proxy_requests [1-9]/m);
    assert.match(exposition, /^istio_agent_xds_proxy_responses [1-9]/m);
  } finally {
    if (envoy) await stopProcess(envoy);
    await proxy.close();
    await cp.stop();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
}

void describe('real Envoy through the xDS proxy', () => {
  void it('State of the World (api_type GRPC): Envoy gets the listener and serves a request to the upstream', async () => {
    await runEnvoyThroughProxy('GRPC');
  });
  void it('Delta (api_type DELTA_GRPC): Envoy gets the listener and serves a request to the upstream', async () => {
    await runEnvoyThroughProxy('DELTA_GRPC');
  });
});
