// The status server's readiness and the admin client against the REAL Envoy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createEnvoyAdmin } from '../../src/envoy/admin.js';
import { memoryLogger } from '../../src/lib/log.js';
import { createAgentMetrics } from '../../src/lib/metrics.js';
import { createStatusServer, type StatusServer } from '../../src/status/server.js';
import { eventually, get, startEnvoy, type EnvoyHandle } from './fixtures.js';

async function withEnvoy(dynamic: boolean, fn: (e: EnvoyHandle, status: StatusServer, lines: string[]) => Promise<void>): Promise<void> {
  const envoy = await startEnvoy({ dynamic });
  const { log, lines } = memoryLogger('default:debug');
  const status = createStatusServer({
    log,
    metrics: createAgentMetrics({ processMetrics: false }),
    statusPort: 0,
    listenHost: '127.0.0.1',
    admin: createEnvoyAdmin({ port: envoy.adminPort }),
  });
  try {
    await status.start();
    await fn(envoy, status, lines);
  } finally {
    await status.close();
    await envoy.stop();
  }
}

void test('static-only Envoy: LIVE, but never ready: no xDS config was received', async () => {
  await withEnvoy(false, async (envoy, status, lines) => {
    const admin = createEnvoyAdmin({ port: envoy.adminPort });
    assert.equal((await admin.serverInfo()).state, 'LIVE');
    const r = await get(`http://127.0.0.1:${status.port()}/healthz/ready`);
    assert.equal(r.status, 503);
    assert.equal(r.body, 'not ready: envoy: config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected (CDS and LDS not yet accepted by Envoy)\n');
    assert.ok(
      lines.some((l) =>
        l.includes(
          'Envoy proxy is NOT ready: config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected',
        ),
      ),
      lines.join(''),
    );
  });
});

void test('file-xDS Envoy: ready once CDS and LDS are accepted; admin calls work; readiness holds across a hot restart', async () => {
  await withEnvoy(true, async (envoy, status, lines) => {
    const url = `http://127.0.0.1:${status.port()}/healthz/ready`;
    await eventually('ready', async () => ((await get(url)).status === 200 ? true : undefined));
    assert.equal(lines.filter((l) => l.includes('Envoy proxy is ready')).length, 1);
    assert.ok(lines.some((l) => l.includes('Readiness succeeded in ')));

    const admin = createEnvoyAdmin({ port: envoy.adminPort });
    const info = await admin.serverInfo();
    assert.equal(info.state, 'LIVE');
    assert.equal(info.restartEpoch, 0);
    assert.match(info.version, /\/1\.\d+\.\d+\//);
    // the listener serves; an idle keep-alive connection is an active downstream connection
    const stats = await admin.getStats('^listener_manager\\.');
    assert.equal(stats.get('listener_manager.total_listeners_active'), 1);
    assert.equal(await admin.activeConnections(), 0);

    // hot restart: the new epoch takes over the admin port and starts INITIALIZING; readiness must not flap
    const child = await envoy.hotRestart(1);
    const results: number[] = [];
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      results.push((await get(url)).status);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(results.length > 20);
    assert.deepEqual([...new Set(results)], [200], 'readiness never flapped during the hot restart');
    await eventually('new epoch on the admin port', async () => ((await admin.serverInfo()).restartEpoch === 1 ? true : undefined));
    // the old epoch exits on its own after --parent-shutdown-time-s
    assert.equal(await Promise.race([envoy.exited, new Promise((r) => setTimeout(() => r('still running'), 8000))]), 0);

    // drain (graceful, inbound only), then shutdown via the admin: Envoy exits
    await admin.drainListeners({ inboundOnly: false, graceful: true, skipExit: true });
    // Envoy drains (immediate strategy, as pilot-agent runs it): responses now close their connection
    const drained = await get(`http://127.0.0.1:${envoy.listenerPort}/`);
    assert.equal(drained.body, 'hi');
    assert.equal(drained.headers['connection'], 'close');
    assert.ok((await admin.getStats('^http\\.s\\.downstream_cx_drain_close$')).get('http.s.downstream_cx_drain_close')! >= 1);
    assert.equal(child.proc.exitCode, null);
    status.setShuttingDown('received signal: terminated');
    const r = await get(url);
    assert.equal(r.status, 503);
    assert.ok(lines.some((l) => l.includes('Envoy proxy is NOT ready: server is terminated: received signal: terminated')));
    await admin.quitquitquit();
    assert.equal(await Promise.race([child.exited, new Promise((r) => setTimeout(() => r('still running'), 8000))]), 0);
  });
});
