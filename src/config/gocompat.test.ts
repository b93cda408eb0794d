import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

void describe('Go durations', () => {
  void it('parses what time.ParseDuration parses, exactly', () => {
    assert.equal(parseGoDurationNs('0'), 0n);
    assert.equal(parseGoDurationNs('5s'), 5_000_000_000n);
    assert.equal(parseGoDurationNs('+5s'), 5_000_000_000n);
    assert.equal(parseGoDurationNs('-1.5h'), -5_400_000_000_000n);
    assert.equal(parseGoDurationNs('.5s'), 500_000_000n);
    assert.equal(parseGoDurationNs('1.s'), 1_000_000_000n);
    assert.equal(parseGoDurationNs('1h15m30.918273645s'), 4530_918_273_645n);
    assert.equal(parseGoDurationNs('1ms2us3ns'), 1_002_003n);
    assert.equal(parseGoDurationNs('2µs'), 2_000n);
  });
  void it('rejects bad input with Go messages', () => {
    assert.throws(() => parseGoDurationNs('5x'), /time: unknown unit "x" in duration "5x"/);
    assert.throws(() => parseGoDurationNs('10'), /time: missing unit in duration "10"/);
    assert.throws(() => parseGoDurationNs(''), /time: invalid duration ""/);
    assert.throws(() => parseGoDurationNs('s'), /invalid duration/);
    assert.throws(() => parseGoDurationNs('.s'), /invalid duration/);
    assert.throws(() => parseGoDurationNs('3000000h'), /invalid duration/);
  });
  void it('formats like Duration.String()', () => {
    assert.equal(formatGoDurationNs(0n), '0s');
    assert.equal(formatGoDurationNs(10_000_000_000n), '10s');
    assert.equal(formatGoDurationNs(600_000_000_000n), '10m0s');
    assert.equal(formatGoDurationNs(3_723_500_000_000n), '1h2m3.5s');
    assert.equal(formatGoDurationNs(1_500_000n), '1.5ms');
    assert.equal(formatGoDurationNs(2_000n), '2µs');
    assert.equal(formatGoDurationNs(7n), '7ns');
    assert.equal(formatGoDurationNs(-1_000_000_000n), '-1s');
  });
  void it('formats protobuf JSON durations with 0, 3, 6 or 9 fraction digits', () => {
    assert.equal(formatProtoDurationNs(5_000_000_000n), '5s');
    assert.equal(formatProtoDurationNs(250_000_000n), '0.250s');
    assert.equal(formatProtoDurationNs(1_000_001_000n), '1.000001s');
    assert.equal(formatProtoDurationNs(1n), '0.000000001s');
    assert.equal(formatProtoDurationNs(-1_500_000_000n), '-1.500s');
    assert.equal(parseProtoDurationNs('0.250s'), 250_000_000n);
    assert.equal(parseProtoDurationNs('-1.5s'), -1_500_000_000n);
  });
});

void describe('Go strconv', () => {
  void it('unquotes %q output and Go literals', () => {
    assert.equal(goUnquote('"a b"'), 'a b');
    assert.equal(goUnquote('"{\\"paths\\":[\\"/metrics\\"]}"'), '{"paths":["/metrics"]}');
    assert.equal(goUnquote('"tab\\tnl\\n\\x41\\u00e9\\U0001F600\\101"'), 'tab\tnl\nAé😀A');
    assert.equal(goUnquote('`raw \\n`'), 'raw \\n');
    assert.equal(goUnquote("'x'"), 'x');
  });
  void it('rejects what strconv.Unquote rejects', () => {
    for (const bad of ['abc', '"abc', '"a"b"', '"\\q"', '"\\x4"', "'ab'", '"line\nbreak"', '"\\\'"']) assert.throws(() => goUnquote(bad), /invalid syntax/, bad);
  });
  void it('quotes like %q and round-trips', () => {
    assert.equal(goQuote('a"b\\c\n\t'), '"a\\"b\\\\c\\n\\t"');
    assert.equal(goQuote('é日本'), '"é日本"');
    assert.equal(goQuote('\x01\x7f'), '"\\x01\\x7f"');
    for (const s of ['', 'plain', 'quote " and \\', 'multi\nline', '{"json":[1,2]}', 'ünïcödé ✓']) assert.equal(goUnquote(goQuote(s)), s);
  });
  void it('parses booleans and integers like ParseBool / Atoi', () => {
    assert.equal(goParseBool('T'), true);
    assert.equal(goParseBool('FALSE'), false);
    assert.equal(goParseBool('yes'), undefined);
    assert.equal(goAtoi('-12'), -12);
    assert.equal(goAtoi('1e3'), undefined);
    assert.equal(goAtoi(' 1'), undefined);
  });
  void it('joins paths like path.Join', () => {
    assert.equal(goPathJoin('./etc/istio/proxy', 'envoy-rev.json'), 'etc/istio/proxy/envoy-rev.json');
    assert.equal(goPathJoin('/tmp/x/', 'XDS'), '/tmp/x/XDS');
    assert.equal(goPathJoin('a/../b', 'c'), 'b/c');
    assert.equal(goPathJoin('', 'f'), 'f');
  });
});
