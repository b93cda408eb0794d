// Merged-metrics scrapes whose client goes away (Prometheus closes the connection on every scrape timeout):
// every stream (gzip, response, upstream scrapes) must be released; resource counts return to their baseline.
// Counts, not times, are asserted; the RSS seen is reported as a test diagnostic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { memoryLogger } from '../../src/lib/log.js';
import { createAgentMetrics } from '../../src/lib/metrics.js';
import { createStatusServer, type StatusServer } from '../../src/status/server.js';
import { eventually, get, localServer, type LocalServer } from './fixtures.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function promText(bytes: number, seed: number): string {
  const lines: string[] = [];
  let n = 0;
  let x = seed >>> 0 || 1;
  while (n < bytes) {
    // xorshift: values that gzip cannot shrink to nothing
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const l = `envoy_cluster_upstream_rq{envoy_cluster_name="c${(x >>> 0) % 997}"} ${(x >>> 0) / 7}\n`;
    lines.push(l);
    n += l.length;
  }
  return lines.join('');
}

const HEAD = promText(512 * 1024, 1);
const REST_BIG = promText(1024 * 1024, 2);
const REST_SMALL = promText(64 * 1024, 3);

interface FakeEnvoy {
  srv: LocalServer;
  open: () => number;
  requests: () => number;
  /** The next request's body tail is held until this is called. */
  hold: () => () => void;
}

/** A fake Envoy :15090 that sends HEAD at once and the rest when released (at once unless held). */
async function fakeEnvoy(rest: () => string): Promise<FakeEnvoy> {
  let open = 0;
  let requests = 0;
  let held: Promise<void> | undefined;
  const srv = await localServer((req, res) => {
    requests++;
    res.on('error', () => undefined);
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.write(HEAD);
    const gate = held ?? Promise.resolve();
    held = undefined;
    void gate.then(() => res.end(rest()));
  });
  srv.server.on('connection', (s: Socket) => {
    open++;
    s.once('close', () => open--);
  });
  return {
    srv,
    open: () => open,
    requests: () => requests,
    hold: () => {
      let release!: () => void;
      held = new Promise<void>((r) => (release = r));
      return release;
    },
  };
}

/** Sends a gzip scrape over a raw socket, waits for the first body bytes, then goes away. */
function disconnectingScrape(port: number, path = '/stats/prometheus'): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = 0;
    s.on('error', reject);
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nUser-Agent: Prometheus/3.0\r\n\r\n`));
    s.on('data', (c: Buffer) => {
      got += c.length;
      // past the response head: some of the gzip body has arrived
      if (got > 4096) {
        s.destroy();
        resolve();
      }
    });
    s.on('close', () => resolve());
  });
}

function sockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

/** The status server holds no connection, request or stream (a server without `inflight` counts as busy). */
function idle(status: StatusServer): boolean {
  const f = (status as Partial<StatusServer>).inflight?.();
  return f !== undefined && f.connections === 0 && f.requests === 0 && f.streams === 0;
}

function rssMiB(): number {
  gc();
  gc();
  return Math.round((process.memoryUsage().rss / 1024 / 1024) * 10) / 10;
}

async function withMergeServer(envoy: FakeEnvoy, fn: (status: StatusServer, port: number) => Promise<void>): Promise<void> {
  const { log } = memoryLogger('default:info');
  const status = createStatusServer({
    log,
    metrics: createAgentMetrics({ processMetrics: false }),
    statusPort: 0,
    listenHost: '127.0.0.1',
    envoyPrometheusPort: envoy.srv.port,
    scrapeHost: '127.0.0.1',
  });
  await status.start();
  try {
    await fn(status, status.port()!);
  } finally {
    await status.close();
  }
}

void test('300 gzip scrapes that disconnect mid-body, then 300 normal ones: sockets, streams and upstream scrapes return to baseline', async (t) => {
  let rest = REST_BIG;
  const envoy = await fakeEnvoy(() => rest);
  try {
    await withMergeServer(envoy, async (status, port) => {
      // warm up, then the baseline
      const warm = await get(`http://127.0.0.1:${port}/stats/prometheus`, { headers: { 'accept-encoding': 'gzip' } });
      assert.equal(warm.status, 200);
      await eventually('warm-up scrape released', async () => (envoy.open() === 0 ? true : undefined));
      const baseSockets = sockets();
      const rss0 = rssMiB();

      for (let i = 0; i < 300; i++) {
        const release = envoy.hold();
        await disconnectingScrape(port);
        release();
      }
      assert.equal(envoy.requests(), 301);
      const rss1 = rssMiB();
      t.diagnostic(`RSS MiB: baseline ${rss0}, after 300 gzip scrapes that disconnected mid-body ${rss1}`);
      await eventually(
        'upstream scrapes of gone clients to be aborted',
        async () => (envoy.open() === 0 && sockets() <= baseSockets && idle(status) ? true : undefined),
        10_000,
      ).catch((e: unknown) => {
        throw new Error(
          `${(e as Error).message}; upstream connections still open: ${envoy.open()}, sockets ${sockets()} (baseline ${baseSockets}), status server ${JSON.stringify(status.inflight?.())}`,
        );
      });
      const rss2 = rssMiB();

      rest = REST_SMALL;
      for (let i = 0; i < 300; i++) {
        const r = await get(`http://127.0.0.1:${port}/stats/prometheus`, { headers: { 'accept-encoding': 'gzip' } });
        assert.equal(r.status, 200);
        assert.ok(r.body.endsWith(REST_SMALL), 'the whole Envoy body is served');
      }
      await eventually('normal scrapes released', async () => (envoy.open() === 0 && sockets() <= baseSockets && idle(status) ? true : undefined), 10_000);
      const rss3 = rssMiB();
      t.diagnostic(`RSS MiB: once released ${rss2}, after 300 normal gzip scrapes ${rss3}`);
    });
  } finally {
    await envoy.srv.close();
  }
});

void test('a scrape whose client goes away before the upstreams answered aborts the upstream scrapes', async () => {
  let open = 0;
  let seen = 0;
  const stuck = await localServer(() => {
    seen++; // never answers
  });
  stuck.server.on('connection', (s: Socket) => {
    open++;
    s.once('close', () => open--);
  });
  try {
    const envoy = { srv: stuck, open: () => open, requests: () => seen, hold: () => () => undefined };
    await withMergeServer(envoy, async (status, port) => {
      const base = sockets();
      for (let i = 0; i < 20; i++) {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => undefined);
        s.write('GET /stats/prometheus HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n');
        await eventually('the upstream to see the scrape', async () => (seen > i ? true : undefined));
        s.destroy();
      }
      // the default scrape timeout is 30s: nothing may wait for it
      await eventually('upstream scrapes aborted', async () => (open === 0 && sockets() <= base && idle(status) ? true : undefined), 5000).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}: ${open} upstream connections open`);
      });
    });
  } finally {
    await stuck.close();
  }
});

void test('X-Prometheus-Scrape-Timeout-Seconds: any value serves metrics (floats as pilot-agent, bounded; bad values fall back)', async () => {
  const envoy = await fakeEnvoy(() => 'envoy_tail 1\n');
  try {
    await withMergeServer(envoy, async (_status, port) => {
      for (const v of ['16.1', '1e10', '10', '0.5', '1.7976931348623157e308', '+Inf', 'NaN', '-1', '0', 'soon', '0x1p4', '1_0']) {
        const r = await get(`http://127.0.0.1:${port}/stats/prometheus`, { headers: { 'x-prometheus-scrape-timeout-seconds': v } });
        assert.equal(r.status, 200, `timeout header ${JSON.stringify(v)}: ${r.body}`);
        assert.ok(r.body.includes('istio_agent_scrapes_total'), v);
        assert.ok(r.body.endsWith('envoy_tail 1\n'), `timeout header ${JSON.stringify(v)}: Envoy's metrics served`);
      }
    });
  } finally {
    await envoy.srv.close();
  }
});
