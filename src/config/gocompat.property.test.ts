// Property tests for the Go-compatible parsers in gocompat.ts, which read text from outside the process
// (durations from the environment and ProxyConfig, Go-quoted values from the downward-API files):
//   - on any input they answer or throw an Error with Go's message ("time: ...", "invalid syntax"),
//     never another error, and stay linear on long input;
//   - what a serializer writes parses back to the same value (durations, quoting);
//   - parsing agrees with Go where Go defines it (sums of duration parts, `\x` escapes are bytes).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, durationSoup, goDurationText, INT64_MAX, INT64_MIN } from '../../test/helpers/config-arbitraries.js';
import {
  formatGoDurationNs,
  formatProtoDurationNs,
  goAtoi,
  goParseBool,
  goPathJoin,
  goQuote,
  goUnquote,
  parseGoDurationNs,
  parseProtoDurationNs,
} from './gocompat.js';

const RUNS = { numRuns: 1000 };
const int64 = fc.bigInt(INT64_MIN, INT64_MAX);
const soupOfDigits = fc.array(fc.constantFrom('0', '1', '9', '-', '+', ' ', 'e', '.', '99999999999999999999'), { maxLength: 8 }).map((a) => a.join(''));

/** Runs f; returns its value, or the Error it threw when the message matches `allowed`. Anything else fails. */
function outcome<T>(f: () => T, allowed: RegExp): T | Error {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error) throw new Error(`threw ${String((e as Error)?.name)}: ${String((e as Error)?.message)} (only Error is allowed)`);
    assert.match(e.message, allowed);
    return e;
  }
}

void describe('Go durations (time.ParseDuration)', () => {
  void it('any text: a value in int64 nanoseconds, or a "time: ..." Error', () => {
    fc.assert(
      fc.property(fc.oneof(durationSoup, anyString(30)), (text) => {
        const r = outcome(() => parseGoDurationNs(text), /^time: (invalid duration|missing unit in duration|unknown unit) /);
        if (typeof r === 'bigint') assert.ok(r >= INT64_MIN && r <= INT64_MAX, `${r} is out of int64`);
      }),
      { numRuns: 3000 },
    );
  });

  void it('Duration.String() output parses back to the same nanoseconds, for every int64', () => {
    fc.assert(
      fc.property(int64, (ns) => {
        assert.equal(parseGoDurationNs(formatGoDurationNs(ns)), ns);
      }),
      RUNS,
    );
  });

  void it('protobuf JSON durations round-trip, for every int64', () => {
    fc.assert(
      fc.property(int64, (ns) => {
        const text = formatProtoDurationNs(ns);
        assert.match(text, /^-?\d+(\.\d{3}|\.\d{6}|\.\d{9})?s$/);
        assert.equal(parseProtoDurationNs(text), ns);
      }),
      RUNS,
    );
  });

  void it('a duration is the sum of its parts, and "-" negates it (as in Go)', () => {
    fc.assert(
      fc.property(goDurationText, goDurationText, (a, b) => {
        const strip = (s: string) => s.replace(/^[-+]/, '');
        const x = parseGoDurationNs(strip(a));
        const y = parseGoDurationNs(strip(b));
        assert.equal(parseGoDurationNs(strip(a) + strip(b)), x + y);
        assert.equal(parseGoDurationNs(`-${strip(a)}`), -x);
        assert.equal(parseGoDurationNs(`+${strip(a)}`), x);
      }),
      RUNS,
    );
  });

  void it('past int64 is "invalid duration", also for long runs of digits (no conversion of huge numbers)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 20, max: 200_000 }), fc.constantFrom('ns', 's', 'h'), fc.constantFrom('', '0000', '1.5'), (digits, unit, tail) => {
        const text = `${'9'.repeat(digits)}${tail}${unit}`;
        assert.throws(() => parseGoDurationNs(text), /^Error: time: invalid duration "9{20}/);
      }),
      { numRuns: 50 },
    );
    // leading zeros are not significant
    assert.equal(parseGoDurationNs(`${'0'.repeat(100_000)}1s`), 1_000_000_000n);
    // a long fraction is fine (Go ignores digits past its precision; here it is exact)
    assert.equal(parseGoDurationNs(`1.${'0'.repeat(100_000)}1s`), 1_000_000_000n);
  });
});

void describe('Go quoting (strconv.Quote / strconv.Unquote)', () => {
  void it('any text: a string, or Error("invalid syntax")', () => {
    const quotedSoup = fc
      .tuple(fc.constantFrom('"', "'", '`', ''), fc.array(fc.oneof(fc.constantFrom('\\', '\\x', '\\u', '\\U', '\\0', '\\377', '\\400', '"', "'", '`', '\n', 'ff', 'd800', '0010ffff', '00110000'), anyString(3)), { maxLength: 12 }), fc.constantFrom('"', "'", '`', ''))
      .map(([a, body, b]) => a + body.join('') + b);
    fc.assert(
      fc.property(fc.oneof(quotedSoup, anyString(30)), (text) => {
        const r = outcome(() => goUnquote(text), /^invalid syntax$/);
        if (typeof r === 'string') assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(r), 'a lone surrogate in the result');
      }),
      { numRuns: 3000 },
    );
  });

  void it('%q output unquotes to the same string, for every string; it is one printable line', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ unit: 'binary-ascii', maxLength: 60 })), (s) => {
        const q = goQuote(s);
        assert.match(q, /^"[^\n\r\t\0]*"$/s);
        assert.equal(goUnquote(q), s);
      }),
      { numRuns: 3000 },
    );
  });

  void it('\\x and octal escapes are bytes: the UTF-8 bytes of any string, escaped, unquote to the string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), fc.boolean(), (s, octal) => {
        const esc = [...Buffer.from(s, 'utf8')].map((b) => (octal ? `\\${b.toString(8).padStart(3, '0')}` : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
        assert.equal(goUnquote(`"${esc}"`), s);
      }),
      RUNS,
    );
    // a byte that is not UTF-8 is U+FFFD (what Go's encoding/json writes for it)
    assert.equal(goUnquote('"a\\xffb"'), 'a\uFFFDb');
    // a single-quoted literal is one character, however it is written
    assert.equal(goUnquote("'\\xff'"), '\uFFFD');
    assert.throws(() => goUnquote("'\\xc3\\xa9'"), /invalid syntax/);
    assert.equal(goUnquote("'😀'"), '😀');
  });

  void it('long values unquote in linear time (one 512 KiB value)', () => {
    const s = 'x\\"é\\u00e9\\x41'.repeat(40_000);
    assert.equal(goUnquote(`"${s}"`).length, 40_000 * 5);
    const big = 'ü\n\t"'.repeat(100_000);
    assert.equal(goUnquote(goQuote(big)), big);
  });
});

void describe('Go strconv.ParseBool / Atoi, path.Join', () => {
  const TRUE = ['1', 't', 'T', 'true', 'TRUE', 'True'];
  const FALSE = ['0', 'f', 'F', 'false', 'FALSE', 'False'];

  void it('ParseBool accepts exactly its twelve spellings and never throws', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...TRUE, ...FALSE, 'yes', 'on', ' true', 'tRUE', ''), anyString(8)), (s) => {
        const b = goParseBool(s);
        assert.equal(b, TRUE.includes(s) ? true : FALSE.includes(s) ? false : undefined);
      }),
      RUNS,
    );
  });

  void it('Atoi: safe integers round-trip; anything else is undefined, never NaN or an unsafe number', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        assert.equal(goAtoi(String(n)), n);
        assert.equal(goAtoi(`+${n}`.replace('+-', '-')), n);
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.oneof(soupOfDigits, anyString(30)), (s) => {
        const n = goAtoi(s);
        if (n !== undefined) assert.ok(Number.isSafeInteger(n) && /^[+-]?\d+$/.test(s), `${s} -> ${n}`);
      }),
      RUNS,
    );
  });

  void it('path.Join never throws and returns a clean path', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom('', '.', '..', '/', '//', 'a', 'b/', '/c', './d', 'e/../f'), anyString(5)), { maxLength: 5 }), (parts) => {
        const p = goPathJoin(...parts);
        if (p !== '') assert.ok(p === '/' || (!p.endsWith('/') && !p.includes('//') && !p.startsWith('./')), p);
      }),
      RUNS,
    );
  });
});
