// ISTIO_BOOTSTRAP_OVERRIDE: a YAML or JSON file that pilot-agent hands to Envoy with `--config-yaml`
// (Envoy merges it over the bootstrap). `$(HOST_IP)` is substituted first (IPv6 wrapped in []);
// a read or parse error is a warning and the flag is left out.
import { readFile } from 'node:fs/promises';
import type { Logger } from '../lib/log.js';
import { parseYamlOrJson } from '../config/yaml.js';
import { sortKeysDeep } from '../config/proxy-config.js';

/** JSON as Go's encoding/json writes it: compact, map keys sorted, <, >, & and U+2028/9 escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(sortKeysDeep(value)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Substitutes $(HOST_IP) in the override text as pilot-agent does. */
export function substituteHostIp(text: string, hostIp: string): string {
  let ip = hostIp;
  let out = text;
  if (ip.includes(':')) {
    ip = `[${ip}]`;
    out = out.replaceAll('[$(HOST_IP)]', ip);
  }
  return out.replaceAll('$(HOST_IP)', ip);
}

/**
 * Reads the override file and returns the JSON string to pass as `--config-yaml`, or undefined (with a
 * warning logged) when it cannot be read or parsed.
 */
export async function bootstrapOverrideJson(path: string, hostIp: string, log?: Logger): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    log?.warn(`Failed to read bootstrap override: failed to read file: ${path}, ${(e as Error).message}`);
    return undefined;
  }
  try {
    return goJson((await parseYamlOrJson(substituteHostIp(text, hostIp))) ?? null);
  } catch (e) {
    log?.warn(`Failed to read bootstrap override: failed to convert to JSON: ${path}, ${(e as Error).message}`);
    return undefined;
  }
}
