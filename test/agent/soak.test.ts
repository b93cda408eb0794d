// Bounded memory (issue: every buffer that takes outside input has a limit): a soak of the agent's outside
// inputs, end to end with the real Envoy and the in-repo control plane, watching the agent process's RSS.
//   1,000 scrapes of :15020/stats/prometheus  a third plain, a third gzip, a third gzip the client destroys
//                                             after the first chunk (a Prometheus that gives up mid-body)
//   1,000 probe calls                         /app-health/app/readyz (HTTP app) and /app-health/grpc/livez
//                                             (gRPC health server), half each
//   1,000 xDS pushes                          a route change each (x-served-by: v<n>), every one ACKed by Envoy
// after a warm-up of 100 of each. VmRSS of the agent's pid is read after the warm-up (baseline), after each
// phase and after a short idle, with its open descriptors. Every request must succeed; memory bounds are
// generous (see MAX_PHASE_GROWTH) and nothing here is timed. The RSS figures are in BENCHMARKS.md (`soak`).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import type { ControlPlane } from '../controlplane/server.js';
import { httpGet } from '../helpers/http.js';
import { LISTENER_PORT, startMesh } from './harness.js';

const N = 1000;
const WARMUP = 100;
/** Requests in flight at once during the scrape and probe phases (as several scrapers and a kubelet would). */
const CONCURRENCY = 4;
const IDLE_MS = 3000;
const MiB = 1024 * 1024;
/**
 * Measured on a 2-core machine, Node.js 26: +15 MiB over the 1,000 scrapes, +8 MiB over the probes, under 1 MiB
 * for the pushes, +23 MiB in all. That step is V8 sizing its old generation, not memory kept (the live heap stays
 * at ~19 MiB). The young generation is held at its initial size (src/main.ts); without that it grows to its
 * maximum under the scrapes' allocation rate and an idle process keeps it: +68 MiB over the scrapes and +81 MiB
 * in all, over these bounds. The bounds leave room for a slower GC on a loaded machine and still catch a leak of
 * what a request buffers: each scrape's page (~55 KiB from Envoy, as much again merged: ~100 MiB over the phase)
 * or each cut scrape's gzip stream (~270 KiB of zlib state: ~90 MiB) breaks both.
 */
const MAX_PHASE_GROWTH = 56 * MiB;
const MAX_TOTAL_GROWTH = 72 * MiB;
/** Open descriptors may differ by a few (keep-alive connections, timers' handles), not by one per request. */
const MAX_FD_GROWTH = 16;

interface Mem {
  readonly rss: number;
  readonly hwm: number;
  /** Open file descriptors (sockets included). */
  readonly fds: number;
}

function memOf(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), fds: readdirSync(`/proc/${pid}/fd`).length };
}

const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

/** Runs fn(0..n-1) with `concurrency` workers. */
async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

// ---- scrapes

type ScrapeKind = 'plain' | 'gzip' | 'gzip-abort';
const SCRAPE_KINDS: readonly ScrapeKind[] = ['plain', 'gzip', 'gzip-abort'];

interface Scrape {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The decoded body (complete kinds only). */
  readonly body?: string;
  /** gzip-abort: the client destroyed the connection before the body's end. */
  readonly cutMidBody?: boolean;
}

function scrape(kind: ScrapeKind): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const headers = kind === 'plain' ? {} : { 'accept-encoding': 'gzip' };
    let settled = false;
    const done = (f: () => void): void => {
      if (!settled) {
        settled = true;
        f();
      }
    };
    const req = request({ host: '127.0.0.1', port: 15020, path: '/stats/prometheus', headers, agent: false, timeout: 60_000 }, (res) => {
      const base = { status: res.statusCode ?? 0, headers: res.headers };
      if (kind === 'gzip-abort') {
        res.once('data', () => {
          req.destroy();
          done(() => resolve({ ...base, cutMidBody: !res.complete }));
        });
        res.once('end', () => done(() => resolve({ ...base, cutMidBody: false })));
        res.on('error', () => undefined);
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => done(() => reject(e)));
      res.on('end', () =>
        done(() => {
          try {
            const raw = Buffer.concat(chunks);
            resolve({ ...base, body: (res.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8') });
          } catch (e) {
            reject(e as Error);
          }
        }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`scrape (${kind}) not answered within 60 s`)));
    req.on('error', (e) => done(() => reject(e)));
    req.end();
  });
}

/** Counts and the first few problems of a phase. */
class Tally {
  readonly ok = new Map<string, number>();
  readonly sent = new Map<string, number>();
  readonly problems: string[] = [];
  cutMidBody = 0;
  note(kind: string, good: boolean, problem?: string): void {
    this.sent.set(kind, (this.sent.get(kind) ?? 0) + 1);
    if (good) this.ok.set(kind, (this.ok.get(kind) ?? 0) + 1);
    else if (this.problems.length < 10) this.problems.push(`${kind}: ${problem ?? 'failed'}`);
  }
  text(): string {
    return [...this.sent].map(([k, n]) => `${k} ${this.ok.get(k) ?? 0}/${n}`).join(', ');
  }
}

async function scrapes(n: number, offset: number, tally: Tally): Promise<void> {
  await pool(n, CONCURRENCY, async (i) => {
    const kind = SCRAPE_KINDS[(offset + i) % SCRAPE_KINDS.length]!;
    let r: Scrape;
    try {
      r = await scrape(kind);
    } catch (e) {
      tally.note(kind, false, (e as Error).message);
      return;
    }
    if (kind === 'gzip-abort') {
      if (r.cutMidBody) tally.cutMidBody++;
      tally.note(kind, r.status === 200 && r.headers['content-encoding'] === 'gzip', `HTTP ${r.status} ${String(r.headers['content-encoding'])}`);
      return;
    }
    const body = r.body ?? '';
    const why: string[] = [];
    if (r.status !== 200) why.push(`HTTP ${r.status}`);
    if (kind === 'gzip' && r.headers['content-encoding'] !== 'gzip') why.push(`content-encoding ${String(r.headers['content-encoding'])}`);
    if (!/^istio_agent_\w+/m.test(body)) why.push('no istio_agent_ metrics');
    if (!/^envoy_server_live(\{[^}]*\})? 1$/m.test(body)) why.push('no envoy_server_live 1');
    if (!/^envoy_cluster_manager_cds_update_success/m.test(body)) why.push('no Envoy CDS metrics');
    tally.note(kind, why.length === 0, `${why.join(', ')}: ${body.slice(0, 120)}`);
  });
}

/** The agent's own view of its V8 heap (its istio_agent_nodejs_* metrics; garbage not yet collected included). */
async function heapText(): Promise<string> {
  const body = (await scrape('plain')).body ?? '';
  const g = (name: string): string => {
    const v = Number(new RegExp(`^istio_agent_nodejs_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(body)?.[1]);
    return Number.isFinite(v) ? mib(v) : '?';
  };
  return `V8 heap used ${g('heap_size_used_bytes')} of ${g('heap_size_total_bytes')}, external ${g('external_memory_bytes')}`;
}

// ---- probes

const PROBES = ['/app-health/app/readyz', '/app-health/grpc/livez'] as const;

async function probes(n: number, tally: Tally): Promise<void> {
  await pool(n, CONCURRENCY, async (i) => {
    const path = PROBES[i % PROBES.length]!;
    const kind = path.includes('grpc') ? 'grpc' : 'http';
    try {
      const r = await httpGet(`http://127.0.0.1:15020${path}`, { timeoutMs: 30_000 });
      tally.note(kind, r.status === 200 && (kind === 'grpc' || r.body === 'ready'), `HTTP ${r.status} ${r.body.slice(0, 120)}`);
    } catch (e) {
      tally.note(kind, false, (e as Error).message);
    }
  });
}

/** An HTTP application answering its readiness path, as the app container does. */
async function startApp(t: TestContext): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    if (req.url === '/readyz') res.end('ready');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/**
 * A real gRPC server (@grpc/grpc-js) implementing grpc.health.v1.Health/Check, messages encoded by hand:
 * the answer is always HealthCheckResponse{status: SERVING} (field 1, varint 1).
 */
async function startGrpcHealth(t: TestContext): Promise<number> {
  const server = new grpc.Server();
  const identity = (b: Buffer): Buffer => b;
  server.addService(
    {
      Check: {
        path: '/grpc.health.v1.Health/Check',
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    { Check: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from([0x08, 0x01])) },
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return port;
}

// ---- pushes

/** Resolves each response nonce's ACK (or NACK) as the control plane records it. */
function ackTracker(cp: ControlPlane): { wait(nonce: string): Promise<{ kind: string; error?: string }> } {
  const seen = new Map<string, { kind: string; error?: string }>();
  const waiters = new Map<string, (r: { kind: string; error?: string }) => void>();
  let idx = 0;
  cp.on('event', () => {
    for (; idx < cp.requests.length; idx++) {
      const r = cp.requests[idx]!;
      if (!r.nonce || (r.kind !== 'ack' && r.kind !== 'nack')) continue;
      const rec = { kind: r.kind, ...(r.error !== undefined ? { error: r.error } : {}) };
      seen.set(r.nonce, rec);
      waiters.get(r.nonce)?.(rec);
    }
  });
  return {
    wait(nonce) {
      const got = seen.get(nonce);
      if (got) return Promise.resolve(got);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(nonce);
          reject(new Error(`no ACK/NACK for nonce ${nonce} within 60 s`));
        }, 60_000);
        waiters.set(nonce, (r) => {
          clearTimeout(timer);
          waiters.delete(nonce);
          resolve(r);
        });
      });
    },
  };
}

test('soak: 1,000 scrapes (plain, gzip, gzip cut mid-body), 1,000 app probes (HTTP, gRPC) and 1,000 xDS pushes leave the agent alive, correct and its RSS flat', { timeout: 300_000 }, async (t) => {
  const appPort = await startApp(t);
  const grpcPort = await startGrpcHealth(t);
  const probers = {
    '/app-health/app/readyz': { httpGet: { path: '/readyz', port: appPort }, timeoutSeconds: 5 },
    '/app-health/grpc/livez': { grpc: { port: grpcPort, service: '' }, timeoutSeconds: 5 },
  };
  const { cp, upstream, agent } = await startMesh(t, { pod: { env: { ISTIO_KUBE_APP_PROBERS: JSON.stringify(probers) } } });
  const pid = agent.child.pid!;
  const alive = (): boolean => agent.child.exitCode === null && agent.child.signalCode === null;
  const acks = ackTracker(cp);
  let version = 0;
  const pushTally = new Tally();
  const pushes = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const from = cp.responses.length;
      const servedBy = `v${++version}`;
      cp.setHttpConfig({ listenerPort: LISTENER_PORT, upstreamPort: upstream.port, servedBy });
      const sent = cp.responses.slice(from);
      if (!sent.some((r) => r.typeUrl.endsWith('.RouteConfiguration'))) {
        pushTally.note('push', false, `${servedBy}: no RDS response sent`);
        continue;
      }
      const answers = await Promise.all(sent.map((r) => acks.wait(r.nonce)));
      const nack = answers.find((a) => a.kind !== 'ack');
      pushTally.note('push', !nack, `${servedBy}: ${nack?.kind ?? ''} ${nack?.error ?? ''}`);
    }
  };

  const fail = (what: string, tally: Tally): string => `${what}: ${tally.text()}; ${tally.problems.join(' | ')}\n${agent.output().slice(-2000)}`;

  // warm-up: 100 of each, then a moment for the agent to settle
  const warm = new Tally();
  await scrapes(WARMUP, 0, warm);
  await probes(WARMUP, warm);
  await pushes(WARMUP);
  assert.equal(warm.problems.length + pushTally.problems.length, 0, fail('warm-up', warm) + pushTally.problems.join(' | '));
  await sleep(1000);

  const marks: Array<{ phase: string; mem: Mem }> = [{ phase: 'baseline (after the warm-up)', mem: memOf(pid) }];
  const mark = async (phase: string): Promise<void> => {
    marks.push({ phase, mem: memOf(pid) });
    const m = marks.at(-1)!.mem;
    const d = m.rss - marks[0]!.mem.rss;
    t.diagnostic(`${phase}: VmRSS ${mib(m.rss)} (${d >= 0 ? '+' : ''}${mib(d)} on the baseline), VmHWM ${mib(m.hwm)}, ${m.fds} fds; ${await heapText()}`);
  };
  t.diagnostic(`baseline (after a warm-up of ${WARMUP} scrapes, probes and pushes): VmRSS ${mib(marks[0]!.mem.rss)}, VmHWM ${mib(marks[0]!.mem.hwm)}, ${marks[0]!.mem.fds} fds; ${await heapText()}`);

  // 1,000 scrapes: plain, gzip, gzip cut after the first chunk, interleaved
  const sc = new Tally();
  await scrapes(N, WARMUP, sc);
  t.diagnostic(`scrapes: ${sc.text()}; ${sc.cutMidBody} of the cut ones were cut before the body's end`);
  assert.ok(alive(), 'the agent survives the scrapes');
  assert.equal(sc.problems.length, 0, fail('scrapes', sc));
  assert.equal([...sc.sent.values()].reduce((a, b) => a + b, 0), N);
  assert.ok(sc.cutMidBody > 0, 'some gzip scrapes were cut mid-body');
  await mark(`after ${N} scrapes`);

  // 1,000 probe calls: HTTP and gRPC
  const pr = new Tally();
  await probes(N, pr);
  t.diagnostic(`probes: ${pr.text()}`);
  assert.ok(alive(), 'the agent survives the probes');
  assert.equal(pr.problems.length, 0, fail('probes', pr));
  await mark(`after ${N} probe calls`);

  // 1,000 pushes, each ACKed by Envoy (through the agent) before the next
  const before = pushTally.ok.get('push') ?? 0;
  await pushes(N);
  t.diagnostic(`pushes: ${(pushTally.ok.get('push') ?? 0) - before}/${N} ACKed`);
  assert.ok(alive(), 'the agent survives the pushes');
  assert.equal(pushTally.problems.length, 0, fail('pushes', pushTally));
  assert.equal((pushTally.ok.get('push') ?? 0) - before, N);
  // and the last one is what Envoy serves
  const served = await httpGet(`http://127.0.0.1:${LISTENER_PORT}/`, { timeoutMs: 10_000 });
  assert.equal(served.status, 200);
  assert.equal(served.headers['x-served-by'], `v${version}`);
  await mark(`after ${N} pushes`);

  await sleep(IDLE_MS);
  await mark(`after ${IDLE_MS / 1000} s idle`);
  assert.ok(alive(), agent.output().slice(-2000));
  // still serving after all of it
  assert.equal((await scrape('gzip')).status, 200);
  assert.equal((await httpGet('http://127.0.0.1:15020/app-health/grpc/livez')).status, 200);

  const summary = marks.map((m) => `${m.phase} ${mib(m.mem.rss)}`).join('; ');
  t.diagnostic(`RSS: ${summary}; peak (VmHWM) ${mib(marks.at(-1)!.mem.hwm)}`);
  for (let i = 1; i < marks.length; i++) {
    const grew = marks[i]!.mem.rss - marks[i - 1]!.mem.rss;
    assert.ok(grew <= MAX_PHASE_GROWTH, `${marks[i]!.phase}: RSS grew ${mib(grew)} in one phase (bound ${mib(MAX_PHASE_GROWTH)}); ${summary}`);
  }
  const total = marks.at(-1)!.mem.rss - marks[0]!.mem.rss;
  assert.ok(total <= MAX_TOTAL_GROWTH, `RSS grew ${mib(total)} over the soak (bound ${mib(MAX_TOTAL_GROWTH)}); ${summary}`);
  const fds = marks.at(-1)!.mem.fds - marks[0]!.mem.fds;
  assert.ok(fds <= MAX_FD_GROWTH, `${fds} more open descriptors after the soak than before (${marks.map((m) => m.mem.fds).join(', ')})`);
});
