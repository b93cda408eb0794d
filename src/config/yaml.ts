// YAML/JSON text -> plain JSON value, with the YAML 1.1 scalar rules Istio's sigs.k8s.io/yaml applies
// (yes/no/on/off booleans, 0755 octal), but without timestamps (they stay strings, as in JSON).
import { parse } from 'yaml';

/** Parses JSON, or else YAML 1.1. Throws an Error whose message says what is wrong and where. */
export function parseYamlOrJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // not JSON: fall through to YAML (JSON is YAML, so YAML's error message is the useful one)
  }
  try {
    return parse(text, {
      version: '1.1',
      customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:timestamp'),
      merge: true,
      uniqueKeys: true,
      prettyErrors: false,
    }) as unknown;
  } catch (e) {
    throw new Error(`invalid YAML/JSON: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
}
