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

async function setup(t: import('node:test').TestContext, budget = { max: 5, windowMs: 60_000 }) {
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
  });
  t.after(async () => {
    await sup.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { sup, adminPort, port, lines };
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
