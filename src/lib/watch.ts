// Watches files for changes (the only importer of chokidar). Each file's directory is watched rather than
// the file, so Kubernetes' atomic `..data` symlink swaps and editor renames are seen; when a directory on
// the way to the file is itself a symlink (a mounted Secret or ConfigMap swapped as a whole), the directory
// holding that symlink is watched too. Events are only hints: callers compare contents, so a missed or
// spurious event never changes the outcome, and an optional poll re-checks on a timer as a safety net.
import type { FSWatcher } from 'chokidar';
import { createHash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

export interface FileWatch {
  close(): Promise<void>;
}

export interface WatchOptions {
  /** Quiet time after the last event before the callback runs (default 100 ms). */
  readonly debounceMs?: number;
  /** Also call back every `pollMs` (default: never). */
  readonly pollMs?: number;
  /** Called when the watcher reports an error (the callback still runs: the caller re-checks contents). */
  readonly onError?: (err: Error) => void;
  /**
   * Start watching only once this settles (chokidar is loaded then too), and resolve at once rather than
   * when the watcher is up. The callback runs when the watcher comes up, so a change made before is seen.
   * The agent starts its watchers after Envoy is ready: scanning the directories while Envoy starts
   * takes the CPU its configuration is relayed with (docs/performance.md).
   */
  readonly startAfter?: Promise<unknown>;
}

/** The directories to watch for `file`: its own, and the parent of the nearest symlinked ancestor directory. */
export function directoriesFor(file: string): string[] {
  const dirs = [dirname(file)];
  for (let d = dirname(file); d !== dirname(d); d = dirname(d)) {
    try {
      if (lstatSync(d).isSymbolicLink()) {
        dirs.push(dirname(d));
        break;
      }
    } catch {
      break;
    }
  }
  return dirs;
}

/**
 * Calls `onEvent` (debounced) after any change in the directories of `paths`, once when the watcher is
 * ready, and every `pollMs` if set. Never waits more than 5 s for chokidar to come up (and does not wait
 * for it with `startAfter`).
 */
export async function watchPaths(paths: readonly string[], onEvent: () => void, opts: WatchOptions = {}): Promise<FileWatch> {
  const dirs = [...new Set(paths.flatMap((p) => directoriesFor(resolve(p))))];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const fire = (): void => {
    if (!closed) onEvent();
  };
  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, opts.debounceMs ?? 100);
    timer.unref();
  };
  const poll = opts.pollMs ? setInterval(fire, opts.pollMs) : undefined;
  poll?.unref();
  if (!dirs.length) return { close: async () => (closed = true, poll && clearInterval(poll), undefined) };
  let watcher: FSWatcher | undefined;
  /** Ends the wait for chokidar's 'ready' (close() calls it: a closed watcher never gets ready). */
  let stopWaiting: (() => void) | undefined;
  const failed = (e: unknown): void => {
    opts.onError?.(e instanceof Error ? e : new Error(String(e)));
    schedule();
  };
  const up = async (): Promise<void> => {
    const { watch } = await import('chokidar');
    if (closed) return;
    const w = watch(dirs, { ignoreInitial: true, depth: 1, persistent: false });
    watcher = w;
    w.on('all', schedule);
    w.on('error', failed);
    await new Promise<void>((r) => {
      const t = setTimeout(r, 5000);
      t.unref();
      stopWaiting = () => {
        clearTimeout(t);
        r();
      };
      w.once('ready', stopWaiting);
    });
    stopWaiting = undefined;
    schedule(); // anything that changed while the watcher was coming up
  };
  const handle: FileWatch = {
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poll) clearInterval(poll);
      stopWaiting?.();
      await watcher?.close();
    },
  };
  if (opts.startAfter) void opts.startAfter.then(up, up).catch(failed);
  else await up();
  return handle;
}

async function digest(path: string): Promise<string> {
  try {
    return createHash('sha256').update(await readFile(path)).digest('hex');
  } catch (e) {
    return `missing:${(e as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

/** Reports the files whose content changed (compared with the content when watching started). */
export async function watchFiles(paths: readonly string[], onChange: (changed: string[]) => void, opts: WatchOptions = {}): Promise<FileWatch> {
  const files = [...new Set(paths.map((p) => resolve(p)))];
  const last = new Map<string, string>();
  await Promise.all(files.map(async (f) => last.set(f, await digest(f))));
  let checking: Promise<void> = Promise.resolve();
  const check = async (): Promise<void> => {
    const changed: string[] = [];
    for (const f of files) {
      const d = await digest(f);
      if (d !== last.get(f)) {
        last.set(f, d);
        changed.push(f);
      }
    }
    if (changed.length) onChange(changed);
  };
  return watchPaths(files, () => {
    checking = checking.then(check, check);
  }, opts);
}
