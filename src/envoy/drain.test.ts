import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drainForTermination, type DrainAdmin } from './drain.js';
import { memoryLogger } from '../lib/log.js';

function admin(conns: Array<number | Error>): DrainAdmin & { drains: unknown[] } {
  const drains: unknown[] = [];
  return {
    drains,
    async drainListeners(o) {
      drains.push(o);
    },
    async activeConnections() {
      const v = conns.length > 1 ? conns.shift()! : conns[0]!;
      if (v instanceof Error) throw v;
      return v;
    },
  };
}
const never = () => new Promise<never>(() => {});

test('default: drains inbound listeners gracefully, then waits terminationDrainDuration', async () => {
  const a = admin([0]);
  const { log, lines } = memoryLogger();
  const t0 = Date.now();
  const r = await drainForTermination({ admin: a, envoyExited: never, log, sidecar: true, terminationDrainMs: 300, minDrainMs: 0, exitOnZeroActiveConnections: false, alreadyDrained: false });
  assert.equal(r, 'drain-complete');
  assert.ok(Date.now() - t0 >= 290);
  assert.deepEqual(a.drains, [{ inboundOnly: true, graceful: true, skipExit: false }]);
  assert.ok(lines.some((l) => l.includes('Graceful termination period is 0.3s')));
});

test('the wait ends as soon as Envoy exits', async () => {
  const { log } = memoryLogger();
  const t0 = Date.now();
  const r = await drainForTermination({ admin: admin([0]), envoyExited: () => new Promise((res) => setTimeout(res, 50)), log, sidecar: false, terminationDrainMs: 10_000, minDrainMs: 0, exitOnZeroActiveConnections: false, alreadyDrained: false });
  assert.equal(r, 'envoy-exited');
  assert.ok(Date.now() - t0 < 2000);
});

test('EXIT_ON_ZERO_ACTIVE_CONNECTIONS polls until zero, tolerating stats errors', async () => {
  const a = admin([3, new Error('connection refused'), 1, 0]);
  const { log, lines } = memoryLogger();
  const r = await drainForTermination({ admin: a, envoyExited: never, log, sidecar: true, terminationDrainMs: 60_000, minDrainMs: 20, exitOnZeroActiveConnections: true, alreadyDrained: false, pollIntervalMs: 10 });
  assert.equal(r, 'drain-complete');
  assert.ok(lines.some((l) => l.includes('There are still 3 active connections')));
  assert.ok(lines.some((l) => l.includes('Retrying (1 attempt)')));
  assert.ok(lines.some((l) => l.includes('There are no more active connections')));
});

test('five consecutive stats failures end the drain; already-drained skips it', async () => {
  const { log } = memoryLogger();
  const r = await drainForTermination({ admin: admin([new Error('x')]), envoyExited: never, log, sidecar: true, terminationDrainMs: 0, minDrainMs: 0, exitOnZeroActiveConnections: true, alreadyDrained: false, pollIntervalMs: 5 });
  assert.equal(r, 'drain-complete');
  const a = admin([0]);
  assert.equal(await drainForTermination({ admin: a, envoyExited: never, log, sidecar: true, terminationDrainMs: 10_000, minDrainMs: 0, exitOnZeroActiveConnections: false, alreadyDrained: true }), 'skipped');
  assert.equal(a.drains.length, 0);
});
