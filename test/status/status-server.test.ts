// The status server over HTTP, with a fake Envoy admin, a fake Envoy :15090 and a fake app metrics endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import type { IncomingHttpHeaders } from 'node:http';
import { createEnvoyAdmin } from '../../src/envoy/admin.js';
import { ConfigError } from '../../src/lib/errors.js';
import { memoryLogger } from '../../src/lib/log.js';
import { createAgentMetrics, type AgentMetrics } from '../../src/lib/metrics.js';
import { createStatusServer, type StatusServer, type StatusServerDeps } from '../../src/status/server.js';
import { get, localServer, type LocalServer } from './fixtures.js';
import { connect } from 'node:net';

/** A request with the target exactly as given (Node's client would normalise it). */
function rawGet(base: string, target: string): Promise<{ status: number }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname);
    let data = '';
    s.on('error', reject);
    s.on('connect', () => s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    s.on('data', (c: Buffer) => (data += c.toString('latin1')));
    s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0) }));
  });
}

const UPDATE_OK =
  'cluster_manager.cds.update_rejected: 0\ncluster_manager.cds.update_success: 1\n' +
  'listener_manager.lds.update_rejected: 0\nlistener_manager.lds.update_success: 1\n';

/** A fake Envoy admin whose answers the test changes. */
async function fakeAdmin() {
  const state = {
    update: '',
    ready: 'listener_manager.workers_started: 1\nserver.state: 0\n',
    statsCalls: 0,
  };
  const srv = await localServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    if (u.pathname === '/stats') {
      state.statsCalls++;
      const filter = u.searchParams.get('filter') ?? '';
      assert.ok(u.searchParams.has('usedonly'));
      res.end(filter.includes('update_success') ? state.update : state.ready);
    } else if (u.pathname === '/server_info') {
      res.end(JSON.stringify({ state: 'LIVE', version: 'fake/1.40.0', command_line_options: { restart_epoch: 3 } }));
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  return { state, srv };
}

interface Ctx {
  status: StatusServer;
  base: string;
  lines: string[];
  metrics: AgentMetrics;
  calls: string[];
}

async function withStatus(overrides: Partial<StatusServerDeps>, fn: (c: Ctx) => Promise<void>): Promise<void> {
  const { log, lines } = memoryLogger('default:debug');
  const metrics = createAgentMetrics({ processMetrics: false });
  const calls: string[] = [];
  const status = createStatusServer({
    log,
    metrics,
    statusPort: 0,
    onQuit: (cause) => calls.push(`quit:${cause}`),
    onDrain: () => calls.push('drain'),
    onRestart: async () => {
      calls.push('restart');
      return 4;
    },
    getEnvoyStatus: () => ({ epoch: 3, pid: 4242, state: 'running', restarts: 3 }),
    getXdsStatus: () => ({ upstream: 'connected', streams: 1 }),
    processStartMs: Date.now() - 2500,
    ...overrides,
  });
  await status.start();
  try {
    await fn({ status, base: `http://127.0.0.1:${status.port()}`, lines, metrics, calls });
  } finally {
    await status.close();
  }
}

void test('/healthz/ready: reasons, latch, startup metric, extra check, terminated', async () => {
  const { state, srv } = await fakeAdmin();
  let bootstrapPresent = false;
  try {
    await withStatus(
      {
        admin: createEnvoyAdmin({ port: srv.port }),
        readinessChecks: [() => (bootstrapPresent ? undefined : 'grpc bootstrap file does not exist')],
      },
      async ({ status, base, lines, metrics }) => {
        const ready = (): Promise<number> => get(`${base}/healthz/ready`).then((r) => r.status);
        let r = await get(`${base}/healthz/ready`);
        assert.equal(r.status, 503);
        // pilot-agent's body is empty; ours names every blocker, Envoy's first
        assert.equal(
          r.body,
          'not ready: envoy: config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected (CDS and LDS not yet accepted by Envoy)\n' +
            'not ready: check-1: grpc bootstrap file does not exist\n',
        );
        assert.ok(lines.some((l) => /\twarn\tEnvoy proxy is NOT ready: config not received from XDS server \(is Istiod running\?\): cds updates: 0 successful/.test(l)));

        state.update = UPDATE_OK.replace('lds.update_success: 1', 'lds.update_success: 0').replace('lds.update_rejected: 0', 'lds.update_rejected: 1');
        assert.equal(await ready(), 503);
        assert.match(lines.at(-1)!, /config received from XDS server, but was rejected: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected/);

        state.update = UPDATE_OK;
        state.ready = 'listener_manager.workers_started: 0\nserver.state: 2\n';
        assert.equal(await ready(), 503);
        assert.match(lines.at(-1)!, /Envoy proxy is NOT ready: server is not live, current state is: PRE_INITIALIZING/);

        state.ready = 'listener_manager.workers_started: 0\nserver.state: 0\n';
        assert.equal(await ready(), 503);
        assert.match(lines.at(-1)!, /workers have not yet started/);

        state.ready = 'listener_manager.workers_started: 1\nserver.state: 0\n';
        assert.equal(await ready(), 503);
        assert.match(lines.at(-1)!, /Envoy proxy is NOT ready: grpc bootstrap file does not exist/);
        bootstrapPresent = true;
        r = await get(`${base}/healthz/ready`);
        assert.equal(r.status, 200);
        assert.equal(r.body, '');
        assert.equal(await ready(), 200);
        assert.equal(lines.filter((l) => l.includes('Envoy proxy is ready')).length, 1, 'logged once');
        assert.match(lines.find((l) => l.includes('Readiness succeeded in'))!, /Readiness succeeded in 2\.\d+s/);
        const startup = (await metrics.startupDurationSeconds.get()).values[0]!.value;
        assert.ok(startup >= 2.5 && startup < 60, String(startup));

        // a new epoch (hot restart) reports INITIALIZING with zero counters: still ready, Envoy not even asked
        state.update = '';
        state.ready = 'listener_manager.workers_started: 0\nserver.state: 3\n';
        const calls = state.statsCalls;
        assert.equal(await ready(), 200);
        assert.equal(state.statsCalls, calls);
        assert.deepEqual(await status.readiness(), { ready: true });

        status.setShuttingDown('received signal: terminated');
        assert.equal(await ready(), 503);
        assert.match(lines.at(-1)!, /Envoy proxy is NOT ready: server is terminated: received signal: terminated/);
        assert.equal((await status.readiness()).reason, 'server is terminated: received signal: terminated');
      },
    );
  } finally {
    await srv.close();
  }
});

void test('/healthz/ready with the admin down: 503 naming the admin URL', async () => {
  const { srv } = await fakeAdmin();
  const port = srv.port;
  await srv.close();
  await withStatus({ admin: createEnvoyAdmin({ port }) }, async ({ base, lines }) => {
    assert.equal((await get(`${base}/healthz/ready`)).status, 503);
    assert.match(lines.at(-1)!, new RegExp(`Envoy proxy is NOT ready: GET http://127\\.0\\.0\\.1:${port}/stats\\?usedonly&filter=.*ECONNREFUSED`));
  });
});

void test('loopback-only admin endpoints: methods, callbacks, 403 for remote peers, 404 otherwise', async () => {
  await withStatus({ noEnvoy: true }, async ({ base, calls, status }) => {
    let r = await get(`${base}/quitquitquit`, { method: 'POST' });
    assert.deepEqual([r.status, r.body], [200, 'OK']);
    r = await get(`${base}/drain`, { method: 'POST' });
    assert.deepEqual([r.status, r.body], [200, 'OK']);
    r = await get(`${base}/quitquitquit`);
    assert.deepEqual([r.status, r.body], [405, 'Method Not Allowed\n']);
    r = await get(`${base}/drain`, { method: 'PUT' });
    assert.equal(r.status, 405);
    r = await get(`${base}/restart`, { method: 'POST' });
    assert.deepEqual([r.status, JSON.parse(r.body)], [200, { epoch: 4 }]);
    assert.equal((await get(`${base}/restart`)).status, 405);
    assert.deepEqual(calls, ['quit:/quitquitquit called', 'drain', 'restart']);

    r = await get(`${base}/nope`);
    assert.deepEqual([r.status, r.body], [404, '404 page not found\n']);
    // a target that is not a URL relative to the server (`//`) is a path like any other, never a 500
    for (const target of ['//', '//healthz/ready', '/%zz']) {
      assert.equal((await rawGet(base, target)).status, 404, target);
    }

    // a peer that is not loopback: connect to 127.0.0.1 from one of this host's own non-loopback addresses
    const own = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && !i.internal && i.family === 'IPv4');
    assert.ok(own, 'this test needs one non-loopback IPv4 address on the host');
    const from = { localAddress: own.address };
    for (const [method, path] of [
      ['POST', '/quitquitquit'],
      ['POST', '/drain'],
      ['POST', '/restart'],
      ['GET', '/debug/status'],
      ['GET', '/debug/ndsz'],
    ] as const) {
      r = await get(`${base}${path}`, { method, ...from });
      assert.deepEqual([r.status, r.body], [403, 'Only requests from localhost are allowed\n'], path);
    }
    assert.equal(calls.length, 3, 'no callback ran for remote peers');
    // readiness and metrics stay open to remote peers (kubelet, Prometheus)
    assert.equal((await get(`${base}/healthz/ready`, from)).status, 200);
    assert.equal((await get(`${base}/stats/prometheus`, from)).status, 200);
    status.setShuttingDown('x');
  });
});

void test('METRICS_LOCALHOST_ACCESS_ONLY closes merged metrics to remote peers', async () => {
  await withStatus({ noEnvoy: true, metricsLocalhostOnly: true }, async ({ base }) => {
    const own = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && !i.internal && i.family === 'IPv4');
    assert.ok(own);
    assert.equal((await get(`${base}/stats/prometheus`, { localAddress: own.address })).status, 403);
    assert.equal((await get(`${base}/stats/prometheus`)).status, 200);
  });
});

void test('/restart failures and absence; /debug/status view', async () => {
  const { state, srv } = await fakeAdmin();
  state.update = UPDATE_OK;
  try {
    await withStatus(
      {
        admin: createEnvoyAdmin({ port: srv.port }),
        onRestart: () => Promise.reject(new Error('hot restart is disabled (--disable-hot-restart)')),
      },
      async ({ base }) => {
        let r = await get(`${base}/restart`, { method: 'POST' });
        assert.deepEqual([r.status, r.body], [503, 'restart failed: hot restart is disabled (--disable-hot-restart)\n']);
        r = await get(`${base}/debug/status`);
        assert.equal(r.status, 200);
        assert.match(String(r.headers['content-type']), /^application\/json/);
        const body = JSON.parse(r.body) as Record<string, any>;
        assert.equal(body['agent'].name, 'meshagent');
        assert.equal(body['agent'].istioVersion, '1.30.3');
        assert.ok(body['agent'].uptimeSeconds >= 2.5);
        assert.deepEqual(body['envoy'].process, { epoch: 3, pid: 4242, state: 'running', restarts: 3 });
        assert.equal(body['envoy'].server.state, 'LIVE');
        assert.equal(body['envoy'].server.restartEpoch, 3);
        assert.deepEqual(body['readiness'], { ready: true });
        assert.deepEqual(body['xds'], { upstream: 'connected', streams: 1 });
      },
    );
  } finally {
    await srv.close();
  }
  await withStatus({ noEnvoy: true, onRestart: undefined }, async ({ base }) => {
    assert.equal((await get(`${base}/restart`, { method: 'POST' })).status, 501);
  });
});

void test('/debug/ndsz: 404 {} without a DNS table (capture off, or none received yet), the table as JSON once there is one', async () => {
  await withStatus({ noEnvoy: true }, async ({ base }) => {
    const r = await get(`${base}/debug/ndsz`);
    assert.deepEqual([r.status, r.body], [404, '{}']);
    assert.match(String(r.headers['content-type']), /^application\/json/);
  });
  let table: unknown;
  await withStatus({ noEnvoy: true, getDnsTable: () => table }, async ({ base }) => {
    assert.equal((await get(`${base}/debug/ndsz`)).status, 404);
    table = { table: { 'a.example.com': { ips: ['10.0.0.1'], registry: 'External' } } };
    const r = await get(`${base}/debug/ndsz`);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), table);
  });
});

interface Upstream {
  srv: LocalServer;
  seen: { url: string; headers: IncomingHttpHeaders }[];
}

async function upstream(contentType: (accept: string) => string, body: (accept: string) => string): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const srv = await localServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    const accept = String(req.headers.accept ?? '');
    res.setHeader('Content-Type', contentType(accept));
    res.end(body(accept));
  });
  return { srv, seen };
}

const ENVOY_TEXT = '# TYPE envoy_cluster_upstream_cx_total counter\nenvoy_cluster_upstream_cx_total{envoy_cluster_name="xds-grpc"} 1\n';
const APP_OM = '# TYPE app_requests counter\napp_requests_total 7.0\n# EOF\n';
const APP_TEXT = '# TYPE app_requests_total counter\napp_requests_total 7\n';

void test('merged metrics: agent, then Envoy, then app last; headers and query forwarded; one source down', async () => {
  const envoy = await upstream(
    () => 'text/plain; version=0.0.4',
    () => ENVOY_TEXT,
  );
  const app = await upstream(
    (a) => (a.startsWith('application/openmetrics-text') ? 'application/openmetrics-text; version=1.0.0; charset=utf-8' : 'text/plain; version=0.0.4'),
    (a) => (a.startsWith('application/openmetrics-text') ? APP_OM : APP_TEXT),
  );
  try {
    await withStatus(
      {
        noEnvoy: false,
        envoyPrometheusPort: envoy.srv.port,
        prometheusAnnotations: JSON.stringify({ scrape: 'true', port: String(app.srv.port), path: '/app/metrics' }),
      },
      async ({ base, metrics, lines }) => {
        metrics.xdsProxyRequests.inc(3);
        const accept =
          'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,' +
          'application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1';
        let r = await get(`${base}/stats/prometheus?usedonly&filter=x`, {
          headers: { accept, 'user-agent': 'Prometheus/3.0', 'x-prometheus-scrape-timeout-seconds': '5' },
        });
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'application/openmetrics-text; version=1.0.0; charset=utf-8');
        const iAgent = r.body.indexOf('istio_agent_xds_proxy_requests 3');
        const iEnvoy = r.body.indexOf(ENVOY_TEXT);
        const iApp = r.body.indexOf(APP_OM);
        assert.ok(iAgent >= 0 && iEnvoy > iAgent && iApp > iEnvoy, r.body);
        assert.ok(r.body.endsWith('# EOF\n'), 'app output (with its # EOF) is last');
        assert.match(r.body, /istio_agent_scrapes_total 1\n/);
        // what the upstreams saw
        assert.equal(envoy.seen[0]!.url, '/stats/prometheus?usedonly&filter=x');
        assert.equal(envoy.seen[0]!.headers.accept, 'text/plain; q=0.1; version=0.0.4');
        assert.equal(envoy.seen[0]!.headers['user-agent'], 'Prometheus/3.0');
        assert.equal(envoy.seen[0]!.headers['x-prometheus-scrape-timeout-seconds'], '5');
        assert.equal(app.seen[0]!.url, '/app/metrics');
        assert.equal(app.seen[0]!.headers.accept, 'application/openmetrics-text; q=0.2; version=1.0.0,text/plain; q=0.1; version=0.0.4');

        // /metrics is the same endpoint; a plain scrape gets text 0.0.4 from everyone
        r = await get(`${base}/metrics`);
        assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
        assert.ok(r.body.includes(ENVOY_TEXT) && r.body.endsWith(APP_TEXT));

        // gzip when accepted
        r = await get(`${base}/stats/prometheus`, { headers: { 'accept-encoding': 'gzip' } });
        assert.equal(r.headers['content-encoding'], 'gzip');
        assert.ok(r.body.includes(ENVOY_TEXT) && r.body.includes('istio_agent_scrapes_total 3'));

        // Envoy down: agent and app still served; the failure is logged and counted
        await envoy.srv.close();
        r = await get(`${base}/stats/prometheus`);
        assert.equal(r.status, 200);
        assert.ok(!r.body.includes(ENVOY_TEXT));
        assert.ok(r.body.endsWith(APP_TEXT));
        assert.match(r.body, /istio_agent_scrape_failures_total\{type="envoy"\} 1\n/);
        assert.ok(lines.some((l) => /\terror\tfailed scraping envoy metrics: error scraping http:\/\/localhost:\d+\/stats\/prometheus/.test(l)));

        // app down too: the agent's own metrics are still served
        await app.srv.close();
        r = await get(`${base}/stats/prometheus`);
        assert.equal(r.status, 200);
        assert.match(r.body, /istio_agent_scrape_failures_total\{type="application"\} 1\n/);
        assert.match(r.body, /istio_agent_scrapes_total 5\n/);
      },
    );
  } finally {
    await envoy.srv.close().catch(() => undefined);
    await app.srv.close().catch(() => undefined);
  }
});

void test('merged metrics: a non-200 answer counts as a failure; process metrics are prefixed', async () => {
  const bad = await localServer((_req, res) => {
    res.statusCode = 503;
    res.end('upstream-says-no');
  });
  const { log } = memoryLogger();
  const metrics = createAgentMetrics();
  const status = createStatusServer({ log, metrics, statusPort: 0, envoyPrometheusPort: bad.port, scrapeHost: '127.0.0.1' });
  await status.start();
  try {
    const r = await get(`http://127.0.0.1:${status.port()}/stats/prometheus`);
    assert.equal(r.status, 200);
    assert.ok(!r.body.includes('upstream-says-no'));
    assert.match(r.body, /istio_agent_scrape_failures_total\{type="envoy"\} 1/);
    assert.match(r.body, /^istio_agent_process_cpu_user_seconds_total /m);
    assert.match(r.body, /^istio_agent_process_start_time_seconds /m);
    // no series without the agent prefix comes from the agent registry
    const agentNames = r.body.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]!);
    assert.ok(agentNames.every((n) => n.startsWith('istio_agent_')), agentNames.filter((n) => !n.startsWith('istio_agent_')).join());
  } finally {
    await status.close();
    await bad.close();
  }
});

void test('bad ISTIO_KUBE_APP_PROBERS / ISTIO_PROMETHEUS_ANNOTATIONS are rejected at creation, naming the variable', () => {
  const { log } = memoryLogger();
  const metrics = createAgentMetrics({ processMetrics: false });
  assert.throws(
    () => createStatusServer({ log, metrics, statusPort: 15020, kubeAppProbers: '{"/app-health/app/livez": {"httpGet": {"port": "http"}}}' }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /env ISTIO_KUBE_APP_PROBERS: "\/app-health\/app\/livez" httpGet: the port must be int type/.test(e.message),
  );
  assert.throws(
    () => createStatusServer({ log, metrics, statusPort: 15020, kubeAppProbers: '{not json' }),
    (e: unknown) => e instanceof ConfigError && /ISTIO_KUBE_APP_PROBERS: failed to decode app prober JSON/.test(e.message),
  );
  assert.throws(
    () => createStatusServer({ log, metrics, statusPort: 15020, prometheusAnnotations: '{"scrape":"true","port":"15020"}' }),
    (e: unknown) => e instanceof ConfigError && /ISTIO_PROMETHEUS_ANNOTATIONS: invalid prometheus scrape configuration/.test(e.message),
  );
});

void test('listen failure is logged and the agent keeps going; close is bounded with lingering clients', async () => {
  const taken = await localServer((_req, _res) => {
    /* never answers: a lingering request */
  }, '0.0.0.0');
  try {
    const { log, lines } = memoryLogger();
    const status = createStatusServer({ log, metrics: createAgentMetrics({ processMetrics: false }), statusPort: taken.port, noEnvoy: true });
    await status.start();
    assert.equal(status.port(), undefined);
    assert.ok(lines.some((l) => /\terror\tError listening on status port: .*EADDRINUSE/.test(l)), lines.join(''));
    await status.close();
  } finally {
    await taken.close();
  }

  // a scrape hanging on a stuck upstream, plus an idle keep-alive client: close() still returns promptly
  const stuck = await localServer(() => undefined);
  const { log } = memoryLogger();
  const status = createStatusServer({ log, metrics: createAgentMetrics({ processMetrics: false }), statusPort: 0, envoyPrometheusPort: stuck.port, scrapeHost: '127.0.0.1' });
  await status.start();
  const hanging = get(`http://127.0.0.1:${status.port()}/stats/prometheus`, { timeoutMs: 10_000 }).then(
    (r) => r.status,
    () => 'aborted',
  );
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  await status.close();
  assert.ok(Date.now() - t0 < 3000, `close took ${Date.now() - t0}ms`);
  assert.ok(['aborted', 200].includes((await hanging) as never));
  await stuck.close();
});
