// The synchronous file helpers of the start-up path (src/lib/files.ts): what they accept and refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathExistsSync, readFileLimitedSync, replaceFileSync } from './files.js';

async function scratch(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'files-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void test('pathExistsSync: false only for a path that does not exist (ENOTDIR counts as there, for the read to report)', async (t) => {
  const dir = await scratch(t);
  const file = join(dir, 'mesh');
  await writeFile(file, 'x');
  assert.equal(pathExistsSync(file), true);
  assert.equal(pathExistsSync(dir), true);
  assert.equal(pathExistsSync(join(dir, 'missing')), false);
  assert.equal(pathExistsSync(join(file, 'under-a-file')), true);
});

void test('replaceFileSync: the new content with its mode, the directory made, no temporary file left; an existing file replaced', async (t) => {
  const dir = await scratch(t);
  const path = join(dir, 'etc', 'istio', 'proxy', 'envoy-rev.json');
  replaceFileSync(path, '{"a":1}\n', 0o644);
  assert.equal(await readFile(path, 'utf8'), '{"a":1}\n');
  assert.equal((await stat(path)).mode & 0o777, 0o644);
  replaceFileSync(path, Buffer.from('secret'), 0o600);
  assert.equal(await readFile(path, 'utf8'), 'secret');
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(join(dir, 'etc', 'istio', 'proxy')), ['envoy-rev.json']);
});

void test('readFileLimitedSync: a regular file up to the limit; a larger one, a FIFO (at once, not waiting for a writer) and a missing one are refused, naming the path', async (t) => {
  const dir = await scratch(t);
  const file = join(dir, 'root-cert.pem');
  await writeFile(file, 'a'.repeat(100));
  assert.equal(readFileLimitedSync(file, 100).length, 100);
  assert.throws(() => readFileLimitedSync(file, 99), (e: Error) => e.message.includes(file) && /more than the 99 allowed/.test(e.message));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  assert.throws(() => readFileLimitedSync(fifo, 100), (e: Error) => e.message === `${fifo} is not a regular file`);
  assert.throws(() => readFileLimitedSync(join(dir, 'missing'), 100), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
});
