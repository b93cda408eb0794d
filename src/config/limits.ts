// Size and shape limits for input that comes from outside the process, so that no input can make
// start-up (or a hot-restart reload) slow, exhaust memory or overflow the stack. pilot-agent has none
// of these limits; each is far above anything Kubernetes or a real configuration produces:
//
//   - files (the downward-API annotations/labels files, the --meshConfig file): 1 MiB. It is the size
//     limit of a ConfigMap, and four times Kubernetes' 256 KiB limit on all of a pod's annotations
//     together (the kubelet writes each value Go-quoted, which only grows it for control characters);
//   - one YAML/JSON value given in the environment or an annotation (PROXY_CONFIG, the
//     proxy.istio.io/config annotation, ISTIO_METAJSON_*): 256 KiB, Kubernetes' annotation limit
//     (Linux itself caps one environment string at 128 KiB);
//   - YAML/JSON nesting: 100 levels (a ProxyConfig is at most 6 deep; the `yaml` composer overflows the
//     stack at about 800, and V8 can abort the process when that happens twice);
//   - YAML aliases: 100 per document, each expanding to at most 100 nodes (the `yaml` package's
//     maxAliasCount; it stops "billion laughs" expansion, and the cap on aliases bounds the time the
//     package spends resolving them, which grows with aliases x nodes).
//
// A value over a limit is a configuration problem like any other: reported with its source, start-up
// stops (exit 255), a reload is rejected.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export const KIB = 1024;
export const MIB = 1024 * KIB;
/** Largest input file read (downward-API files, mesh config). */
export const MAX_FILE_BYTES = 1 * MIB;
/** Largest YAML/JSON value from the environment or an annotation. */
export const MAX_VALUE_BYTES = 256 * KIB;
/** Deepest YAML/JSON nesting accepted (a scalar at the top is depth 0, `{"a":1}` is 1). */
export const MAX_NESTING_DEPTH = 100;
/** Most YAML aliases (`*name`) accepted in one document. */
export const MAX_YAML_ALIASES = 100;

/** "1 MiB", "256 KiB", "17 bytes". */
export function formatBytes(n: number): string {
  if (n >= MIB && n % MIB === 0) return `${n / MIB} MiB`;
  if (n >= KIB && n % KIB === 0) return `${n / KIB} KiB`;
  return `${n} bytes`;
}

/** The problem with a value larger than `max` bytes (UTF-8), or undefined when it fits. */
export function valueSizeProblem(value: string, max = MAX_VALUE_BYTES): string | undefined {
  // a UTF-8 byte is at most one UTF-16 unit, and a unit at most 3 bytes: most values need no count
  if (value.length * 3 <= max) return undefined;
  const n = Buffer.byteLength(value, 'utf8');
  return n > max ? `value is ${formatBytes(n)}, larger than the ${formatBytes(max)} limit` : undefined;
}

export class InputTooLargeError extends Error {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`file is ${formatBytes(size)}, larger than the ${formatBytes(limit)} limit`);
    this.name = 'InputTooLargeError';
  }
}

/**
 * Reads a UTF-8 text file of at most `max` bytes (invalid UTF-8 becomes U+FFFD, as readFile does).
 * Throws InputTooLargeError without reading a larger file; other errors are fs errors (ENOENT, EISDIR, ...).
 * Synchronous: the configuration is read on the way to Envoy's spawn, where the main thread has nothing
 * else to do (src/lib/files.ts says why and what it saves).
 */
export function readTextFileLimitedSync(path: string, max = MAX_FILE_BYTES): string {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    if (st.isFile() && st.size > max) throw new InputTooLargeError(st.size, max);
    // read at most max + 1 bytes: a file that grows (or is not a regular file) is still bounded
    const buf = Buffer.alloc(Math.min(max + 1, st.isFile() ? st.size + 1 : max + 1));
    let len = 0;
    for (;;) {
      if (len === buf.length) break;
      const bytesRead = readSync(fd, buf, len, buf.length - len, null);
      if (bytesRead === 0) break;
      len += bytesRead;
    }
    if (len > max) throw new InputTooLargeError(len, max);
    return buf.toString('utf8', 0, len);
  } finally {
    closeSync(fd);
  }
}

/** True when a parsed JSON value nests deeper than `max` (iterative: safe for any depth). */
export function nestingExceeds(value: unknown, max = MAX_NESTING_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d + 1 > max) return true;
    for (const x of Array.isArray(v) ? v : Object.values(v)) if (typeof x === 'object' && x !== null) stack.push([x, d + 1]);
  }
  return false;
}

/** Shortens a long string for an error message: the first `max` characters and the full length. */
export function clip(s: string, max = 200): string {
  if (s.length <= max) return s;
  // do not cut a surrogate pair in half
  const end = /[\uD800-\uDBFF]/.test(s[max - 1]!) ? max - 1 : max;
  return `${s.slice(0, end)}…(${s.length} characters)`;
}

/**
 * A short JSON-like rendering of a value for error messages: JSON for small values, shortened with "…"
 * past `max` characters or 4 levels; never throws (Infinity and NaN print as such).
 */
export function preview(value: unknown, max = 120): string {
  let out = '';
  const add = (s: string): boolean => {
    out += s;
    return out.length <= max;
  };
  const walk = (v: unknown, depth: number): boolean => {
    if (typeof v === 'string') return add(JSON.stringify(clip(v, max)));
    if (typeof v === 'number') return add(Number.isFinite(v) ? JSON.stringify(v) : String(v));
    if (typeof v !== 'object' || v === null) return add(String(v));
    const arr = Array.isArray(v);
    if (depth >= 4) return add(arr ? '[…]' : '{…}');
    if (!add(arr ? '[' : '{')) return false;
    if (arr) {
      for (let i = 0; i < v.length; i++) if ((i > 0 && !add(',')) || !walk(v[i], depth + 1)) return false;
      return add(']');
    }
    let first = true;
    for (const k in v) {
      if (!Object.hasOwn(v, k)) continue;
      if (!first && !add(',')) return false;
      first = false;
      if (!add(`${JSON.stringify(clip(k, max))}:`) || !walk((v as Record<string, unknown>)[k], depth + 1)) return false;
    }
    return add('}');
  };
  walk(value, 0);
  return out.length > max ? `${out.slice(0, max)}…` : out;
}

/**
 * Sets an own enumerable property, also for the key `__proto__` (which a plain assignment would take
 * as the prototype, dropping the key or, for an object value, changing the object's prototype).
 */
export function setOwn<T>(obj: Record<string, T>, key: string, value: NoInfer<T>): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}
