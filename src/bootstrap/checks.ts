// The bootstrap's checks of a loaded configuration, as configuration problems: inputs that only the
// bootstrap reads (node metadata, tracers, LOAD_STATS_CONFIG_JSON, ...) fail at start-up, in the same
// report as config's own problems, rather than when Envoy is about to start. Pure: no I/O.
import type { AgentConfig } from '../config/agent-config.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { ConfigIssue } from '../lib/errors.js';
import { nodeMetadataIssues } from './metadata.js';
import { BootstrapError, bootstrapParams } from './params.js';

/**
 * The node metadata problems of the environment and the effective ProxyConfig (also when config found
 * other problems), leaving out what `reported` (the problems found so far) already says: a variable
 * the environment parser reported is not reported twice, nor is the same problem.
 */
export function nodeMetadataConfigIssues(
  env: Readonly<Record<string, string | undefined>>,
  pc: ProxyConfig,
  reported: readonly ConfigIssue[],
): ConfigIssue[] {
  const added: ConfigIssue[] = [];
  const seen = (f: (i: ConfigIssue) => boolean): boolean => reported.some(f) || added.some(f);
  for (const p of nodeMetadataIssues(env, pc)) {
    if (p.source !== p.origin && seen((i) => i.source === p.origin)) continue;
    const message = p.path === '' ? p.message : `${p.key}${p.path}: ${p.message}`;
    if (seen((i) => i.source === p.source && i.message === message)) continue;
    added.push({ source: p.source, message });
  }
  return added;
}

/** What the bootstrap's parameters say of a configuration without other problems (none, or one). */
export function bootstrapConfigIssues(config: AgentConfig): ConfigIssue[] {
  try {
    bootstrapParams(config);
  } catch (e) {
    if (!(e instanceof BootstrapError)) throw e;
    return [{ source: 'bootstrap', message: e.message }];
  }
  return [];
}
