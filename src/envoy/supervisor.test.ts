// The supervisor against the real Envoy: hot restart keeps serving, a killed Envoy is restarted in place,
// and past the crash budget the supervisor gives up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { envoyBin } from '../../test/helpers/peers.js';
import { memoryLogger } from '../lib/log.js';
import { buildEnvoyArgs } from './args.js';
import { createEnvoySupervisor } from './supervisor.js';

function bootstrap(adminPort: number, port: number): object {
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [{
        name: 'l', address: { socket_address: { address: '127.0.0.1', port_value: port } },
        filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
          stat_prefix: 'x',
          route_config: { virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'ok' } } }] }] },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
        } }] }],
      }],
    },
  };
}

function get(port: number, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A port the kernel just handed out (and released), so Envoy's binds do not collide with anything. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function epochOf(adminPort: number): Promise<number | undefined> {
  const r = await get(adminPort, '/server_info');
  const info = JSON.parse(r.body) as { state: string; command_line_options: { restart_epoch: number } };
  return info.state === 'LIVE' ? info.command_line_options.restart_epoch : undefined;
}

async function setup(t: import('node:test').TestContext, budget = { max: 5, windowMs: 60_000 }, extra: Partial<Parameters<typeof createEnvoySupervisor>[0]> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'sup-'));
  const adminPort = await freePort();
  const port = await freePort();
  await writeFile(join(dir, 'envoy.json'), JSON.stringify(bootstrap(adminPort, port)));
  const { log, lines } = memoryLogger('default:info');
  const sup = createEnvoySupervisor({
    binaryPath: envoyBin(),
    cwd: dir,
    env: { PATH: process.env.PATH },
    buildArgs: (hot) =>
      buildEnvoyArgs({ configFile: 'envoy.json', drainDurationMs: 1000, nodeIPs: ['127.0.0.1'], proxyLogLevel: 'warning', proxyComponentLogLevel: '', skipDeprecatedLogs: true, enableCoreDump: false, concurrency: 1 }, hot),
    hotRestart: true,
    baseIdPath: join(dir, 'base-id'),
    parentShutdownS: () => 2,
    budget,
    backoff: { initialMs: 50, maxMs: 200 },
    log,
    ...extra,
  });
  t.after(async () => {
    await sup.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { sup, adminPort, port, lines, dir };
}

test('hot restart: a new epoch takes over with no failed request and the old epoch exits on its own', async (t) => {
  const { sup, adminPort, port } = await setup(t);
  await sup.start();
  await until(() => epochOf(adminPort), 20_000, 'epoch 0 live');
  let failed = 0;
  let ok = 0;
  let stop = false;
  const load = (async () => {
    while (!stop) {
      try {
        const r = await get(port);
        if (r.status === 200 && r.body === 'ok') ok++;
        else failed++;
      } catch {
        failed++;
      }
    }
  })();
  await until(async () => (ok > 50 ? true : undefined), 10_000, 'load to start');
  const oldPid = sup.status().pid!;
  assert.equal(await sup.hotRestart('test'), 1);
  await until(async () => ((await epochOf(adminPort)) === 1 ? true : undefined), 10_000, 'epoch 1 live');
  // the old epoch is gone after its parent-shutdown time (2s)
  await until(async () => {
    try {
      process.kill(oldPid, 0);
      return undefined;
    } catch {
      return true;
    }
  }, 10_000, 'old epoch to exit');
  stop = true;
  await load;
  assert.equal(failed, 0, `${failed} requests failed during the hot restart (${ok} succeeded)`);
  assert.ok(ok > 100);
  assert.deepEqual({ epoch: sup.status().epoch, hot: sup.status().hotRestarts, retiring: sup.status().retiringEpochs }, { epoch: 1, hot: 1, retiring: [] });
});

test('kill -9 of Envoy: restarted in place (a fresh epoch 0 on a new base id); past the budget the supervisor gives up', async (t) => {
  const { sup, adminPort, port, lines } = await setup(t, { max: 1, windowMs: 60_000 });
  await sup.start();
  await until(() => epochOf(adminPort), 20_000, 'epoch 0 live');
  const first = sup.status().pid!;
  process.kill(first, 'SIGKILL');
  await until(async () => (sup.status().pid !== first && sup.status().state === 'running' && (await epochOf(adminPort)) === 0 ? true : undefined), 10_000, 'the restarted Envoy live');
  assert.equal((await get(port)).body, 'ok');
  assert.equal(sup.status().crashRestarts, 1);
  process.kill(sup.status().pid!, 'SIGKILL');
  const outcome = await sup.done;
  assert.equal(outcome.kind, 'gave-up');
  assert.match(outcome.kind === 'gave-up' ? outcome.message : '', /crashed 2 times within 60s, over the restart budget of 1/);
  assert.ok(lines.some((l) => l.includes('Envoy exited unexpectedly (signal: killed); restarting it')));
});

test('a hot-restart epoch that never serves (waits forever for CDS) is stopped after liveTimeoutMs; the parent kept serving; the next hot restart is a cold one', async (t) => {
  let adminPortRef = 0;
  const { sup, adminPort, port, lines, dir } = await setup(t, undefined, {
    liveTimeoutMs: 1500,
    // live = the new epoch's admin answers LIVE (what the agent checks)
    awaitLive: async (epoch, signal) => {
      while (!signal.aborted) {
        if ((await epochOf(adminPortRef).catch(() => undefined)) === epoch) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  });
  adminPortRef = adminPort;
  await sup.start();
  await until(() => epochOf(adminPort), 20_000, 'epoch 0 live');
  const parent = sup.status().pid!;
  // the next epoch's bootstrap waits for CDS from a control plane that is not there (initial_fetch_timeout 0)
  const stuck: Record<string, any> = {
    ...(bootstrap(adminPort, port) as Record<string, any>),
    node: { id: 'stuck', cluster: 'stuck' },
    dynamic_resources: { cds_config: { resource_api_version: 'V3', initial_fetch_timeout: '0s', api_config_source: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'xds' } }] } } },
  };
  (stuck.static_resources as { clusters?: unknown[] }).clusters = [{ name: 'xds', type: 'STATIC', connect_timeout: '1s', typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } } }, load_assignment: { cluster_name: 'xds', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 1 } } } }] }] } }];
  await writeFile(join(dir, 'envoy.json'), JSON.stringify(stuck));
  let failed = 0;
  let stop = false;
  const load = (async () => {
    while (!stop) await get(port).then((r) => void (r.body === 'ok' || failed++), () => void failed++);
  })();
  await assert.rejects(sup.hotRestart('test'), /Envoy epoch 1 did not become ready within 2s/);
  assert.equal(sup.status().pid, parent, 'the parent is current again');
  assert.equal(sup.status().state, 'running');
  assert.equal((await get(port)).body, 'ok', 'and serves');
  stop = true;
  await load;
  assert.equal(failed, 0, 'no request failed while the new epoch was stuck and stopped');
  assert.ok(lines.some((l) => /Envoy epoch 1 exited during hot restart .*epoch 0 keeps serving; the next hot restart will be a cold one/.test(l)), lines.join(''));
  // the next one: stop, then a fresh epoch 0 (with a bootstrap that works)
  await writeFile(join(dir, 'envoy.json'), JSON.stringify(bootstrap(adminPort, port)));
  assert.equal(await sup.hotRestart('again'), 0);
  assert.notEqual(sup.status().pid, parent);
  assert.equal((await get(port)).body, 'ok');
  assert.ok(lines.some((l) => l.includes('restarting Envoy cold')));
});
