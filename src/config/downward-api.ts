// The Kubernetes downward-API files pilot-agent reads (`./etc/istio/pod/labels`, `.../annotations`):
// one `key="value"` per line, the value quoted as Go's %q writes it. A value that does not unquote
// rejects the whole file, as Istio's ParseDownwardAPI does. Lines without `=` are skipped.
import { goQuote, goUnquote } from './gocompat.js';

export function parseDownwardApi(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split('\n').forEach((line, i) => {
    const eq = line.indexOf('=');
    if (eq < 0) return;
    const raw = line.slice(eq + 1);
    try {
      out[line.slice(0, eq)] = goUnquote(raw);
    } catch {
      throw new Error(`line ${i + 1}: failed to unquote ${raw}: invalid syntax`);
    }
  });
  return out;
}

/** Writes a map in the downward-API format (used by tests and tools). */
export function formatDownwardApi(values: Readonly<Record<string, string>>): string {
  return Object.entries(values)
    .map(([k, v]) => `${k}=${goQuote(v)}`)
    .join('\n');
}
