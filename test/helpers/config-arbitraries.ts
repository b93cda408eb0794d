// fast-check arbitraries shared by the property tests of the agent's input parsers (src/config,
// src/cli/flags.ts, src/bootstrap/metadata.ts, src/iptables): text that looks like the input (YAML and
// JSON soup, Go durations, quoted strings), JSON-ish values with what hurts (deep nesting, huge and
// non-finite numbers), and valid ProxyConfig values generated from the schema itself.
import fc from 'fast-check';
import { formatProtoDurationNs } from '../../src/config/gocompat.js';
import { MESSAGES, type FieldDef } from '../../src/config/proxy-config.js';

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** Any string: every code point (binary) or every byte-sized char incl. controls (binary-ascii). */
export const anyString = (maxLength = 40): fc.Arbitrary<string> =>
  fc.oneof(fc.string({ unit: 'binary', maxLength }), fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ maxLength }));

/** A string made of the given pieces (biased toward what a parser branches on). */
export const soup = (pieces: readonly string[], maxLength = 30): fc.Arbitrary<string> =>
  fc.array(fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...pieces) }, { weight: 1, arbitrary: anyString(3) }), { maxLength }).map((a) => a.join(''));

/** Text that is almost YAML or JSON: indicators, indentation, quotes, anchors, tags, scalars of every kind. */
export const yamlSoup = soup([
  '\n', '\n  ', '\n    ', ' ', '\t', ': ', ':', '- ', '-', '? ', ',', '[', ']', '{', '}', '"', "'", '\\', '#', '&a ', '*a', '&b ', '*b', '!!str ', '!!int ', '!!map ',
  '!!set ', '!!binary ', '!x ', '|', '>', '|-', '---', '...', '<<: ', '%YAML 1.1', 'a', 'b', 'key', 'drainDuration', 'proxyMetadata', 'concurrency', 'tracing',
  'zipkin', 'address', 'yes', 'no', 'on', 'null', '~', '.inf', '-.inf', '.nan', '0x1F', '0o17', '0755', '1_000', '1e400', '99999999999999999999999', '-1',
  '1.5', '5s', '1h', '2001-12-14', '\u2028', '\ufeff', '\u0000', 'é',
]);

/** Text shaped like a Go duration, valid or not. */
export const durationSoup = soup(['0', '1', '9', '00', '.', '-', '+', 'ns', 'us', 'µs', 'μs', 'ms', 's', 'm', 'h', 'x', ' ', '99999999999999999999', 'e', 'd'], 12);

/** Valid Go duration text (time.ParseDuration accepts it), without overflow by construction. */
export const goDurationText: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom('', '-', '+'),
    fc.array(
      fc.tuple(fc.nat(99_999), fc.option(fc.stringMatching(/^[0-9]{0,9}$/), { nil: undefined }), fc.constantFrom('ns', 'us', 'µs', 'μs', 'ms', 's', 'm', 'h')),
      { minLength: 1, maxLength: 4 },
    ),
  )
  .map(([sign, parts]) => sign + parts.map(([i, f, u]) => `${i}${f === undefined ? '' : `.${f}`}${u}`).join(''));

/** JSON-like values with what hurts a decoder: huge, non-finite and negative-zero numbers, long strings, nesting. */
export const hostileJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    anyString(20),
    fc.constantFrom(0, -0, 1, -1, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 63, 1e300, -1e300, Infinity, -Infinity, NaN, '99999999999999999999999', '-1', '1.5', '5s', '', 'NaN', 'Infinity', true, false, null),
    fc.integer(),
    fc.double(),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(anyString(8), tie('v'), { maxKeys: 4 }),
  ),
})).v;

/** `[[[...]]]` or `{"a":{"a":...}}` `depth` levels deep (a value, not text). */
export function deepValue(depth: number, kind: 'array' | 'object' = 'array'): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { a: v };
  return v;
}

// ---- valid ProxyConfig values, from the schema ----

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });

function scalarArb(t: FieldDef['type']): fc.Arbitrary<unknown> {
  switch (t.k) {
    case 'string':
      return anyString(8);
    case 'bool':
      return fc.boolean();
    case 'int32':
      return int32;
    case 'uint32':
      return uint32;
    case 'int64':
      return fc.bigInt(INT64_MIN, INT64_MAX).map(String);
    case 'double':
      return fc.double();
    case 'enum':
      return fc.constantFrom(...Object.keys(t.e.values));
    case 'dur':
      return fc.bigInt(INT64_MIN, INT64_MAX).map(formatProtoDurationNs);
    case 'wrap':
      return scalarArb({ k: t.s });
    case 'msg':
      return messageArb(t.m);
  }
}

function fieldArb(fd: FieldDef): fc.Arbitrary<unknown> {
  const one = scalarArb(fd.type);
  if (fd.list) return fc.array(one, { maxLength: 3 });
  if (fd.map) return fc.dictionary(anyString(6), one, { maxKeys: 3 });
  return one;
}

const messageArbs = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/**
 * A valid value of message `msg` in canonical protobuf-JSON form (lowerCamel keys): any subset of the
 * fields, at most one member per oneof.
 */
export function messageArb(msg: string): fc.Arbitrary<Record<string, unknown>> {
  const cached = messageArbs.get(msg);
  if (cached) return cached;
  const fields = MESSAGES[msg]!;
  const plain = fields.filter((f) => !f.oneof);
  const groups = [...new Set(fields.filter((f) => f.oneof).map((f) => f.oneof!))];
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of plain) model[f.json] = fieldArb(f);
  const arb = fc
    .tuple(
      fc.record(model, { requiredKeys: [] }),
      ...groups.map((g) => fc.option(fc.oneof(...fields.filter((f) => f.oneof === g).map((f) => fieldArb(f).map((v) => [f.json, v] as const))), { nil: undefined })),
    )
    .map(([rec, ...picked]) => {
      const out: Record<string, unknown> = { ...rec };
      for (const p of picked) if (p) out[p[0]] = p[1];
      return out;
    });
  messageArbs.set(msg, arb);
  return arb;
}

/** The same value with every field named by its proto (snake_case) name instead. */
export function toProtoNames(msg: string, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields = MESSAGES[msg]!;
  for (const [k, v] of Object.entries(value)) {
    const fd = fields.find((f) => f.json === k);
    if (!fd) {
      out[k] = v;
      continue;
    }
    const conv = (x: unknown): unknown => (fd.type.k === 'msg' && typeof x === 'object' && x !== null ? toProtoNames(fd.type.m, x as Record<string, unknown>) : x);
    if (fd.list) out[fd.proto] = (v as unknown[]).map(conv);
    else if (fd.map) out[fd.proto] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([mk, mv]) => [mk, conv(mv)]));
    else out[fd.proto] = conv(v);
  }
  return out;
}
