import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getHeapStatistics } from 'node:v8';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { releaseMemorySoon, releaseMemoryWhenGrown, trimMalloc } from './gc.js';

test('releaseMemorySoon runs one full collection after the delay: garbage left by a burst is returned', async () => {
  // garbage an idle process would keep: ~40 MB of unreachable objects promoted to the old generation
  let keep: unknown[] = [];
  for (let i = 0; i < 400; i++) keep.push(Array.from({ length: 10_000 }, (_, j) => ({ i, j })));
  keep = [];
  const before = getHeapStatistics().used_heap_size;
  releaseMemorySoon(20);
  releaseMemorySoon(20); // a second request while one is scheduled changes nothing
  await new Promise((r) => setTimeout(r, 200));
  const after = getHeapStatistics().used_heap_size;
  assert.ok(after < before / 2, `heap used ${before} -> ${after} bytes`);
  assert.equal(keep.length, 0);
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'no global gc is defined');
});

test('releaseMemoryWhenGrown collects once the resident set has grown by the threshold over the last baseline', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const MiB = 1024 * 1024;
  let rss = 80 * MiB;
  let collections = 0;
  const w = releaseMemoryWhenGrown({
    intervalMs: 1000,
    growthBytes: 8 * MiB,
    rss: () => rss,
    collect: () => {
      collections++;
      rss -= 12 * MiB; // what the collection returned
    },
  });
  const tick = (mib: number): void => {
    rss = mib * MiB;
    t.mock.timers.tick(1000);
  };
  tick(85); // +5: below the threshold
  assert.equal(collections, 0);
  tick(88); // +8 over the 80 MiB baseline: one collection, down to 76 MiB, the new baseline
  assert.equal(collections, 1);
  tick(83); // +7 over 76: nothing
  assert.equal(collections, 1);
  tick(70); // lower: the baseline follows it down
  tick(77); // +7 over 70: nothing
  assert.equal(collections, 1);
  tick(78); // +8 over 70: the second collection
  assert.equal(collections, 2);
  // memory a collection cannot return: the baseline moves up with it, so no collection follows each tick
  w.stop();
  let futile = 0;
  rss = 100 * MiB;
  const w2 = releaseMemoryWhenGrown({ intervalMs: 1000, rss: () => rss, collect: () => futile++ });
  rss = 120 * MiB;
  for (let i = 0; i < 10; i++) t.mock.timers.tick(1000);
  assert.equal(futile, 1);
  w2.stop();
  rss = 200 * MiB;
  t.mock.timers.tick(5000);
  assert.equal(futile, 1, 'no collection after stop()');
});

test('after the collection, the C allocator returns the pages it freed between allocations that live on', async () => {
  const anonKiB = (): number => Number(/^RssAnon:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.message);
  process.on('warning', onWarning);
  // 150 MiB in buffers below glibc's mmap threshold (128 KiB), each eighth kept: the freed ones sit between
  // them, so glibc cannot shrink its heap from the top, and keeps their pages without malloc_trim
  let all: Buffer[] = [];
  const kept: Buffer[] = [];
  for (let i = 0; i < 2500; i++) {
    const b = Buffer.allocUnsafeSlow(60_000).fill(1);
    all.push(b);
    if (i % 8 === 0) kept.push(b);
  }
  all = [];
  const before = anonKiB();
  releaseMemorySoon(10);
  // the collection, then the allocator's trim 1 s later: waited for up to 10 s on a busy machine
  let after = anonKiB();
  for (let waited = 0; before - after <= 100 * 1024 && waited < 10_000; waited += 100) {
    await new Promise((r) => setTimeout(r, 100));
    after = anonKiB();
  }
  process.off('warning', onWarning);
  assert.ok(before - after > 100 * 1024, `anonymous RSS ${before} -> ${after} KiB`);
  assert.equal(kept.length, 313);
  assert.notEqual(trimMalloc(), undefined, 'malloc_trim is callable on this Node.js');
  assert.deepEqual(warnings.filter((m) => m.includes('FFI')), [], 'node:ffi warned');
  assert.equal(all.length, 0);
});

test('the collection leaves V8 keyed as it started: Node.js modules loaded after it use their compiled code', async () => {
  // a process of its own, started without V8 options, as the executable starts with its own
  const gcModule = new URL('./gc.js', import.meta.url).href;
  const script = `const { releaseMemorySoon } = await import(${JSON.stringify(gcModule)});
    releaseMemorySoon(0);
    await new Promise((r) => setTimeout(r, 50));
    await import('node:zlib');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, NODE_DEBUG_NATIVE: 'CODE_CACHE' }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const verdicts = [...r.stderr.matchAll(/^Code cache of (\S+) \(\w+\) is (accepted|rejected)/gm)].map((m) => `${m[1]} ${m[2]}`);
  assert.ok(verdicts.includes('zlib accepted'), verdicts.join(', '));
  assert.deepEqual(verdicts.filter((v) => v.endsWith(' rejected')), []);
});
