// Property tests for parseYamlOrJson, the reader of every YAML/JSON input (PROXY_CONFIG, the
// proxy.istio.io/config annotation, the mesh config file, ISTIO_BOOTSTRAP_OVERRIDE):
//   - any text: a value, or an Error "invalid YAML/JSON: ..." (never a RangeError from deep recursion,
//     a TypeError from a cycle, or a process abort);
//   - JSON and YAML written by a serializer parse back to the same value;
//   - the bounded pipeline (limits.ts) answers exactly what the plain `yaml` parser answers on small
//     documents, and refuses what could blow up: nesting past 100 levels (also twice in a row: V8 aborted
//     the process on the second stack overflow in the `yaml` composer), alias bombs, self-referencing
//     aliases; large flat documents take linear time (the `yaml` duplicate-key check is quadratic).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import * as yaml from 'yaml';
import { parse, stringify } from 'yaml';
import { anyString, deepValue, yamlSoup } from '../../test/helpers/config-arbitraries.js';
import { MAX_NESTING_DEPTH, MAX_YAML_ALIASES } from './limits.js';
import { parseYamlOrJson as parseAsync, parseYamlOrJsonWith } from './yaml.js';

/** The parser with `yaml` loaded (what parseAsync loads on the first YAML input), synchronously. */
const parseYamlOrJson = (text: string): unknown => parseYamlOrJsonWith(yaml, text);

/** Parses; returns the value, or the Error's message. Anything other than "invalid YAML/JSON: ..." fails. */
function outcome(text: string): { value: unknown } | { error: string } {
  try {
    return { value: parseYamlOrJson(text) };
  } catch (e) {
    assert.ok(e instanceof Error && e.constructor === Error, `threw ${String((e as Error)?.name)}: ${String((e as Error)?.message)}`);
    assert.match(e.message, /^invalid YAML\/JSON: \S/);
    assert.ok(!e.message.includes('\n'), 'one line');
    return { error: e.message };
  }
}

/** The parser before the limits: JSON, else `yaml` with the same options and its own (quadratic) duplicate-key check. */
function reference(text: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    // YAML
  }
  try {
    const value = parse(text, {
      version: '1.1',
      customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:timestamp'),
      merge: true,
      uniqueKeys: true,
      prettyErrors: false,
      logLevel: 'error',
    }) as unknown;
    return { value };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** A JSON value with tricky strings (YAML 1.1 booleans, octal, timestamps, indicators). */
const tricky = fc.constantFrom('yes', 'No', 'on', 'OFF', 'y', '0755', '0o17', '0x1F', '1_000', '2001-12-14', '~', 'null', '.inf', '.NaN', '190:20:30', '1e3', '-0', '.5', '? x', '- x', '"', "'", '#c', 'a: b', '[a]', '{a}', '\t', ' lead', 'trail ', '', '\u2028', '\x00');
// a leading BOM is read as a byte-order mark and "<<" as a merge key; `yaml`'s serializer quotes neither
const str = fc.oneof(tricky, fc.string({ unit: 'binary', maxLength: 12 })).filter((s) => !s.startsWith('\uFEFF'));
const jsonValue = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    str,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(str.filter((k) => k !== '<<'), tie('v'), { maxKeys: 4 }),
  ),
})).v;

void describe('parseYamlOrJson', () => {
  void it('any text: a value or one "invalid YAML/JSON" Error', () => {
    fc.assert(
      fc.property(fc.oneof(yamlSoup, anyString(60)), (text) => {
        outcome(text);
      }),
      { numRuns: 4000 },
    );
  });

  void it('answers what the plain yaml parser answers, on documents it can handle', () => {
    fc.assert(
      fc.property(yamlSoup, (text) => {
        const ref = reference(text);
        const got = outcome(text);
        if ('error' in ref) {
          assert.ok('error' in got, `accepted what yaml refuses (${ref.error})`);
          return;
        }
        // a cycle (an alias inside its own anchor) and depth are refused on purpose; all else is the same
        if ('error' in got) {
          assert.match(got.error, /an alias refers to a node that contains it|nested deeper than/);
          return;
        }
        assert.deepEqual(got.value, ref.value);
      }),
      { numRuns: 4000 },
    );
  });

  void it('JSON and YAML (as `yaml` writes it) parse back to the same value', () => {
    fc.assert(
      fc.property(jsonValue, (v) => {
        const norm = JSON.parse(JSON.stringify(v)) as unknown;
        assert.deepEqual(parseYamlOrJson(JSON.stringify(v)), norm);
        assert.deepEqual(parseYamlOrJson(stringify(norm, { version: '1.1' })), norm);
      }),
      { numRuns: 3000 },
    );
  });

  void it('the async parser: JSON without loading `yaml`, YAML once loaded, the same errors', async () => {
    assert.deepEqual(await parseAsync('{"a":[1,"x"]}'), { a: [1, 'x'] });
    assert.deepEqual(await parseAsync('a: [1, x]\nb: yes'), { a: [1, 'x'], b: true });
    await assert.rejects(parseAsync('a: 1\na: 2'), /^Error: invalid YAML\/JSON: Map keys must be unique$/);
    await assert.rejects(parseAsync(JSON.stringify(deepValue(MAX_NESTING_DEPTH + 1))), /nested deeper than 100 levels/);
  });

  void it('refuses nesting past 100 levels in every syntax, and survives doing so repeatedly', () => {
    const forms: Record<string, (d: number) => string> = {
      'flow sequence': (d) => `${'['.repeat(d)}1${']'.repeat(d)}`,
      'flow sequence, not JSON': (d) => `{"configPath": ${'['.repeat(d)}${']'.repeat(d)}, }`,
      'flow mapping': (d) => `${'{a: '.repeat(d)}1${'}'.repeat(d)}`,
      'unclosed brackets': (d) => '['.repeat(d),
      'compact block sequence': (d) => `${'- '.repeat(d)}x`,
      'explicit keys': (d) => `${'? '.repeat(d)}x`,
      'indented block mappings': (d) => Array.from({ length: d }, (_, i) => `${' '.repeat(i)}k:`).join('\n') + ' 1',
      JSON: (d) => `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`,
    };
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(forms)), fc.integer({ min: MAX_NESTING_DEPTH + 1, max: 5000 }), (form, depth) => {
        const text = forms[form]!(form === 'indented block mappings' ? Math.min(depth, 600) : depth);
        for (let i = 0; i < 2; i++) {
          const r = outcome(text);
          assert.ok('error' in r, 'accepted');
          if (form !== 'unclosed brackets') assert.match(r.error, /nested deeper than 100 levels/);
        }
      }),
      { numRuns: 40 },
    );
    // exactly the limit is fine
    assert.deepEqual(parseYamlOrJson(JSON.stringify(deepValue(MAX_NESTING_DEPTH))), deepValue(MAX_NESTING_DEPTH));
    assert.deepEqual(parseYamlOrJson(`${'- '.repeat(MAX_NESTING_DEPTH)}1`), deepValue(MAX_NESTING_DEPTH));
  });

  void it('refuses alias bombs, too many aliases and self-referencing aliases', () => {
    let laughs = 'a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n';
    for (let i = 1; i < 10; i++) laughs += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(',')}]\n`;
    assert.throws(() => parseYamlOrJson(laughs), /^Error: invalid YAML\/JSON: /);
    fc.assert(
      fc.property(fc.integer({ min: MAX_YAML_ALIASES + 1, max: 5000 }), (n) => {
        const text = Array.from({ length: n }, (_, i) => `k${i}: &a${i} v\nr${i}: *a${i}`).join('\n');
        assert.throws(() => parseYamlOrJson(text), /more than 100 aliases/);
      }),
      { numRuns: 10 },
    );
    const ok = Array.from({ length: MAX_YAML_ALIASES }, (_, i) => `k${i}: &a${i} v\nr${i}: *a${i}`).join('\n');
    assert.equal((parseYamlOrJson(ok) as Record<string, string>).r99, 'v');
    for (const cyclic of ['&a [*a]', 'a: &x {b: *x}', '&r {x: [1, {y: *r}]}']) assert.throws(() => parseYamlOrJson(cyclic), /an alias refers to a node that contains it/);
    // a shared (not cyclic) alias is fine
    assert.deepEqual(parseYamlOrJson('a: &x {b: 1}\nc: [*x, *x]'), { a: { b: 1 }, c: [{ b: 1 }, { b: 1 }] });
    // merge keys still work
    assert.deepEqual(parseYamlOrJson('base: &b {p: 1, q: 2}\nv:\n  <<: *b\n  q: 3'), { base: { p: 1, q: 2 }, v: { p: 1, q: 3 } });
  });

  void it('large flat documents: linear, duplicate keys still refused', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1000, max: 20_000 }), fc.boolean(), fc.constantFrom('block', 'flow'), (n, dup, style) => {
        const keys = Array.from({ length: n }, (_, i) => `k${i}`);
        if (dup) keys.push(`k${n >> 1}`);
        const text = style === 'block' ? keys.map((k) => `${k}: v`).join('\n') : `{${keys.map((k) => `${k}: v`).join(', ')}}`;
        const r = outcome(text);
        if (dup) assert.deepEqual(r, { error: 'invalid YAML/JSON: Map keys must be unique' });
        else assert.equal(Object.keys((r as { value: object }).value).length, n);
      }),
      { numRuns: 8 },
    );
    // keys that are equal as values are duplicates (as in `yaml`), NaN keys are not
    assert.throws(() => parseYamlOrJson('1: a\n0x1: b'), /Map keys must be unique/);
    assert.deepEqual(parseYamlOrJson('.nan: a\n.NaN: b'), { NaN: 'b' });
  });
});
