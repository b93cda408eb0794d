// The Kubernetes downward-API files pilot-agent reads (`./etc/istio/pod/labels`, `.../annotations`):
// one `key="value"` per line, the value quoted as Go's %q writes it. A value that does not unquote
// rejects the whole file, as Istio's ParseDownwardAPI does. Lines without `=` are skipped.
// The files are read with a size limit (limits.ts: MAX_FILE_BYTES) by the loader.
import { goQuote, goUnquote } from './gocompat.js';
import { clip, setOwn } from './limits.js';

/** Parses the file's text. Throws an Error `line N: failed to unquote <value>: invalid syntax`. */
export function parseDownwardApi(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split('\n').forEach((line, i) => {
    const eq = line.indexOf('=');
    if (eq < 0) return;
    const raw = line.slice(eq + 1);
    let value: string;
    try {
      value = goUnquote(raw);
    } catch {
      throw new Error(`line ${i + 1}: failed to unquote ${clip(raw)}: invalid syntax`);
    }
    setOwn(out, line.slice(0, eq), value);
  });
  return out;
}

/** Writes a map in the downward-API format (used by tests and tools). */
export function formatDownwardApi(values: Readonly<Record<string, string>>): string {
  return Object.entries(values)
    .map(([k, v]) => `${k}=${goQuote(v)}`)
    .join('\n');
}
