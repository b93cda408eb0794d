// Profiling and log levels on the status port (issue 8): a CPU profile for N seconds and a heap snapshot
// (node:inspector), per-scope log levels changed at run time (/logging and ControlZ's /scopej/ shape);
// bad input is refused with a message naming it; everything is loopback only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { request } from 'node:http';
import { memoryLogger } from '../../src/lib/log.js';
import { createAgentMetrics } from '../../src/lib/metrics.js';
import { createStatusServer } from '../../src/status/server.js';
import { profileSeconds } from '../../src/status/debug.js';

function call(url: string, method = 'GET', body?: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), type: String(res.headers['content-type'] ?? '') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

void test('status port: CPU profile, heap snapshot, log levels at run time; bad input refused; loopback only', async () => {
  const { log, lines } = memoryLogger('default:info');
  const xds = log.scope('xdsproxy');
  const status = createStatusServer({ log, metrics: createAgentMetrics({ processMetrics: false }), statusPort: 0, noEnvoy: true });
  await status.start();
  const base = `http://127.0.0.1:${status.port()}`;
  try {
    // log levels: list, change one scope, see the effect, ControlZ's shape
    const listed = JSON.parse((await call(`${base}/logging`)).body) as Record<string, string>;
    assert.equal(listed.default, 'info');
    assert.equal(listed.xdsproxy, 'info');
    assert.equal(xds.enabled('debug'), false);
    const set = await call(`${base}/logging?xdsproxy=debug`, 'POST');
    assert.equal(set.status, 200, set.body);
    assert.equal((JSON.parse(set.body) as Record<string, string>).xdsproxy, 'debug');
    assert.equal(xds.enabled('debug'), true);
    assert.equal(log.enabled('debug'), false, 'other scopes unchanged');
    xds.debug('now visible');
    assert.ok(lines.some((l) => l.includes('\tdebug\txdsproxy\tnow visible')));
    assert.match((await call(`${base}/logging?xdsproxy=loud`, 'POST')).body, /invalid level "loud" for "xdsproxy"/);
    assert.equal((await call(`${base}/logging`, 'POST')).status, 400);
    const scopes = JSON.parse((await call(`${base}/scopej/`)).body) as Array<{ name: string; output_level: string }>;
    assert.deepEqual(scopes.find((s) => s.name === 'xdsproxy'), { name: 'xdsproxy', description: '', output_level: 'debug', stack_trace_level: 'none', log_callers: false });
    const put = await call(`${base}/scopej/xdsproxy`, 'PUT', JSON.stringify({ output_level: 'warn' }));
    assert.equal(put.status, 200, put.body);
    assert.equal(xds.enabled('info'), false);
    assert.equal((await call(`${base}/scopej/xdsproxy`, 'PUT', '{')).status, 400);
    assert.equal((await call(`${base}/scopej/nosuchscope`)).status, 404);
    assert.equal((await call(`${base}/logging?level=error`, 'POST')).status, 200);
    assert.equal(log.enabled('warn'), false);
    assert.equal(xds.enabled('warn'), false);

    // CPU profile: a .cpuprofile of N seconds
    assert.deepEqual(profileSeconds(new URLSearchParams('')), 30);
    assert.ok('error' in (profileSeconds(new URLSearchParams('seconds=0')) as object));
    assert.equal((await call(`${base}/debug/pprof/profile?seconds=abc`)).status, 400);
    assert.equal((await call(`${base}/debug/pprof/profile?seconds=301`)).status, 400);
    const prof = await call(`${base}/debug/pprof/profile?seconds=1`);
    assert.equal(prof.status, 200);
    const p = JSON.parse(prof.body) as { nodes: unknown[]; startTime: number; endTime: number; samples: unknown[] };
    assert.ok(p.nodes.length > 0);
    assert.ok(p.endTime - p.startTime >= 900_000, 'about a second of profile (microseconds)');

    // heap snapshot
    const heap = await call(`${base}/debug/pprof/heap`);
    assert.equal(heap.status, 200);
    const snap = JSON.parse(heap.body) as { snapshot: { node_count: number } };
    assert.ok(snap.snapshot.node_count > 1000);

    // loopback only
    const other = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
    assert.ok(other, 'this test needs one non-loopback IPv4 address on the host');
    for (const path of ['/logging', '/scopej/', '/debug/pprof/heap', '/debug/pprof/profile?seconds=1', '/']) {
      const r = await call(`http://${other.address}:${status.port()}${path}`);
      assert.equal(r.status, 403, path);
    }
  } finally {
    await status.close();
  }
});
