import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  configDetail,
  configReason,
  notReadyText,
  parseUpdateStats,
  READY_STATS_FILTER,
  ReadinessProbe,
  serverStateReason,
  UPDATE_STATS_FILTER,
} from './readiness.js';

const stats = (cdsS: number, cdsR: number, ldsS: number, ldsR: number): string =>
  `cluster_manager.cds.update_rejected: ${cdsR}\ncluster_manager.cds.update_success: ${cdsS}\n` +
  `listener_manager.lds.update_rejected: ${ldsR}\nlistener_manager.lds.update_success: ${ldsS}\n`;

void test('configReason: the three pilot-agent messages, with the stats summary', () => {
  assert.equal(
    configReason(parseUpdateStats('')),
    'config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected',
  );
  assert.equal(
    configReason(parseUpdateStats(stats(1, 0, 0, 2))),
    'config received from XDS server, but was rejected: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 2 rejected',
  );
  assert.equal(
    configReason(parseUpdateStats(stats(0, 0, 1, 0))),
    'config not fully received from XDS server: cds updates: 0 successful, 0 rejected; lds updates: 1 successful, 0 rejected',
  );
  assert.equal(configReason(parseUpdateStats(stats(2, 1, 1, 1))), undefined);
});

void test('serverStateReason: missing stats, non-LIVE states, workers', () => {
  assert.match(serverStateReason('listener_manager.workers_started: 1\n')!, /^failed to get readiness stats: server\.state is not yet updated/);
  assert.match(serverStateReason('server.state: 0\n')!, /listener_manager\.workers_started is not yet updated: server\.state: 0$/);
  assert.equal(serverStateReason('server.state: 3\nlistener_manager.workers_started: 0\n'), 'server is not live, current state is: INITIALIZING');
  assert.equal(serverStateReason('server.state: 1\nlistener_manager.workers_started: 1\n'), 'server is not live, current state is: DRAINING');
  assert.equal(serverStateReason('server.state: 2\nlistener_manager.workers_started: 0\n'), 'server is not live, current state is: PRE_INITIALIZING');
  assert.equal(serverStateReason('server.state: 7\nlistener_manager.workers_started: 0\n'), 'server is not live, current state is: UNKNOWN');
  assert.equal(serverStateReason('server.state: 0\nlistener_manager.workers_started: 0\n'), 'workers have not yet started');
  assert.equal(serverStateReason('listener_manager.workers_started: 1\nserver.state: 0\n'), undefined);
});

/** A scripted admin: answers per filter from mutable fields; counts calls. */
function scripted() {
  const s = {
    update: stats(0, 0, 0, 0),
    ready: 'server.state: 0\nlistener_manager.workers_started: 1\n',
    fail: undefined as string | undefined,
    calls: [] as string[],
    admin: {
      statsText: async (filter?: string, opts?: { timeoutMs?: number; usedOnly?: boolean }): Promise<string> => {
        s.calls.push(`${filter}|${opts?.timeoutMs}|${opts?.usedOnly}`);
        if (s.fail) throw new Error(s.fail);
        if (filter === UPDATE_STATS_FILTER) return s.update;
        if (filter === READY_STATS_FILTER) return s.ready;
        throw new Error(`unexpected filter ${filter}`);
      },
    },
  };
  return s;
}

void test('probe: latches config and state, then survives a new epoch that is INITIALIZING (hot restart)', async () => {
  const s = scripted();
  let firstReady = 0;
  const p = new ReadinessProbe({ admin: s.admin, onFirstReady: () => firstReady++ });
  assert.match((await p.check()).reason!, /^config not received/);
  s.update = stats(1, 0, 1, 0);
  s.ready = 'server.state: 3\nlistener_manager.workers_started: 0\n';
  assert.deepEqual(await p.check(), {
    ready: false,
    reason: 'server is not live, current state is: INITIALIZING',
    blockers: [{ check: 'envoy', reason: 'server is not live, current state is: INITIALIZING (Envoy is not LIVE yet)' }],
  });
  s.ready = 'server.state: 0\nlistener_manager.workers_started: 1\n';
  assert.deepEqual(await p.check(), { ready: true });
  assert.equal(firstReady, 1);
  assert.ok(p.latched);
  // the timeouts pilot-agent uses: 1s for update stats, 3s for readiness stats; always usedonly
  assert.deepEqual(new Set(s.calls), new Set([`${UPDATE_STATS_FILTER}|1000|true`, `${READY_STATS_FILTER}|3000|true`]));
  // hot restart: the shared admin now answers for a new epoch still initialising, with zero counters
  s.update = stats(0, 0, 0, 0);
  s.ready = 'server.state: 3\nlistener_manager.workers_started: 0\n';
  const before = s.calls.length;
  assert.deepEqual(await p.check(), { ready: true });
  assert.equal(s.calls.length, before, 'latched: Envoy is not asked again');
  // even an unreachable admin does not flap a latched probe
  s.fail = 'connection refused';
  assert.deepEqual(await p.check(), { ready: true });
  assert.equal(firstReady, 1);
});

void test('probe: shutdown turns it unready at once, even when latched', async () => {
  const s = scripted();
  s.update = stats(1, 0, 1, 0);
  const p = new ReadinessProbe({ admin: s.admin });
  assert.equal((await p.check()).ready, true);
  p.setShuttingDown('received signal: terminated');
  p.setShuttingDown('second cause is ignored');
  assert.equal((await p.check()).reason, 'server is terminated: received signal: terminated');
  assert.ok(p.shuttingDown);
});

void test('probe: admin errors are reasons; reset() forgets the latches (crash restart)', async () => {
  const s = scripted();
  s.update = stats(1, 0, 1, 0);
  const p = new ReadinessProbe({ admin: s.admin });
  s.fail = 'GET http://127.0.0.1:15000/stats: connect ECONNREFUSED';
  assert.deepEqual(await p.check(), {
    ready: false,
    reason: 'GET http://127.0.0.1:15000/stats: connect ECONNREFUSED',
    blockers: [{ check: 'envoy', reason: 'GET http://127.0.0.1:15000/stats: connect ECONNREFUSED (Envoy is not started: its admin port does not answer)' }],
  });
  s.fail = undefined;
  assert.equal((await p.check()).ready, true);
  p.reset();
  s.update = stats(0, 0, 0, 0);
  assert.match((await p.check()).reason!, /^config not received/);
});

void test('probe: the readiness-stats fetch error is prefixed like pilot-agent', async () => {
  const s = scripted();
  s.update = stats(1, 0, 1, 0);
  const admin = {
    statsText: async (filter?: string) => {
      if (filter === UPDATE_STATS_FILTER) return s.update;
      throw new Error('timed out after 3000ms');
    },
  };
  const p = new ReadinessProbe({ admin });
  assert.equal((await p.check()).reason, 'failed to get readiness stats: timed out after 3000ms');
});

void test('probe: extra checks run after Envoy, in order; throwing counts as a reason', async () => {
  const s = scripted();
  s.update = stats(1, 0, 1, 0);
  const order: string[] = [];
  let grpcReady = false;
  const p = new ReadinessProbe({
    admin: s.admin,
    checks: [
      () => {
        order.push('grpc');
        return grpcReady ? undefined : 'grpc bootstrap file missing';
      },
    ],
  });
  p.addCheck(async () => {
    order.push('dns');
    throw new Error('NDS not received');
  });
  // every check runs, so that every blocker is named; the first is pilot-agent's single reason
  assert.deepEqual(await p.check(), {
    ready: false,
    reason: 'grpc bootstrap file missing',
    blockers: [
      { check: 'check-1', reason: 'grpc bootstrap file missing' },
      { check: 'check-2', reason: 'NDS not received' },
    ],
  });
  grpcReady = true;
  assert.deepEqual(await p.check(), { ready: false, reason: 'NDS not received', blockers: [{ check: 'check-2', reason: 'NDS not received' }] });
  assert.deepEqual(order, ['grpc', 'dns', 'grpc', 'dns']);
});

void test('probe: noEnvoy checks only the extra checks and shutdown', async () => {
  const p = new ReadinessProbe({ noEnvoy: true });
  assert.deepEqual(await p.check(), { ready: true });
  p.setShuttingDown('bye');
  assert.deepEqual(await p.check(), { ready: false, reason: 'server is terminated: bye', blockers: [{ check: 'envoy', reason: 'server is terminated: bye' }] });
});

void test('probe: named checks form a registry (a name registered again replaces the check); the text lists every blocker', async () => {
  const p = new ReadinessProbe({ noEnvoy: true, checks: [{ name: 'grpc-bootstrap', check: () => undefined }] });
  p.addCheck({ name: 'dns-table', check: () => 'DNS table not yet received' });
  p.addCheck({ name: 'workload-certificate', check: () => 'workload certificate requested by Envoy but not yet issued by the CA' });
  assert.deepEqual(p.checkNames, ['envoy', 'grpc-bootstrap', 'dns-table', 'workload-certificate']);
  const r = await p.check();
  assert.equal(r.reason, 'DNS table not yet received');
  assert.equal(
    notReadyText(r),
    'not ready: dns-table: DNS table not yet received\nnot ready: workload-certificate: workload certificate requested by Envoy but not yet issued by the CA',
  );
  p.addCheck({ name: 'dns-table', check: () => undefined });
  assert.equal((await p.check()).blockers?.length, 1);
});

void test('probe: CDS/LDS not accepted names the missing types and the last NACK, keeping pilot-agent\'s reason', async () => {
  const s = scripted();
  s.update = stats(1, 0, 0, 2);
  const p = new ReadinessProbe({ admin: s.admin, lastNacks: () => ({ lds: 'Error adding/updating listener(s) x: bad', cds: 'old CDS error' }) });
  const r = await p.check();
  assert.equal(r.reason, 'config received from XDS server, but was rejected: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 2 rejected');
  assert.equal(r.blockers?.[0]?.reason, `${r.reason} (LDS not yet accepted by Envoy; last LDS NACK: Error adding/updating listener(s) x: bad)`);
  assert.equal(configDetail({ cdsSuccess: 0, cdsRejected: 0, ldsSuccess: 0, ldsRejected: 0 }), 'CDS and LDS not yet accepted by Envoy');
});
