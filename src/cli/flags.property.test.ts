// Property tests for the pflag-compatible flag parser (parseFlags), with the real flag tables of
// `agent proxy` and `agent istio-iptables` and with generated argv and environment:
//   - any argv and environment: no exception; every flag has a value of its declared type (durations
//     finite: a value past Go's int64 nanoseconds is a problem, not Infinity); every problem names the
//     flag or variable it is about;
//   - valid values written in any pflag spelling (`--n=v`, `--n v`, `-s v`, `-sv`, `-s=v`) parse back to
//     the same values; environment bindings apply only when the flag is absent; `--` ends flags;
//   - long argv is linear.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, goDurationText } from '../../test/helpers/config-arbitraries.js';
import { IPTABLES_FLAGS } from './iptables.js';
import { parseFlags, type FlagSpec, type FlagValue } from './flags.js';
import { PROXY_FLAGS } from './proxy-flags.js';

const TABLES: Record<string, readonly FlagSpec[]> = { proxy: PROXY_FLAGS, 'istio-iptables': IPTABLES_FLAGS };

/** An argv word: a flag of the table in some spelling, with or without a value, or anything. */
function argWord(specs: readonly FlagSpec[]): fc.Arbitrary<string> {
  const names = specs.map((s) => s.name);
  const shorts = specs.filter((s) => s.short).map((s) => s.short!);
  const value = fc.oneof(anyString(8), goDurationText, fc.integer().map(String), fc.constantFrom('true', 'false', 'maybe', '0x1f', '0o17', '-0x10', '', '=', '-', '--', `${'9'.repeat(30)}h`, `${'9'.repeat(400)}h`, '1e400'));
  return fc.oneof(
    fc.tuple(fc.constantFrom(...names), fc.option(value, { nil: undefined })).map(([n, v]) => (v === undefined ? `--${n}` : `--${n}=${v}`)),
    fc.tuple(fc.constantFrom(...shorts, 'Z', '😀'), fc.constantFrom('', '='), value).map(([s, eq, v]) => `-${s}${eq}${v}`),
    value,
    fc.constantFrom('--', '-', '---', '--=x', '-=', '--unknown', '--unknown=1'),
  );
}

function assertTyped(spec: FlagSpec, v: FlagValue | undefined): void {
  switch (spec.type) {
    case 'string':
      return assert.equal(typeof v, 'string', spec.name);
    case 'bool':
      return assert.equal(typeof v, 'boolean', spec.name);
    case 'int':
      return assert.ok(Number.isSafeInteger(v), `${spec.name}: ${String(v)}`);
    case 'duration':
      return assert.ok(typeof v === 'number' && Number.isFinite(v), `${spec.name}: ${String(v)}`);
    case 'stringArray':
      return assert.ok(Array.isArray(v) && v.every((x) => typeof x === 'string'), spec.name);
  }
}

for (const [command, specs] of Object.entries(TABLES)) {
  const envNames = [...new Set(specs.flatMap((s) => s.env ?? []))];

  void describe(`parseFlags with the ${command} flags`, () => {
    void it('any argv and environment: typed values, and problems that name their flag or variable', () => {
      const env = envNames.length
        ? fc.dictionary(fc.constantFrom(...envNames), fc.oneof(anyString(8), goDurationText, fc.constantFrom('true', '1', 'x', '', `${'9'.repeat(400)}h`)), { maxKeys: 4 })
        : fc.constant({});
      fc.assert(
        fc.property(fc.array(argWord(specs), { maxLength: 12 }), env, (argv, e) => {
          const p = parseFlags(argv, specs, e);
          for (const s of specs) assertTyped(s, p.values.get(s.name));
          assert.equal(p.values.size, specs.length);
          for (const i of p.issues) {
            const m = /^(?:flag --(\S+)|flag -(.) \(--(\S+)\)|env (\S+))$/u.exec(i.source);
            assert.ok(m, `unexpected source ${i.source}`);
            if (m[1] ?? m[3]) assert.ok(specs.some((s) => s.name === (m[1] ?? m[3])), i.source);
            if (m[2]) assert.ok(specs.some((s) => s.short === m[2]), i.source);
            if (m[4]) assert.ok(m[4] in e, i.source);
            assert.ok(i.message.length > 0 && i.message.length < 300, i.message);
          }
          for (const u of p.unknown) assert.ok(u.startsWith('-') && argv.some((a) => a.startsWith(u)), u);
          for (const [name, envName] of p.fromEnv) assert.ok(!p.set.has(name) && e[envName as keyof typeof e] !== undefined);
        }),
        { numRuns: 3000 },
      );
    });

    void it('valid values in any pflag spelling parse back to the same values', () => {
      const assignment = fc.array(
        fc.constantFrom(...specs.filter((s) => s.name !== 'help')).chain((s) => fc.tuple(fc.constant(s), validValue(s), fc.nat(4))),
        { maxLength: 8 },
      );
      fc.assert(
        fc.property(assignment, fc.array(fc.string(), { maxLength: 3 }), (assigned, rest) => {
          const argv: string[] = [];
          const want = new Map<string, FlagValue>();
          for (const [s, [text, value], spelling] of assigned) {
            argv.push(...spell(s, text, spelling));
            want.set(s.name, s.type === 'stringArray' && want.has(s.name) ? [...(want.get(s.name) as string[]), ...(value as string[])] : value);
          }
          argv.push('--', ...rest);
          const p = parseFlags(argv, specs, {});
          assert.deepEqual(p.issues, []);
          assert.deepEqual(p.unknown, []);
          for (const [name, v] of want) assert.deepEqual(p.values.get(name), v, name);
          assert.deepEqual(new Set(p.set), new Set(want.keys()));
          assert.deepEqual(p.positionals, rest);
        }),
        { numRuns: 2000 },
      );
    });

    if (envNames.length) {
      void it('an environment binding applies exactly when its flag is absent', () => {
        const bound = specs.filter((s) => s.env?.length && s.type === 'bool');
        fc.assert(
          fc.property(fc.constantFrom(...bound), fc.boolean(), fc.boolean(), fc.boolean(), (s, onCli, cliValue, envValue) => {
            const p = parseFlags(onCli ? [`--${s.name}=${cliValue}`] : [], specs, { [s.env![0]!]: String(envValue) });
            assert.equal(p.values.get(s.name), onCli ? cliValue : envValue);
            assert.equal(p.fromEnv.get(s.name), onCli ? undefined : s.env![0]);
          }),
          { numRuns: 200 },
        );
      });
    }

    void it('long argv is parsed in linear time (100,000 words)', () => {
      const argv = Array.from({ length: 100_000 }, (_, i) => (i % 3 === 0 ? '--unknown' : i % 3 === 1 ? 'x' : `--${specs[i % specs.length]!.name}=1`));
      const p = parseFlags(argv, specs, {});
      assert.equal(p.unknown.length, Math.ceil(100_000 / 3));
    });
  });
}

/** A valid value for the flag: its text and the parsed value. */
function validValue(s: FlagSpec): fc.Arbitrary<readonly [string, FlagValue]> {
  switch (s.type) {
    case 'string':
      return anyString(10).map((t) => [t, t] as const);
    case 'stringArray':
      return anyString(10).map((t) => [t, [t]] as const);
    case 'bool':
      return fc.constantFrom(['true', true], ['false', false], ['1', true], ['0', false], ['t', true], ['F', false], ['TRUE', true], ['False', false]) as fc.Arbitrary<readonly [string, FlagValue]>;
    case 'int':
      return fc.oneof(
        fc.maxSafeInteger().map((n) => [String(n), n] as const),
        fc.nat().map((n) => [`0x${n.toString(16)}`, n] as const),
      );
    case 'duration':
      return fc.oneof(
        fc.nat(10 ** 12).map((ms) => [`${ms}ms`, ms] as const),
        fc.tuple(fc.nat(1000), fc.nat(59), fc.nat(59)).map(([h, m, sec]) => [`${h}h${m}m${sec}s`, ((h * 60 + m) * 60 + sec) * 1000] as const),
      );
  }
}

/** One of the pflag spellings of `--name=value` (spellings that would change the value are avoided). */
function spell(s: FlagSpec, text: string, spelling: number): string[] {
  const short = s.short;
  if (s.type === 'bool') {
    if (text === 'true' && spelling % 2 === 0) return short && spelling === 4 ? [`-${short}`] : [`--${s.name}`];
    return short && spelling === 3 ? [`-${short}=${text}`] : [`--${s.name}=${text}`];
  }
  switch (short ? spelling : spelling % 2) {
    case 0:
      return [`--${s.name}=${text}`];
    case 1:
      return [`--${s.name}`, text];
    case 2:
      return [`-${short}`, text];
    case 3:
      return [`-${short}=${text}`];
    default:
      // -sVALUE: a value starting with "=" would lose it
      return text.startsWith('=') || text === '' ? [`-${short}=${text}`] : [`-${short}${text}`];
  }
}
