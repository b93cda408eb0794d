// YAML text for a JSON value: the `Effective config:` line pilot-agent logs at start-up (it prints the
// ProxyConfig as YAML). Written here rather than with the `yaml` package, which the agent keeps for
// parsing: loading that package costs 15-20 ms of start-up before Envoy can be spawned (docs/performance.md),
// for one log line, while most pods never give the agent a YAML input to parse (the injector passes
// PROXY_CONFIG as JSON). The output is block-style YAML with keys sorted, as
// `yaml.stringify(v, { sortMapEntries: true, lineWidth: 0 })` prints a ProxyConfig; a string is written
// plain only when it reads back as the same string in YAML 1.1 and 1.2, else double-quoted (JSON's string
// escapes are valid in YAML). src/config/yaml-emit.property.test.ts checks that every JSON value reads
// back unchanged with the `yaml` package in both versions.

/** YAML 1.1 and 1.2 words that read as booleans, null or special floats. */
const KEYWORD = /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL|~|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
/** Characters a plain scalar may hold here (no spaces, no indicators that start or end a construct). */
const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./:@+=-]*$/;
/**
 * What YAML 1.1 might read as a number (also `.` and `-._`: the `yaml` package reads them as NaN), a
 * sexagesimal number or a timestamp: only digits, hex letters and number punctuation, with a digit or with
 * nothing but punctuation. Conservative: `fe80` is quoted too.
 */
const numberish = (s: string): boolean => /^[-+0-9_:.a-fA-FoOxX]*$/.test(s) && (/[0-9]/.test(s) || /^[-+._:]*$/.test(s));

function plainOk(s: string): boolean {
  // a ':' is a mapping indicator only before a space or at the end; '...' at a line start ends a document
  return PLAIN.test(s) && !KEYWORD.test(s) && !numberish(s) && !s.endsWith(':') && !s.startsWith('...') && s !== '=';
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return plainOk(v) ? v : JSON.stringify(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : v > 0 ? '.inf' : v < 0 ? '-.inf' : '.nan';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  return JSON.stringify(v) ?? 'null';
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isEmpty = (v: unknown): boolean => (Array.isArray(v) ? v.length === 0 : isMap(v) && Object.keys(v).length === 0);
const empty = (v: unknown): string => (Array.isArray(v) ? '[]' : '{}');

function lines(v: unknown, indent: string, out: string[]): void {
  if (Array.isArray(v)) {
    for (const item of v) {
      if ((isMap(item) || Array.isArray(item)) && !isEmpty(item)) {
        const sub: string[] = [];
        lines(item, '', sub);
        // the first line follows the dash; the rest line up under it
        out.push(`${indent}- ${sub[0]!}`, ...sub.slice(1).map((l) => `${indent}  ${l}`));
      } else out.push(`${indent}- ${isEmpty(item) ? empty(item) : scalar(item)}`);
    }
    return;
  }
  if (isMap(v)) {
    for (const k of Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const val = v[k];
      if (val === undefined) continue;
      const key = scalar(k);
      if ((isMap(val) || Array.isArray(val)) && !isEmpty(val)) {
        out.push(`${indent}${key}:`);
        lines(val, `${indent}  `, out);
      } else out.push(`${indent}${key}: ${isEmpty(val) ? empty(val) : scalar(val)}`);
    }
    return;
  }
  out.push(`${indent}${scalar(v)}`);
}

/** Block-style YAML for a JSON value, map keys sorted, ending with a newline. */
export function toYaml(value: unknown): string {
  if (isEmpty(value)) return `${empty(value)}\n`;
  const out: string[] = [];
  lines(value, '', out);
  return `${out.join('\n')}\n`;
}
