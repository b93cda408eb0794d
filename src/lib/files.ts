// File helpers shared by the components: atomic replacement (write a temp file in the same directory, fsync
// it, then rename over the target) and bounded reads of files that come from outside the agent.
//
// Before Envoy is spawned the agent's main thread has nothing else to do, and every asynchronous file
// operation is a round trip through the thread pool and back to the event loop; on a 2-core node, with
// the first key being generated on one core and the agent's own start-up on the other, those round trips
// took 2-13 ms for the two small downward-API files alone (measured, docs/performance.md). So the files
// read and written on the way to the spawn (the pod files, the mesh config, the bootstraps, the sockets'
// directories) use the synchronous calls, as pilot-agent's Go does, and so do the roots of the agent's own
// TLS connections (readFileLimitedSync). Every other read stays asynchronous: a path that blocks (a FIFO,
// a stalled network mount) must not stop the event loop, and file certificates are named by istiod's
// configuration.
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { closeSync, constants, fchmodSync, fstatSync, lstat as lstatCallback, mkdirSync, openSync, readSync, renameSync, rmSync, stat as statCallback, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * stat and lstat for the start-up path, on the callback API: node:fs/promises runs them through a function
 * with a `using` declaration, which crashes Node.js 26 while it builds the start-up snapshot (a segmentation
 * fault in V8's InitializeDisposableStack), and the snapshot is taken after the start-up path has run once
 * (src/sea.ts).
 */
export const statPath = promisify(statCallback);
export const lstatPath = promisify(lstatCallback);

/** Temporary files written by this process so far (with the pid, a name no other process or write uses). */
let tmpCount = 0;

/**
 * A temporary file beside `path`, to be created exclusively ('wx': never through a file or link already
 * there, so the name needs no cryptographic randomness) and renamed over it.
 */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${(++tmpCount).toString(36)}-${Math.floor(Math.random() * 2 ** 32).toString(36)}.tmp`);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number, dirMode = 0o700): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: dirMode });
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * writeFileAtomic's synchronous twin for the files the agent writes on its way to Envoy's spawn and writes
 * again at every start (the bootstraps): replaced atomically, so a reader sees the old file or the new one,
 * but not fsync'ed (an fsync waits for the disk; pilot-agent writes them with neither the rename nor the
 * fsync).
 */
export function replaceFileSync(path: string, data: string | Uint8Array, mode: number, dirMode = 0o700): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: dirMode });
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeFileSync(fd, data);
    fchmodSync(fd, mode);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Whether `path` exists: false only when it does not (ENOENT); any other error (ENOTDIR, EACCES, ...)
 * counts as there, for the read that follows to report it (pilot-agent's os.IsNotExist).
 */
export function pathExistsSync(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * readFileLimited's synchronous twin, for a regular file only (opened non-blocking, so that a FIFO fails
 * at once instead of waiting for a writer): the roots of the agent's TLS connections, read as each
 * connection is made. They are a few KiB, read in microseconds, where each of the four asynchronous steps
 * waited for a turn of the thread pool and of the event loop: while Envoy starts both are busy, and the
 * CA's roots took 2-8 ms to read (measured, docs/performance.md).
 */
export function readFileLimitedSync(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    const buf = bufferFor(path, st.size, maxBytes);
    let n = 0;
    let got: number;
    while (n < buf.length && (got = readSync(fd, buf, n, buf.length - n, n)) > 0) n += got;
    if (n > maxBytes) throw new Error(`${path} is more than the ${maxBytes} bytes allowed`);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The buffer a file of `size` bytes is read into: one byte past the limit at most (it may grow meanwhile). */
function bufferFor(path: string, size: number, maxBytes: number): Buffer {
  if (size > maxBytes) throw new Error(`${path} is ${size} bytes, more than the ${maxBytes} allowed`);
  return Buffer.alloc(Math.min(maxBytes + 1, Math.max(size, 4096)));
}

/** Reads a whole file, refusing one larger than `maxBytes` (files from outside the agent: tokens, certificates). */
export async function readFileLimited(path: string, maxBytes: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = bufferFor(path, (await fh.stat()).size, maxBytes);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) throw new Error(`${path} is more than the ${maxBytes} bytes allowed`);
      if (n === buf.length) break;
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}
