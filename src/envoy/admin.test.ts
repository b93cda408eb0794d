import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  countActiveConnections,
  createEnvoyAdmin,
  EnvoyAdminError,
  hostPort,
  knownIstioListenerStats,
  parseServerInfo,
  parseStatsText,
} from './admin.js';

async function fakeAdmin(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

void test('parseStatsText keeps integer counters/gauges and skips histograms and junk', () => {
  const m = parseStatsText(
    [
      'cluster_manager.cds.update_success: 3',
      'server.state: 0',
      'cluster.x.upstream_rq_time: P0(nan,1) P25(nan,2)',
      'garbage line',
      'server.state: 9',
      '',
    ].join('\n'),
  );
  assert.deepEqual([...m], [
    ['cluster_manager.cds.update_success', 3],
    ['server.state', 0],
  ]);
});

void test('countActiveConnections follows pilot-agent: listener.* only, no workers, internal or Istio listeners', () => {
  const known = knownIstioListenerStats(15021, 15090);
  const text = [
    'http.inbound_0.0.0.0_8080.downstream_cx_active: 100',
    'listener.0.0.0.0_15006.downstream_cx_active: 2',
    'listener.0.0.0.0_15006.worker_0.downstream_cx_active: 1',
    'listener.0.0.0.0_15006.worker_1.downstream_cx_active: 1',
    'listener.10.0.0.1_8080.downstream_cx_active: 3',
    'listener.envoy_internal_connect_originate.downstream_cx_active: 7',
    'listener.0.0.0.0_15021.downstream_cx_active: 4',
    'listener.0.0.0.0_15090.downstream_cx_active: 4',
    'listener.admin.downstream_cx_active: 1',
    'listener.admin.main_thread.downstream_cx_active: 1',
    'listener.bad.downstream_cx_active: x',
    '',
  ].join('\n');
  assert.equal(countActiveConnections(text, known), 5);
  assert.equal(countActiveConnections('', known), -1);
  // other status/prometheus ports are honoured
  assert.equal(countActiveConnections('listener.0.0.0.0_25021.downstream_cx_active: 4\n', knownIstioListenerStats(25021, 25090)), 0);
});

void test('parseServerInfo decodes the fields the agent uses', () => {
  const info = parseServerInfo(
    JSON.stringify({
      version: 'abc/1.40.0/Clean/RELEASE/BoringSSL',
      state: 'LIVE',
      hot_restart_version: '11.104',
      command_line_options: { restart_epoch: 2 },
      uptime_current_epoch: '12s',
      uptime_all_epochs: '65s',
    }),
  );
  assert.equal(info.state, 'LIVE');
  assert.equal(info.restartEpoch, 2);
  assert.equal(info.uptimeCurrentEpochSeconds, 12);
  assert.equal(info.uptimeAllEpochsSeconds, 65);
  assert.equal(info.hotRestartVersion, '11.104');
});

void test('hostPort brackets IPv6 hosts', () => {
  assert.equal(hostPort('::1', 15000), '[::1]:15000');
  assert.equal(hostPort('127.0.0.1', 15000), '127.0.0.1:15000');
});

void test('client sends the exact admin requests and parses answers', async () => {
  const seen: string[] = [];
  const { server, port } = await fakeAdmin((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (req.url?.startsWith('/stats')) {
      res.end('listener.0.0.0.0_15006.downstream_cx_active: 2\nlistener.admin.downstream_cx_active: 1\n');
    } else if (req.url === '/server_info') {
      res.end(JSON.stringify({ state: 'DRAINING', command_line_options: { restart_epoch: 1 } }));
    } else res.end('OK\n');
  });
  try {
    const admin = createEnvoyAdmin({ port });
    assert.equal(admin.baseUrl, `http://127.0.0.1:${port}`);
    await admin.drainListeners({ inboundOnly: true, graceful: true });
    await admin.drainListeners({ inboundOnly: true, graceful: true, skipExit: true });
    await admin.drainListeners({ inboundOnly: false });
    assert.equal(await admin.activeConnections(), 2);
    const stats = await admin.getStats('^server\\.state$');
    assert.equal(stats.get('listener.0.0.0.0_15006.downstream_cx_active'), 2);
    assert.equal((await admin.serverInfo()).state, 'DRAINING');
    await admin.quitquitquit();
    assert.deepEqual(seen, [
      'POST /drain_listeners?inboundonly&graceful',
      'POST /drain_listeners?inboundonly&graceful&skip_exit',
      'POST /drain_listeners?graceful',
      'GET /stats?usedonly&filter=downstream_cx_active%24',
      'GET /stats?usedonly&filter=%5Eserver%5C.state%24',
      'GET /server_info',
      'POST /quitquitquit',
    ]);
  } finally {
    await stop(server);
  }
});

void test('client errors are EnvoyAdminErrors naming the URL: refused, bad status, timeout', async () => {
  const { server, port } = await fakeAdmin((req, res) => {
    if (req.url === '/server_info') {
      res.statusCode = 500;
      res.end('boom');
      return;
    }
    // /stats: never answers
  });
  try {
    const admin = createEnvoyAdmin({ port, timeoutMs: 200 });
    const t0 = Date.now();
    await assert.rejects(admin.statsText('x'), (e: unknown) => {
      assert.ok(e instanceof EnvoyAdminError);
      assert.match(e.message, /^GET http:\/\/127\.0\.0\.1:\d+\/stats\?usedonly&filter=x: timed out after 200ms$/);
      return true;
    });
    assert.ok(Date.now() - t0 < 2000, 'timeout is honoured');
    await assert.rejects(admin.serverInfo(), (e: unknown) => {
      assert.ok(e instanceof EnvoyAdminError);
      assert.equal(e.status, 500);
      assert.match(e.message, /unexpected status 500: boom/);
      return true;
    });
  } finally {
    await stop(server);
  }
  // nothing listens any more
  await assert.rejects(createEnvoyAdmin({ port, timeoutMs: 500 }).quitquitquit(), /POST http:\/\/127\.0\.0\.1:\d+\/quitquitquit: .*ECONNREFUSED/);
});

void test('an admin answer larger than the cap is refused (nothing from outside is read without a bound)', async () => {
  const { server, port } = await fakeAdmin((_req, res) => {
    res.writeHead(200);
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    let sent = 0;
    const more = (): void => {
      while (sent < 64 && res.write(chunk)) sent++;
      if (sent < 64) res.once('drain', more);
      else res.end();
    };
    more();
  });
  try {
    const admin = createEnvoyAdmin({ port, host: '127.0.0.1' });
    await assert.rejects(admin.statsText('x', { timeoutMs: 5000 }), (e: unknown) => e instanceof EnvoyAdminError && /answer larger than 8388608 bytes/.test(e.message));
  } finally {
    await stop(server);
  }
});
