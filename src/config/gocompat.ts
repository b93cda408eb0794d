// Small re-implementations of Go standard-library parsing/formatting rules that pilot-agent's inputs
// and outputs depend on: time.ParseDuration (exact, in nanoseconds), Duration.String(), protobuf JSON
// durations, strconv.Unquote / strconv.Quote, strconv.Atoi and strconv.ParseBool.

import { posix } from 'node:path';

const NS_PER_UNIT: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n,
  'μs': 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX_INT64 = (1n << 63n) - 1n;

/** Go's time.ParseDuration, exact, in nanoseconds. Throws an Error with Go's message on bad input. */
export function parseGoDurationNs(text: string): bigint {
  const orig = text;
  let s = text;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') throw new Error(`time: invalid duration ${goQuote(orig)}`);
  let total = 0n;
  while (s !== '') {
    const m = /^(\d*)(?:\.(\d*))?/.exec(s)!;
    const intPart = m[1] ?? '';
    const fracPart = m[2];
    if (intPart === '' && (fracPart === undefined || fracPart === '')) throw new Error(`time: invalid duration ${goQuote(orig)}`);
    s = s.slice(m[0].length);
    const u = /^[^0-9.]*/.exec(s)![0];
    if (u === '') throw new Error(`time: missing unit in duration ${goQuote(orig)}`);
    const unit = NS_PER_UNIT[u];
    if (unit === undefined) throw new Error(`time: unknown unit ${goQuote(u)} in duration ${goQuote(orig)}`);
    s = s.slice(u.length);
    // more than 19 significant digits is past int64 nanoseconds for any unit (Go: "invalid duration");
    // checked before BigInt() so that a long run of digits costs no more than reading it
    const digits = intPart.replace(/^0+/, '');
    if (digits.length > 19) throw new Error(`time: invalid duration ${goQuote(orig)}`);
    let v = BigInt(digits === '' ? '0' : digits) * unit;
    if (fracPart) v += (BigInt(fracPart) * unit) / 10n ** BigInt(fracPart.length);
    total += v;
    if (total > MAX_INT64 + (neg ? 1n : 0n)) throw new Error(`time: invalid duration ${goQuote(orig)}`);
  }
  return neg ? -total : total;
}

/** Go's time.Duration.String(): "1h2m3.5s", "500ms", "1.5µs", "0s". */
export function formatGoDurationNs(ns: bigint): string {
  if (ns === 0n) return '0s';
  const neg = ns < 0n;
  let u = neg ? -ns : ns;
  let out: string;
  if (u < 1_000_000_000n) {
    let unit: string;
    let div: bigint;
    if (u < 1_000n) return `${neg ? '-' : ''}${u}ns`;
    if (u < 1_000_000n) {
      unit = 'µs';
      div = 1_000n;
    } else {
      unit = 'ms';
      div = 1_000_000n;
    }
    out = `${fracString(u, div)}${unit}`;
  } else {
    const h = u / 3_600_000_000_000n;
    u -= h * 3_600_000_000_000n;
    const m = u / 60_000_000_000n;
    u -= m * 60_000_000_000n;
    out = `${h > 0n ? `${h}h` : ''}${h > 0n || m > 0n ? `${m}m` : ''}${fracString(u, 1_000_000_000n)}s`;
  }
  return neg ? `-${out}` : out;
}

function fracString(v: bigint, div: bigint): string {
  const whole = v / div;
  const rest = v % div;
  if (rest === 0n) return String(whole);
  const digits = String(div).length - 1;
  return `${whole}.${String(rest).padStart(digits, '0').replace(/0+$/, '')}`;
}

/** Protobuf JSON duration ("5s", "0.100s", "1.000000001s"), as golang/protobuf's jsonpb writes it. */
export function formatProtoDurationNs(ns: bigint): string {
  const neg = ns < 0n;
  const u = neg ? -ns : ns;
  const s = u / 1_000_000_000n;
  let frac = String(u % 1_000_000_000n).padStart(9, '0');
  if (frac.endsWith('000')) frac = frac.slice(0, 6);
  if (frac.endsWith('000')) frac = frac.slice(0, 3);
  if (frac === '000') frac = '';
  return `${neg ? '-' : ''}${s}${frac ? `.${frac}` : ''}s`;
}

/** Parses a protobuf JSON duration as written by formatProtoDurationNs. */
export function parseProtoDurationNs(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(text);
  if (!m) return parseGoDurationNs(text);
  const v = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0') || '0');
  return m[1] ? -v : v;
}

export const nsToMs = (ns: bigint): number => Number(ns) / 1e6;

/** Go's strconv.ParseBool. */
export function goParseBool(raw: string): boolean | undefined {
  switch (raw) {
    case '1': case 't': case 'T': case 'true': case 'TRUE': case 'True':
      return true;
    case '0': case 'f': case 'F': case 'false': case 'FALSE': case 'False':
      return false;
    default:
      return undefined;
  }
}

/** Go's strconv.Atoi (decimal, optional sign, 64-bit range). */
export function goAtoi(raw: string): number | undefined {
  if (!/^[+-]?\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Go's strconv.Quote (what `%q` prints for a string). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"': out += '\\"'; continue;
      case '\\': out += '\\\\'; continue;
      case '\x07': out += '\\a'; continue;
      case '\b': out += '\\b'; continue;
      case '\f': out += '\\f'; continue;
      case '\n': out += '\\n'; continue;
      case '\r': out += '\\r'; continue;
      case '\t': out += '\\t'; continue;
      case '\v': out += '\\v'; continue;
    }
    if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    // a lone surrogate is not a character: written out as UTF-8 it is U+FFFD, and so Go sees it
    else if (cp >= 0xd800 && cp < 0xe000) out += '\ufffd';
    else if (ch !== ' ' && !/[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch)) {
      out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return `${out}"`;
}

const UTF8 = new TextDecoder('utf-8', { fatal: false });

/**
 * Go's strconv.Unquote for double-quoted, back-quoted and single-character quoted literals. As in Go,
 * `\x` and octal escapes are bytes: a run of them is decoded as UTF-8 (`"\xc3\xa9"` is "é"), and a
 * byte that is not valid UTF-8 becomes U+FFFD (what Go's encoding/json writes for it later).
 * Throws Error('invalid syntax').
 */
export function goUnquote(s: string): string {
  const fail = (): never => {
    throw new Error('invalid syntax');
  };
  if (s.length < 2) fail();
  const q = s[0];
  if (q !== s[s.length - 1]) fail();
  const body = s.slice(1, -1);
  if (q === '`') {
    if (body.includes('`')) fail();
    return body.replace(/\r/g, '');
  }
  if (q !== '"' && q !== "'") fail();
  if (body.includes('\n')) fail();
  let out = '';
  /** Go characters read (a literal code point or one escape): a single-quoted literal holds one. */
  let count = 0;
  let bytes: number[] = [];
  const flush = (): void => {
    if (bytes.length === 0) return;
    out += UTF8.decode(Uint8Array.from(bytes));
    bytes = [];
  };
  let i = 0;
  while (i < body.length) {
    const c = body[i]!;
    count++;
    if (c === q) fail();
    if (c !== '\\') {
      flush();
      const cp = body.codePointAt(i)!;
      const n = cp > 0xffff ? 2 : 1;
      out += body.slice(i, i + n);
      i += n;
      continue;
    }
    const e = body[i + 1];
    i += 2;
    if (e === 'x' || (e !== undefined && e >= '0' && e <= '7')) {
      // a byte
      let v: number;
      if (e === 'x') {
        const hex = body.slice(i, i + 2);
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) fail();
        v = parseInt(hex, 16);
        i += 2;
      } else {
        const oct = body.slice(i - 1, i + 2);
        if (!/^[0-7]{3}$/.test(oct)) fail();
        v = parseInt(oct, 8);
        if (v > 255) fail();
        i += 2;
      }
      bytes.push(v);
      continue;
    }
    flush();
    switch (e) {
      case 'a': out += '\x07'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case '\\': out += '\\'; break;
      case '"':
      case "'":
        if (e !== q) fail();
        out += e;
        break;
      case 'u':
      case 'U': {
        const n = e === 'u' ? 4 : 8;
        const hex = body.slice(i, i + n);
        if (hex.length !== n || !/^[0-9a-fA-F]+$/.test(hex)) fail();
        const v = parseInt(hex, 16);
        if (v > 0x10ffff || (v >= 0xd800 && v < 0xe000)) fail();
        out += String.fromCodePoint(v);
        i += n;
        break;
      }
      default:
        fail();
    }
  }
  flush();
  if (q === "'" && count !== 1) fail();
  return out;
}

/** Go's `path.Join`: joined and cleaned; a relative result stays relative without a leading "./". */
export function goPathJoin(...parts: string[]): string {
  const nonEmpty = parts.filter((x) => x !== '');
  if (nonEmpty.length === 0) return '';
  const joined = posix.normalize(nonEmpty.join('/'));
  const trimmed = joined.length > 1 ? joined.replace(/\/$/, '') : joined;
  return trimmed.startsWith('./') ? trimmed.slice(2) || '.' : trimmed;
}
