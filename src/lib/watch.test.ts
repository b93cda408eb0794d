import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rename, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchFiles } from './watch.js';

function nextChange(): { fire: (c: string[]) => void; wait: (ms: number) => Promise<string[] | 'timeout'> } {
  let pending: string[] | undefined;
  let resolveFn: ((v: string[]) => void) | undefined;
  return {
    fire: (c) => (resolveFn ? (resolveFn(c), (resolveFn = undefined)) : (pending = c)),
    wait: (ms) =>
      new Promise((res) => {
        if (pending) {
          res(pending);
          pending = undefined;
          return;
        }
        const t = setTimeout(() => res('timeout'), ms);
        resolveFn = (v) => {
          clearTimeout(t);
          res(v);
        };
      }),
  };
}

test('reports content changes, ignores touches with equal content, follows Kubernetes ..data swaps', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'watch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'annotations');
  await writeFile(file, 'a="1"\n');
  // downward-API layout: pod/labels -> ..data/labels, ..data -> ..2026_1
  const pod = join(dir, 'pod');
  await mkdir(join(pod, '..v1'), { recursive: true });
  await writeFile(join(pod, '..v1', 'labels'), 'app="x"\n');
  await symlink('..v1', join(pod, '..data'));
  await symlink('..data/labels', join(pod, 'labels'));
  const ch = nextChange();
  const w = await watchFiles([file, join(pod, 'labels')], ch.fire, { debounceMs: 30 });
  t.after(() => w.close());

  await writeFile(file, 'a="1"\n');
  assert.equal(await ch.wait(400), 'timeout');
  await writeFile(file, 'a="2"\n');
  assert.deepEqual(await ch.wait(3000), [file]);

  await mkdir(join(pod, '..v2'));
  await writeFile(join(pod, '..v2', 'labels'), 'app="y"\n');
  await symlink('..v2', join(pod, '..data_tmp'));
  await rename(join(pod, '..data_tmp'), join(pod, '..data'));
  assert.deepEqual(await ch.wait(3000), [join(pod, 'labels')]);
});

/** The inotify watches this process holds (one per watched directory), from /proc/self/fdinfo. */
async function inotifyWatches(): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fdinfo')) {
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
    n += info.split('\n').filter((l) => l.startsWith('inotify wd:')).length;
  }
  return n;
}

/** A file and a watch on it that starts when `start()` is called. */
async function deferredWatch(t: { after(fn: () => unknown): void }): Promise<{ file: string; w: Awaited<ReturnType<typeof watchFiles>>; ch: ReturnType<typeof nextChange>; start: () => void }> {
  const dir = await mkdtemp(join(tmpdir(), 'watch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'mesh');
  await writeFile(file, 'a: 1\n');
  let start: () => void = () => undefined;
  const ch = nextChange();
  const w = await watchFiles([file], ch.fire, { debounceMs: 30, startAfter: new Promise<void>((r) => (start = r)) });
  t.after(() => w.close());
  return { file, w, ch, start: () => start() };
}

test('startAfter: resolves before watching; a change made before the start is reported when the watcher comes up', async (t) => {
  const before = await inotifyWatches();
  const { file, ch, start } = await deferredWatch(t);
  // not watching yet: the change waits for the start
  await writeFile(file, 'a: 2\n');
  assert.equal(await ch.wait(300), 'timeout');
  assert.equal(await inotifyWatches(), before);
  start();
  assert.deepEqual(await ch.wait(5000), [file]);
  assert.ok((await inotifyWatches()) > before);
  // and watching from then on
  await writeFile(file, 'a: 3\n');
  assert.deepEqual(await ch.wait(3000), [file]);
});

test('startAfter: a watch closed before its start never starts', async (t) => {
  const before = await inotifyWatches();
  const { file, w, ch, start } = await deferredWatch(t);
  await writeFile(file, 'a: 2\n');
  await w.close();
  start();
  assert.equal(await ch.wait(500), 'timeout');
  // no directory was watched (a watcher started after the close would hold one)
  assert.equal(await inotifyWatches(), before);
});
