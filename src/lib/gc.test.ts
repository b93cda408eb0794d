import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getHeapStatistics } from 'node:v8';
import { releaseMemorySoon } from './gc.js';

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
