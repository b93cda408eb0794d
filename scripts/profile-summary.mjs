// Summarizes the CPU profiles scripts/profile-startup.sh writes: for each start (the warm-up, the first
// file, is skipped), when the start-up milestones were first seen on the agent's main thread, and where
// its CPU time went before Envoy was spawned, from then until Envoy's first xDS stream was opened upstream
// (Envoy initializing beside the agent's components), and in all, by package. Times are from the profiler's start,
// a few ms after the process started (Node.js itself boots first). Sampling: a milestone is seen at the
// first sample inside it, so each is up to one sampling interval late.
//   node scripts/profile-summary.mjs DIR
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = process.argv[2] ?? 'profiles';
const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
if (files.length === 0) {
  console.error(`no .cpuprofile in ${dir}`);
  process.exit(1);
}
const measured = files.length > 1 ? files.slice(1) : files;

/** Milestones: the first sample whose stack holds a frame matching the test. */
const MILESTONES = [
  ['`agent proxy` runs (the CLI loaded and dispatched)', (f) => f.functionName === 'runProxy'],
  ['configuration loaded, agent starts', (f) => f.functionName === 'runAgent'],
  ['Envoy spawned', (f) => f.functionName === 'spawn' && f.url === 'node:child_process'],
  ['Envoy connected: xDS stream opened upstream', (f) => f.functionName === 'openUpstream'],
  ['Envoy connected: SDS stream served', (f) => f.functionName === 'run' && sourceOf(f).includes('src/identity/sds-server')],
];

// bundle frames are mapped back to their source through the bundle's source maps: a dependency by its
// package name, the agent's own code by its component (src/<folder>)
const maps = new Map();
function sourceMapOf(url) {
  if (!maps.has(url)) {
    let m;
    try {
      const path = fileURLToPath(url);
      if (existsSync(`${path}.map`)) m = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
    } catch {
      m = undefined;
    }
    maps.set(url, m);
  }
  return maps.get(url);
}
/** The source file a bundle frame comes from ('' when unknown). */
function sourceOf(frame) {
  return frame.url.startsWith('file:') ? (sourceMapOf(frame.url)?.findEntry(frame.lineNumber, frame.columnNumber)?.originalSource ?? '') : '';
}
function pkgOf(frame) {
  const u = frame.url;
  if (!u) return `(${frame.functionName || 'native'})`;
  if (u.startsWith('node:')) return 'Node.js built-in modules';
  if (!u.startsWith('file:')) return u;
  const src = sourceOf(frame);
  const dep = src.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/)?.[1];
  if (dep) return dep;
  const own = src.match(/src\/([^/]+)\//)?.[1];
  return own ? `agent: src/${own}` : 'agent (other)';
}

function analyze(file) {
  const p = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const marks = new Map();
  const before = new Map();
  const initializing = new Map();
  const all = new Map();
  let t = p.startTime;
  let spawnAt = Infinity;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    const ms = (t - p.startTime) / 1000;
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const leaf = byId.get(p.samples[i]);
    const stack = [];
    for (let c = leaf; c; c = byId.get(parent.get(c.id))) stack.push(c.callFrame);
    for (const [name, test] of MILESTONES) if (!marks.has(name) && stack.some(test)) marks.set(name, ms);
    if (marks.has('Envoy spawned')) spawnAt = Math.min(spawnAt, marks.get('Envoy spawned'));
    const k = pkgOf(leaf.callFrame);
    all.set(k, (all.get(k) ?? 0) + dt);
    if (ms < spawnAt) before.set(k, (before.get(k) ?? 0) + dt);
    else if (!marks.has('Envoy connected: xDS stream opened upstream')) initializing.set(k, (initializing.get(k) ?? 0) + dt);
  }
  return { file, marks, before, initializing, all, totalMs: (p.endTime - p.startTime) / 1000 };
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const runs = measured.map(analyze);
// milestones in the order they happened
MILESTONES.sort((a, b) => median(runs.map((r) => r.marks.get(a[0]) ?? NaN)) - median(runs.map((r) => r.marks.get(b[0]) ?? NaN)));
console.log(`CPU profiles: ${runs.length} measured start(s) in ${dir} (warm-up skipped)\n`);
console.log('milestone (ms from profiler start, median)');
for (const [name] of MILESTONES) {
  const seen = runs.map((r) => r.marks.get(name)).filter((v) => v !== undefined);
  console.log(`  ${(seen.length ? median(seen).toFixed(1) : 'not seen').padStart(8)}  ${name}`);
}
for (const [title, key] of [
  ['CPU before Envoy was spawned (ms, median)', 'before'],
  ["CPU from the spawn to Envoy's first xDS stream opened upstream (ms, median)", 'initializing'],
  ['CPU over the whole profile: start-up, ready, then SIGTERM and the drain (ms, median)', 'all'],
]) {
  console.log(`\n${title}`);
  const keys = new Set(runs.flatMap((r) => [...r[key].keys()]));
  const rows = [...keys].map((k) => [k, median(runs.map((r) => r[key].get(k) ?? 0))]).sort((a, b) => b[1] - a[1]);
  for (const [k, v] of rows.slice(0, 14)) console.log(`  ${v.toFixed(1).padStart(8)}  ${k}`);
}
