// A small flag parser with pflag/cobra semantics, driven by one declarative table per command:
// `--name=value`, `--name value`, `-n value`, `-nvalue`, `-n=value`, booleans as `--flag` or `--flag=false`,
// `--` ends flags. Unknown flags are collected (pilot-agent's cobra ignores them), never fatal here.
// Each flag may name environment variables that supply its value when the flag is not given (viper-style).

import { parseGoDuration } from '../lib/duration.js';
import { goParseBool } from '../config/gocompat.js';
import { clip } from '../config/limits.js';
import type { ConfigIssue } from '../lib/errors.js';

export type FlagType = 'string' | 'bool' | 'int' | 'duration' | 'stringArray';
export type FlagValue = string | boolean | number | string[];

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly type: FlagType;
  /** Default as the value type (durations in milliseconds). */
  readonly default: FlagValue;
  /** Environment variables read, in order, when the flag is not on the command line. */
  readonly env?: readonly string[];
  readonly help: string;
  readonly hidden?: boolean;
}

export interface ParsedFlags {
  readonly values: ReadonlyMap<string, FlagValue>;
  /** Flags given on the command line (by long name). */
  readonly set: ReadonlySet<string>;
  /** Flags whose value came from an environment variable, mapped to that variable. */
  readonly fromEnv: ReadonlyMap<string, string>;
  readonly positionals: readonly string[];
  readonly unknown: readonly string[];
  readonly issues: readonly ConfigIssue[];
}

function convert(spec: FlagSpec, raw: string, source: string, issues: ConfigIssue[]): FlagValue | undefined {
  switch (spec.type) {
    case 'string':
      return raw;
    case 'stringArray':
      return [raw];
    case 'bool': {
      const v = parseBool(raw);
      if (v === undefined) issues.push({ source, message: `invalid boolean value "${clip(raw)}" (want true or false)` });
      return v;
    }
    case 'int': {
      const t = raw.trim();
      if (!/^[+-]?(0x[0-9a-f]+|0o?[0-7]+|0b[01]+|\d+)$/i.test(t)) {
        issues.push({ source, message: `invalid integer value "${clip(raw)}"` });
        return undefined;
      }
      const n = Number(t.replace(/^([+-]?)0o?([0-7]+)$/i, (_m, s: string, d: string) => `${s}${parseInt(d, 8)}`));
      if (!Number.isSafeInteger(n)) {
        issues.push({ source, message: `integer value "${clip(raw)}" is out of range` });
        return undefined;
      }
      return n;
    }
    case 'duration':
      try {
        return parseFlagDuration(raw);
      } catch (e) {
        issues.push({ source, message: (e as Error).message });
        return undefined;
      }
  }
}

/** Go's strconv.ParseBool. */
export const parseBool = goParseBool;

/** The largest duration Go has: int64 nanoseconds (about 292 years), in milliseconds. */
const MAX_DURATION_MS = Number((1n << 63n) - 1n) / 1e6;

/**
 * A duration flag or variable value in milliseconds. Throws, as Go's time.ParseDuration fails, for a
 * malformed value and for one past int64 nanoseconds (without this check `999...9h` is Infinity, which
 * crashed `agent proxy` when it logged the flag).
 */
export function parseFlagDuration(raw: string): number {
  let ms: number;
  try {
    ms = parseGoDuration(raw);
  } catch (e) {
    // the message quotes the value: shorten a long one
    const msg = (e as Error).message;
    throw new Error(clip(raw) === raw ? msg : msg.split(raw).join(clip(raw)));
  }
  if (!Number.isFinite(ms) || Math.abs(ms) > MAX_DURATION_MS) throw new Error(`invalid duration "${clip(raw)}"`);
  return ms;
}

export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[], env: Readonly<Record<string, string | undefined>> = {}): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const values = new Map<string, FlagValue>();
  const set = new Set<string>();
  const fromEnv = new Map<string, string>();
  const positionals: string[] = [];
  const unknown: string[] = [];
  const issues: ConfigIssue[] = [];

  const assign = (spec: FlagSpec, raw: string, source: string): void => {
    const v = convert(spec, raw, source, issues);
    if (v === undefined) return;
    if (spec.type === 'stringArray' && set.has(spec.name)) values.set(spec.name, [...(values.get(spec.name) as string[]), raw]);
    else values.set(spec.name, v);
    set.add(spec.name);
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = byName.get(name);
      if (!spec) {
        unknown.push(`--${name}`);
        // pflag strips an unknown flag's value when it is the next word and not itself a flag
        if (eq < 0 && i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) i++;
        continue;
      }
      if (eq >= 0) assign(spec, arg.slice(eq + 1), `flag --${name}`);
      else if (spec.type === 'bool') assign(spec, 'true', `flag --${name}`);
      else if (i + 1 < argv.length) assign(spec, argv[++i]!, `flag --${name}`);
      else issues.push({ source: `flag --${name}`, message: 'flag needs an argument' });
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1 && arg !== '-') {
      // one character, which may be a surrogate pair
      const letter = String.fromCodePoint(arg.codePointAt(1)!);
      const spec = byShort.get(letter);
      if (!spec) {
        unknown.push(`-${letter}`);
        if (arg.length === 1 + letter.length && i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) i++;
        continue;
      }
      const src = `flag -${letter} (--${spec.name})`;
      let rest = arg.slice(1 + letter.length);
      if (rest.startsWith('=')) rest = rest.slice(1);
      else if (rest === '' && spec.type !== 'bool') {
        if (i + 1 < argv.length) rest = argv[++i]!;
        else {
          issues.push({ source: src, message: 'flag needs an argument' });
          continue;
        }
      }
      if (spec.type === 'bool') assign(spec, rest === '' ? 'true' : rest, src);
      else assign(spec, rest, src);
      continue;
    }
    positionals.push(arg);
  }

  for (const spec of specs) {
    if (set.has(spec.name)) continue;
    const envName = spec.env?.find((e) => env[e] !== undefined && env[e] !== '');
    if (envName !== undefined) {
      const v = convert(spec, env[envName]!, `env ${envName}`, issues);
      if (v !== undefined) {
        values.set(spec.name, v);
        fromEnv.set(spec.name, envName);
        continue;
      }
    }
    values.set(spec.name, spec.default);
  }
  return { values, set, fromEnv, positionals, unknown, issues };
}

export function flagString(p: ParsedFlags, name: string): string {
  return p.values.get(name) as string;
}
export function flagBool(p: ParsedFlags, name: string): boolean {
  return p.values.get(name) as boolean;
}
export function flagInt(p: ParsedFlags, name: string): number {
  return p.values.get(name) as number;
}
export function flagStrings(p: ParsedFlags, name: string): string[] {
  return p.values.get(name) as string[];
}

/** Renders a flag table as help text. */
export function flagHelp(specs: readonly FlagSpec[]): string {
  const rows = specs
    .filter((s) => !s.hidden)
    .map((s) => {
      const head = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : ` ${s.type}`}`;
      const def = s.type === 'bool' ? (s.default ? ' (default true)' : '') : s.default === '' || (Array.isArray(s.default) && !s.default.length) ? '' : ` (default ${JSON.stringify(s.default)})`;
      const env = s.env?.length ? ` [env ${s.env.join(', ')}]` : '';
      return [head, `${s.help}${def}${env}`] as const;
    });
  const w = Math.min(48, Math.max(...rows.map(([h]) => h.length)) + 2);
  return rows.map(([h, t]) => `  ${h.padEnd(w)}${t}`).join('\n');
}
