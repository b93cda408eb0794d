// YAML/JSON text -> plain JSON value, with the YAML 1.1 scalar rules Istio's sigs.k8s.io/yaml applies
// (yes/no/on/off booleans, 0755 octal), but without timestamps (they stay strings, as in JSON).
//
// The input comes from outside the process (environment, annotations, files), so parsing is bounded
// (see limits.ts): nesting is checked on the parser's token tree before anything recursive runs, aliases
// are counted and their expansion capped, and duplicate keys are found in linear time (the `yaml`
// package's own check is quadratic in the number of keys of a mapping).
//
// JSON (what the injector passes in PROXY_CONFIG) is read without the `yaml` package: it is loaded only for
// a YAML input, since loading it costs 15-20 ms of start-up before Envoy is spawned (docs/performance.md).
import type { CST, DocumentOptions, ParseOptions, SchemaOptions } from 'yaml';
import { MAX_NESTING_DEPTH, MAX_YAML_ALIASES } from './limits.js';

let yamlModule: Promise<typeof import('yaml')> | undefined;
// `yaml` is CommonJS: its exports are the namespace's default (the bundle gives only that) and, under Node's
// own loader, also its named exports
const loadYaml = (): Promise<typeof import('yaml')> =>
  (yamlModule ??= import('yaml').then((m) => (m as { default?: typeof import('yaml') }).default ?? m));

const OPTIONS: ParseOptions & DocumentOptions & SchemaOptions = {
  version: '1.1',
  customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:timestamp'),
  merge: true,
  // checked below, in linear time
  uniqueKeys: false,
  prettyErrors: false,
};

/** The problem with the token tree (too deep, too many aliases), or undefined. Iterative. */
function cstProblem(tokens: readonly CST.Token[]): string | undefined {
  let aliases = 0;
  const stack: Array<[CST.Token | null | undefined, number]> = tokens.map((t) => [t, 0]);
  while (stack.length) {
    const [t, depth] = stack.pop()!;
    if (!t) continue;
    switch (t.type) {
      case 'document':
        stack.push([t.value, depth]);
        break;
      case 'alias':
        if (++aliases > MAX_YAML_ALIASES) return `more than ${MAX_YAML_ALIASES} aliases`;
        break;
      case 'block-map':
      case 'block-seq':
      case 'flow-collection':
        if (depth + 1 > MAX_NESTING_DEPTH) return `nested deeper than ${MAX_NESTING_DEPTH} levels`;
        for (const it of t.items) {
          if ('key' in it) stack.push([it.key, depth + 1]);
          stack.push([it.value, depth + 1]);
        }
        break;
      default:
        break;
    }
  }
  return undefined;
}

/**
 * The problem with a parsed value: a cycle (an alias inside the node it names) or nesting deeper than
 * the limit (aliases can nest one tree inside another). Iterative; shared subtrees are fine.
 */
export function valueShapeProblem(value: unknown, max = MAX_NESTING_DEPTH): string | undefined {
  const children = (v: object): unknown[] => {
    if (Array.isArray(v)) return v;
    if (v instanceof Map) return [...v.keys(), ...v.values()];
    if (v instanceof Set) return [...v];
    if (ArrayBuffer.isView(v)) return [];
    return Object.values(v);
  };
  const onPath = new Set<object>();
  const frames: Array<{ readonly v: object; readonly kids: unknown[]; i: number }> = [];
  const enter = (v: unknown): string | undefined => {
    if (typeof v !== 'object' || v === null) return undefined;
    if (onPath.has(v)) return 'an alias refers to a node that contains it';
    if (frames.length + 1 > max) return `nested deeper than ${max} levels`;
    onPath.add(v);
    frames.push({ v, kids: children(v), i: 0 });
    return undefined;
  };
  const first = enter(value);
  if (first) return first;
  while (frames.length) {
    const top = frames[frames.length - 1]!;
    if (top.i >= top.kids.length) {
      onPath.delete(top.v);
      frames.pop();
      continue;
    }
    const p = enter(top.kids[top.i++]);
    if (p) return p;
  }
  return undefined;
}

function fail(message: string, cause?: unknown): never {
  throw new Error(`invalid YAML/JSON: ${message.split('\n')[0]}`, cause === undefined ? undefined : { cause });
}

/** Parses JSON, or else YAML 1.1. Rejects with an Error whose message says what is wrong and where. */
export async function parseYamlOrJson(text: string): Promise<unknown> {
  const json = parseJson(text);
  return json.ok ? json.value : parseYaml(await loadYaml(), text);
}

/** JSON.parse, or not JSON. Throws (an "invalid YAML/JSON" Error) only on JSON too deep to use. */
function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    // not JSON: YAML (JSON is YAML, so YAML's error message is the useful one)
    return { ok: false };
  }
  // JSON.parse is iterative; what uses the value may not be
  const p = valueShapeProblem(json);
  if (p) fail(p);
  return { ok: true, value: json };
}

/** parseYamlOrJson for a caller that has the `yaml` module loaded (tests); throws instead of rejecting. */
export function parseYamlOrJsonWith(yaml: typeof import('yaml'), text: string): unknown {
  const json = parseJson(text);
  return json.ok ? json.value : parseYaml(yaml, text);
}

function parseYaml(yaml: typeof import('yaml'), text: string): unknown {
  const { isScalar, Parser, parseDocument, visit } = yaml;
  let value: unknown;
  try {
    const tokens = Array.from(new Parser().parse(text));
    const cst = cstProblem(tokens);
    if (cst) fail(cst);
    const doc = parseDocument(text, OPTIONS);
    // what yaml's parse() does with a document
    for (const w of doc.warnings) process.emitWarning(w);
    if (doc.errors.length > 0) throw doc.errors[0];
    visit(doc, {
      Map(_key, map) {
        const seen = new Set<unknown>();
        for (const pair of map.items) {
          if (!isScalar(pair.key)) continue;
          const k = pair.key.value;
          if (typeof k === 'number' && Number.isNaN(k)) continue; // NaN !== NaN: never a duplicate
          if (seen.has(k)) fail('Map keys must be unique');
          seen.add(k);
        }
      },
    });
    value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    if (e instanceof Error && e.message.startsWith('invalid YAML/JSON: ')) throw e;
    fail((e as Error).message, e);
  }
  const p = valueShapeProblem(value);
  if (p) fail(p);
  return value;
}
