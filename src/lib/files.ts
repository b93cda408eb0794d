// File helpers shared by the components: atomic replacement (write a temp file in the same directory, fsync
// it, then rename over the target) and bounded reads of files that come from outside the agent.
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { lstat as lstatCallback, stat as statCallback } from 'node:fs';
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

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number, dirMode = 0o700): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: dirMode });
  // unique per process and write; created exclusively ('wx': never through a file or link already there,
  // so the name needs no cryptographic randomness)
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${(++tmpCount).toString(36)}-${Math.floor(Math.random() * 2 ** 32).toString(36)}.tmp`);
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

/** Reads a whole file, refusing one larger than `maxBytes` (files from outside the agent: tokens, certificates). */
export async function readFileLimited(path: string, maxBytes: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size > maxBytes) throw new Error(`${path} is ${size} bytes, more than the ${maxBytes} allowed`);
    // read at most one byte past the limit: the file may have grown since stat()
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(size, 4096)));
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
