// Watches a set of files for content changes (the only importer of chokidar). Watches each file's
// directory rather than the file, so Kubernetes' atomic `..data` symlink swaps and editor renames are
// seen; a change is reported only when a watched file's content really differs (debounced).
import { watch, type FSWatcher } from 'chokidar';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

export interface FileWatch {
  close(): Promise<void>;
}

async function digest(path: string): Promise<string> {
  try {
    return createHash('sha256').update(await readFile(path)).digest('hex');
  } catch (e) {
    return `missing:${(e as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

export async function watchFiles(paths: readonly string[], onChange: (changed: string[]) => void, opts: { debounceMs?: number } = {}): Promise<FileWatch> {
  const files = [...new Set(paths.map((p) => resolve(p)))];
  const last = new Map<string, string>();
  await Promise.all(files.map(async (f) => last.set(f, await digest(f))));
  const dirs = [...new Set(files.map((f) => dirname(f)))];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const check = async (): Promise<void> => {
    const changed: string[] = [];
    for (const f of files) {
      const d = await digest(f);
      if (d !== last.get(f)) {
        last.set(f, d);
        changed.push(f);
      }
    }
    if (changed.length && !closed) onChange(changed);
  };
  const schedule = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void check(), opts.debounceMs ?? 100);
  };
  if (!dirs.length) return { close: async () => undefined };
  const watcher: FSWatcher = watch(dirs, { ignoreInitial: true, depth: 1, persistent: false });
  watcher.on('all', schedule);
  watcher.on('error', () => schedule());
  // never let a watcher that does not come up hold the caller: give up waiting after a bound
  await new Promise<void>((r) => {
    const t = setTimeout(r, 5000);
    watcher.once('ready', () => {
      clearTimeout(t);
      r();
    });
  });
  return {
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await watcher.close();
    },
  };
}
