// Small helpers shared by the benchmark orchestrator (run.mjs) and the per-agent trial (trial.mjs):
// statistics, loopback HTTP (and Prometheus scrapes), and per-process CPU/RSS read from /proc.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';

export { sleep };

/** Nearest-rank percentile of a numeric array (p in 0..100); NaN when empty. */
export function percentile(values, p) {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1];
}

/** n, median, p90, min, max of the finite values. */
export function summarize(values) {
  const s = values.filter((v) => Number.isFinite(v));
  return {
    n: s.length,
    median: percentile(s, 50),
    p90: percentile(s, 90),
    min: s.length ? Math.min(...s) : NaN,
    max: s.length ? Math.max(...s) : NaN,
  };
}

/** GET http://127.0.0.1:<port><path> without keep-alive; never rejects (status 0 = connection failed). */
export function httpGet(port, path, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', () => resolve({ status: 0, body: '', headers: {} }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '', headers: {} }));
    req.end();
  });
}

/**
 * A Prometheus scrape of http://127.0.0.1:<port><path>, never rejects:
 *   'plain'       no Accept-Encoding; the whole body
 *   'gzip'        Accept-Encoding: gzip; the whole body, gunzipped when the answer says gzip
 *   'gzip-abort'  Accept-Encoding: gzip; the connection destroyed on the first body chunk (a scraper that
 *                 gives up mid-body); `cut` says whether the body was still incomplete then
 * Result: { status (0 = failed), encoding, body?, cut?, error? }.
 */
export function scrape(port, path, kind, timeoutMs = 60_000) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const headers = kind === 'plain' ? {} : { 'accept-encoding': 'gzip' };
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false, timeout: timeoutMs }, (res) => {
      const base = { status: res.statusCode ?? 0, encoding: res.headers['content-encoding'] };
      res.on('error', () => done({ ...base, status: 0, error: 'response error' }));
      if (kind === 'gzip-abort') {
        res.once('data', () => {
          const cut = !res.complete;
          req.destroy();
          done({ ...base, cut });
        });
        res.once('end', () => done({ ...base, cut: false }));
        return;
      }
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try {
          const raw = Buffer.concat(chunks);
          done({ ...base, body: (base.encoding === 'gzip' ? gunzipSync(raw) : raw).toString('utf8') });
        } catch (e) {
          done({ ...base, status: 0, error: `bad gzip body: ${e.message}` });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => done({ status: 0, error: e.message }));
    req.end();
  });
}

/** Runs fn(0..n-1) with `concurrency` workers. */
export async function pool(n, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Clock ticks per second for /proc/<pid>/stat utime/stime. */
export function clockTicks() {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

function readStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may contain spaces: split after the last ')'
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const f = text.slice(close + 2).split(' ');
    // f[0] = state (field 3), so field N is f[N - 3]
    return { pid, comm, ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

function readRssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * The agent's processes: `root` and its descendants, leaving out Envoy (comm "envoy") and everything
 * below it. For the Go agent this is one process; for ours, node plus any helper it spawns.
 */
export function agentPids(root) {
  const all = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) all.push(s);
  }
  const children = new Map();
  for (const s of all) {
    if (!children.has(s.ppid)) children.set(s.ppid, []);
    children.get(s.ppid).push(s);
  }
  const out = [];
  const walk = (pid) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) if (!/^envoy/.test(c.comm)) walk(c.pid);
  };
  if (all.some((s) => s.pid === root)) walk(root);
  return out;
}

/** Envoy processes below `root` (for context only). */
export function envoyPids(root) {
  const all = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) all.push(s);
  }
  const byPid = new Map(all.map((s) => [s.pid, s]));
  return all
    .filter((s) => /^envoy/.test(s.comm))
    .filter((s) => {
      for (let p = s.ppid, hops = 0; p > 1 && hops < 64; hops++) {
        if (p === root) return true;
        p = byPid.get(p)?.ppid ?? 0;
      }
      return false;
    })
    .map((s) => s.pid);
}

/**
 * Resident memory split (kB): anonymous (private to the process: heap, stacks, malloc) and file-backed
 * (the executable's and libraries' pages; shared with every process mapping the same files, e.g. every
 * sidecar started from one image on a node).
 */
export function readRssSplitKb(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const g = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN);
    return { anonKb: g('RssAnon'), fileKb: g('RssFile') + g('RssShmem') };
  } catch {
    return { anonKb: NaN, fileKb: NaN };
  }
}

/** Summed utime+stime ticks and VmRSS of a set of pids (missing ones count 0). */
export function usage(pids) {
  let ticks = 0;
  let rssKb = 0;
  for (const pid of pids) {
    ticks += readStat(pid)?.ticks ?? 0;
    rssKb += readRssKb(pid);
  }
  return { ticks, rssKb };
}

/**
 * CPU time of each thread of `pid` in clock ticks, to the nanosecond: the first field of
 * /proc/<pid>/task/<tid>/schedstat (ns on a CPU). /proc/<pid>/stat has whole ticks only (10 ms), too coarse
 * for work that takes a few of them. Keyed `pid/tid`; a kernel without schedstat gives the process's
 * utime+stime, keyed `pid/stat`.
 */
function threadTicks(pid, hz) {
  const out = new Map();
  if (!existsSync(`/proc/${pid}/schedstat`)) {
    const t = readStat(pid)?.ticks;
    if (t !== undefined) out.set(`${pid}/stat`, t);
    return out;
  }
  let tids;
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      if (Number.isFinite(ns)) out.set(`${pid}/${tid}`, (ns / 1e9) * hz);
    } catch {
      // the thread exited
    }
  }
  return out;
}

/**
 * Samples the agent's (not Envoy's) RSS every intervalMs and its CPU time between start and stop.
 * The process set is refreshed on every sample, so helpers spawned meanwhile are counted. CPU is summed
 * per thread from schedstat (ns): a thread that exits keeps what it had at its last sample, so at most one
 * sampling interval of a short-lived thread is missed (the agents' threads live as long as they do).
 */
export function startSampler(rootPid, intervalMs = 250) {
  const hz = clockTicks();
  let pids = agentPids(rootPid);
  // CPU ticks per thread at start, so threads and processes that appear later count from 0
  const read = (ps) => new Map(ps.flatMap((p) => [...threadTicks(p, hz)]));
  const base = read(pids);
  const last = new Map(base);
  const rss = [];
  const points = []; // [ms since start, total ticks since start]
  const t0 = performance.now();
  const sample = () => {
    pids = agentPids(rootPid);
    let kb = 0;
    for (const p of pids) {
      for (const [k, t] of threadTicks(p, hz)) {
        if (!base.has(k)) base.set(k, 0);
        last.set(k, t);
      }
      kb += readRssKb(p);
    }
    if (kb > 0) rss.push(kb);
    let ticks = 0;
    for (const [k, t] of last) ticks += Math.max(0, t - (base.get(k) ?? 0));
    points.push([performance.now() - t0, ticks]);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const wallS = (performance.now() - t0) / 1000;
      let ticks = 0;
      for (const [k, t] of last) ticks += Math.max(0, t - (base.get(k) ?? 0));
      const cpuS = ticks / hz;
      // CPU % per window of ~1 s (between the samples nearest to each whole second)
      const windows = [];
      const step = Math.max(1, Math.round(1000 / intervalMs));
      for (let i = step; i < points.length; i += step) {
        const [ta, ka] = points[i - step];
        const [tb, kb] = points[i];
        if (tb > ta) windows.push((100 * (kb - ka)) / hz / ((tb - ta) / 1000));
      }
      return {
        cpuPctWindows: windows,
        wallS,
        cpuS,
        cpuPct: wallS > 0 ? (100 * cpuS) / wallS : NaN,
        rssMiB: rss.map((kb) => Math.round(kb / 102.4) / 10),
        rssMedianMiB: percentile(rss, 50) / 1024,
        rssMaxMiB: (rss.length ? Math.max(...rss) : NaN) / 1024,
        samples: rss.length,
      };
    },
  };
}

/** Polls fn every intervalMs until it returns a value other than undefined; undefined after timeoutMs. */
export async function pollUntil(fn, timeoutMs, intervalMs = 20) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) return undefined;
    await sleep(intervalMs);
  }
}
