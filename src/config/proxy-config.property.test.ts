// Property tests for the ProxyConfig decoder (applyProxyConfigLayer), which turns the parsed YAML/JSON
// of the mesh config, PROXY_CONFIG and the proxy.istio.io/config annotation into the effective config:
//   - any value (wrong types, huge and non-finite numbers, deep nesting, cycles from aliases): a result
//     and a list of errors, never an exception; every error starts with the path of the bad field, and
//     stays short;
//   - valid configs generated from the schema decode without errors; the canonical form they decode to
//     is a fixed point (decoding proxyConfigToJson(x) gives x back) and proto (snake_case) names mean the
//     same as lowerCamel ones;
//   - durations: any Go duration decodes to its protobuf JSON form.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, deepValue, goDurationText, hostileJson, INT64_MAX, INT64_MIN, messageArb, toProtoNames } from '../../test/helpers/config-arbitraries.js';
import { formatGoDurationNs, formatProtoDurationNs, parseGoDurationNs } from './gocompat.js';
import { applyProxyConfigLayer, byteOrder, MESSAGES, proxyConfigToJson, type ProxyConfig } from './proxy-config.js';

const FIELDS = MESSAGES.ProxyConfig!;
const NAMES = FIELDS.flatMap((f) => [f.json, f.proto]);
const JSON_NAMES = new Set(FIELDS.map((f) => f.json));

/** Decodes; any throw fails the property. Checks the shape of the result and of every error. */
function decode(base: ProxyConfig, layer: unknown) {
  const r = applyProxyConfigLayer(base, layer);
  for (const k of Object.keys(r.value)) assert.ok(JSON_NAMES.has(k), `result has a field outside the schema: ${k}`);
  for (const e of r.errors) {
    assert.equal(typeof e, 'string');
    assert.ok(e.length <= 600, `error message too long (${e.length}): ${e.slice(0, 100)}`);
  }
  return r;
}

/** An object with some schema fields (under either name) and some unknown ones, all with hostile values. */
const hostileLayer = fc.dictionary(fc.oneof(fc.constantFrom(...NAMES), anyString(6)), hostileJson, { maxKeys: 6 });

void describe('applyProxyConfigLayer', () => {
  void it('any value: a result and errors, each error naming the field it is about', () => {
    fc.assert(
      fc.property(fc.oneof(hostileLayer, hostileJson), (layer) => {
        const r = decode({}, layer);
        if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) {
          if (layer !== null) assert.deepEqual(r.errors, [`cannot unmarshal ${Array.isArray(layer) ? 'array' : typeof layer} into a ProxyConfig (want a mapping)`]);
          return;
        }
        const keys = Object.keys(layer);
        for (const e of r.errors) assert.ok(keys.some((k) => e.startsWith(`${k}:`) || e.startsWith(`${k}.`) || e.startsWith(`${k}[`)), `error names no field of the input: ${e}`);
      }),
      { numRuns: 3000 },
    );
  });

  void it('nested messages too: every error path leads to the bad value', () => {
    // a valid config with one value somewhere replaced by a hostile one
    fc.assert(
      fc.property(messageArb('ProxyConfig'), fc.nat(), hostileJson, (valid, pick, bad) => {
        const paths: Array<readonly string[]> = [];
        const walk = (v: unknown, path: readonly string[]) => {
          if (path.length) paths.push(path);
          if (typeof v === 'object' && v !== null && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
        };
        walk(valid, []);
        if (!paths.length) return;
        const path = paths[pick % paths.length]!;
        const layer = structuredClone(valid);
        let at = layer as Record<string, unknown>;
        for (const k of path.slice(0, -1)) at = at[k] as Record<string, unknown>;
        at[path[path.length - 1]!] = bad;
        const r = decode({}, layer);
        const prefix = path.join('.');
        for (const e of r.errors) assert.ok(e.startsWith(prefix), `${e} is not about ${prefix}`);
      }),
      { numRuns: 2000 },
    );
  });

  void it('huge, non-finite and fractional numbers in integer fields are errors naming the field', () => {
    const intFields = FIELDS.filter((f) => !f.list && !f.map && ['int32', 'uint32'].includes(f.type.k === 'wrap' ? f.type.s : f.type.k));
    fc.assert(
      fc.property(
        fc.constantFrom(...intFields),
        fc.oneof(fc.constantFrom(Infinity, -Infinity, NaN, 1e300, -1e300, 2 ** 63, 1.5, 2 ** 32), fc.integer({ min: 20, max: 5000 }).map((n) => '9'.repeat(n))),
        (fd, v) => {
          const r = decode({}, { [fd.json]: v });
          assert.equal(r.errors.length, 1);
          assert.match(r.errors[0]!, new RegExp(`^${fd.json}: (cannot unmarshal number|value .* is out of range)`));
        },
      ),
      { numRuns: 300 },
    );
  });

  void it('deep and cyclic values are reported briefly, not rendered in full', () => {
    for (const depth of [10, 100, 10_000, 100_000]) {
      const r = decode({}, { configPath: deepValue(depth), tracing: { zipkin: { address: deepValue(depth, 'object') } } });
      assert.deepEqual(r.errors.map((e) => e.replace(/ \S+ into .*$/, '')), ['configPath: cannot unmarshal array', 'tracing.zipkin.address: cannot unmarshal object']);
    }
    const cyclic: Record<string, unknown> = { x: 1 };
    cyclic.self = cyclic;
    cyclic.tracing = cyclic;
    const r = decode({}, { ...cyclic, readinessProbe: { httpGet: cyclic }, proxyMetadata: cyclic, configPath: cyclic });
    assert.ok(r.errors.length > 0);
  });

  void it('valid configs (generated from the schema) decode without errors, to a canonical fixed point', () => {
    fc.assert(
      fc.property(messageArb('ProxyConfig'), (v) => {
        const r = decode({}, v);
        assert.deepEqual(r.errors, []);
        assert.deepEqual(r.unknown, []);
        const again = decode({}, proxyConfigToJson(r.value));
        assert.deepEqual(again.errors, []);
        assert.deepEqual(again.value, r.value);
      }),
      { numRuns: 1000 },
    );
  });

  void it('proto field names mean the same as JSON names', () => {
    fc.assert(
      fc.property(messageArb('ProxyConfig'), (v) => {
        assert.deepEqual(decode({}, toProtoNames('ProxyConfig', v)).value, decode({}, v).value);
      }),
      { numRuns: 500 },
    );
  });

  void it('any Go duration decodes to its protobuf JSON form; anything else is an error naming the field', () => {
    fc.assert(
      fc.property(fc.oneof(goDurationText, fc.bigInt(INT64_MIN, INT64_MAX).map(formatGoDurationNs)), (text) => {
        const r = decode({}, { drainDuration: text, envoyAccessLogService: { tcpKeepalive: { time: text } } });
        assert.deepEqual(r.errors, []);
        const want = formatProtoDurationNs(parseGoDurationNs(text));
        assert.equal(r.value.drainDuration, want);
        assert.equal(r.value.envoyAccessLogService?.tcpKeepalive?.time, want);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(hostileJson, (v) => {
        let valid = false;
        try {
          valid = typeof v === 'string' && parseGoDurationNs(v) !== undefined;
        } catch {
          valid = false;
        }
        const r = decode({}, { terminationDrainDuration: v });
        if (v === null || valid) assert.deepEqual(r.errors, []);
        else assert.match(r.errors.join('\n'), /^terminationDrainDuration: bad Duration: /);
      }),
      { numRuns: 1000 },
    );
  });

  void it('map keys are kept as given, __proto__ included', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(anyString(8), fc.constantFrom('__proto__', 'constructor', 'toString')), anyString(8), { minKeys: 1, maxKeys: 5 }), (m) => {
        const r = decode({}, JSON.parse(JSON.stringify({ proxyMetadata: m, runtimeValues: m })) as unknown);
        const entries = (o: object | undefined) => new Map(Object.entries(o ?? {}));
        assert.deepEqual(entries(r.value.proxyMetadata), entries(m));
        assert.deepEqual(entries(proxyConfigToJson(r.value).runtimeValues as object), entries(m));
      }),
      { numRuns: 500 },
    );
  });
});

describe('byteOrder (Go map key order)', () => {
  // strings of raw UTF-16 code units: lone and paired surrogates, BMP characters on both sides of the
  // surrogate range, ASCII; and strings sharing long prefixes, where the first difference is deep
  const unit = fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0xd7f0, max: 0xe010 }), fc.integer({ min: 0, max: 0xffff }));
  const units = fc.array(unit, { maxLength: 8 }).map((a) => String.fromCharCode(...a));
  const pair = fc.tuple(units, units, units).map(([p, a, b]) => [p + a, p + b] as const);
  it('orders as the strings\' UTF-8 bytes do (lone surrogates as U+FFFD)', () => {
    fc.assert(
      fc.property(fc.oneof(pair, fc.tuple(units, units), fc.tuple(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }))), ([a, b]) => {
        assert.equal(byteOrder(a, b), Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')), JSON.stringify([a, b]));
      }),
      { numRuns: 3000 },
    );
  });
  it('sorts U+FFFF before U+10000, though its first code unit is larger', () => {
    assert.equal(byteOrder('\uffff', '\u{10000}'), -1);
    assert.deepEqual(['b', '\u{10000}', '\uffff', 'a', ''].sort(byteOrder), ['', 'a', 'b', '\uffff', '\u{10000}']);
  });
});
