// Returning memory after a large xDS response. Relaying one (a 19 MiB CDS push, say) grows the heap by its
// size several times over (HTTP/2 frames, the message, its framing toward Envoy); once relayed it is all
// garbage, but a process that then sits idle allocates nothing, so V8 runs no collection and the RSS stays
// at the peak for as long as the pod lives. One full collection a few seconds after such a response (once
// for a burst of them) returns it. V8 exposes that collection only behind --expose-gc, which can be turned
// on at run time; the function it defines is taken from a fresh context, so no global `gc` appears. After
// each collection, the C allocator returns the pages it freed (trimMalloc).
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';

let collect: (() => void) | undefined;
let timer: NodeJS.Timeout | undefined;

function fullGc(): void {
  if (!collect) {
    // node:vm is loaded only here, on the first large response, not at start-up
    const vm = createRequire(import.meta.url)('node:vm') as typeof import('node:vm');
    setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
    // back to V8's options as the process started with them: they key the compiled code of Node.js's
    // modules (src/process.ts), and a module first loaded after this would otherwise be compiled anew
    setFlagsFromString('--no-expose-gc');
  }
  collect();
  // V8 frees the memory of dead ArrayBuffers (Buffers) on a background thread after the collection
  setTimeout(trimMalloc, TRIM_AFTER_MS).unref();
}

/** How long after a full collection the C allocator's free pages are returned. */
const TRIM_AFTER_MS = 1000;

/** The subset of node:ffi used here (Node.js 26.10: experimental, typed by no @types/node yet). */
interface Ffi {
  dlopen(path: null, symbols: { malloc_trim: { arguments: ['u64']; return: 'i32' } }): { functions: { malloc_trim(pad: bigint): number } };
}

let trim: (() => number) | null | undefined;

/**
 * Returns the free pages of the C allocator's heap to the system: glibc's `malloc_trim(0)`, called through
 * `node:ffi`. What a collection frees outside V8's heap (the buffers of HTTP/2 frames, TLS records,
 * nghttp2's own allocations) goes back to glibc's heap, between allocations that live on, so the heap
 * cannot shrink from its top and glibc keeps those pages until `malloc_trim`: 8 MiB 12 s after a 19 MiB
 * response (docs/performance.md, Memory). A no-op where the call is not available (another C library, a
 * Node.js built without FFI, or an FFI whose interface changed: it is experimental in Node.js 26). Returns
 * whether memory was returned (1), none could be (0), or the call is not available (undefined).
 */
export function trimMalloc(): number | undefined {
  if (trim === undefined) {
    // node:ffi says once, on stderr, that it is experimental: known and deliberate here, so not repeated
    // in the agent's log
    const emitWarning = process.emitWarning;
    process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
      if (String(warning).startsWith('FFI is an experimental feature')) return;
      (emitWarning as (w: string | Error, ...r: unknown[]) => void).call(process, warning, ...rest);
    }) as typeof process.emitWarning;
    try {
      const ffi = createRequire(import.meta.url)('node:ffi') as Ffi;
      const { functions } = ffi.dlopen(null, { malloc_trim: { arguments: ['u64'], return: 'i32' } });
      trim = () => {
        try {
          return functions.malloc_trim(0n);
        } catch {
          // an interface that changed under the call: never again, and never an error from a timer
          trim = null;
          return 0;
        }
      };
    } catch {
      trim = null;
    } finally {
      process.emitWarning = emitWarning;
    }
  }
  return trim?.() ?? undefined;
}

/** Runs one full garbage collection `delayMs` from now, unless one is already scheduled. */
export function releaseMemorySoon(delayMs = 5000): void {
  if (timer) return;
  timer = setTimeout(() => {
    timer = undefined;
    fullGc();
  }, delayMs);
  timer.unref();
}

export interface MemoryWatchOptions {
  /** How often the resident set is read (default 5 s; the timer never keeps the process alive). */
  readonly intervalMs?: number;
  /** Growth over the resident set after the last collection that triggers one (default 4 MiB). */
  readonly growthBytes?: number;
  /** Seams for tests: the resident set in bytes, and the full collection. */
  readonly rss?: () => number;
  readonly collect?: () => void;
}

/**
 * Returns memory after any burst of work, not only large xDS responses: scrapes that merge Envoy's
 * statistics, probes, pushes and DNS queries allocate steadily, V8 sizes its old generation up to match,
 * and an idle process then keeps it (+26-42 MiB over a soak of 1,000 scrapes, probes and pushes, where
 * pilot-agent returns to its baseline). Every `intervalMs` the resident set is compared with what it was
 * after the last collection; once it has grown by `growthBytes`, one full collection runs and the level
 * after it is the new baseline (so memory that a collection cannot return triggers no further ones). Cost:
 * reading the resident set every 5 s, and 5-15 ms of collection after each 4 MiB of growth.
 */
export function releaseMemoryWhenGrown(o: MemoryWatchOptions = {}): { stop(): void } {
  const rss = o.rss ?? ((): number => process.memoryUsage.rss());
  const collect = o.collect ?? fullGc;
  const growth = o.growthBytes ?? 4 * 1024 * 1024;
  let baseline = rss();
  const t = setInterval(() => {
    const now = rss();
    if (now < baseline) baseline = now;
    else if (now - baseline >= growth) {
      collect();
      baseline = rss();
    }
  }, o.intervalMs ?? 5000);
  t.unref();
  return { stop: () => clearInterval(t) };
}
