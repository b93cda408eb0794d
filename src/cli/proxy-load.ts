// `agent proxy` start-up configuration, assembled: flags -> logger -> config (environment, pod files,
// proxy IPs, ProxyConfig layers, validation: src/config) -> the bootstrap's checks of the result
// (src/bootstrap). Every problem found on the way is collected; if there are any, one ConfigError lists
// them all with their sources, in that order.
import { formatGoDurationNs, goQuote } from '../config/gocompat.js';
import { loadProxyConfig, type LoadOptions as ConfigLoadOptions } from '../config/load.js';
import type { AgentConfig } from '../config/agent-config.js';
import { bootstrapConfigIssues, nodeMetadataConfigIssues } from '../bootstrap/checks.js';
import type { CliContext } from '../lib/context.js';
import { ConfigError, type ConfigIssue } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { AGENT_NAME, AGENT_VERSION, ISTIO_GIT_REVISION, ISTIO_VERSION } from '../version.js';
import { parseFlags, type ParsedFlags } from './flags.js';
import { checkLogFlags, checkLogTargets, loggerFromFlags } from './global-flags.js';
import { PROXY_FLAGS, proxyFlagValues } from './proxy-flags.js';

/** Seams for tests (the host facts config would otherwise read from the OS), and the start-up lines. */
export interface LoadOptions extends ConfigLoadOptions {
  /** Log the FLAG lines and the version (default true; a reload for a hot restart can turn it off). */
  readonly logStartup?: boolean;
}

export interface LoadedProxyCommand {
  readonly config: AgentConfig;
  readonly log: Logger;
}

function flagValueText(p: ParsedFlags, name: string): string {
  const v = p.values.get(name);
  const spec = PROXY_FLAGS.find((s) => s.name === name)!;
  if (spec.type === 'duration') return formatGoDurationNs(BigInt(Math.round((v as number) * 1e6)));
  if (Array.isArray(v)) return `[${v.join(',')}]`;
  return String(v);
}

/** pilot-agent's start-up lines: every flag's value (sorted by name), unknown flags, the version. */
function logStartup(p: ParsedFlags, log: Logger): void {
  for (const spec of [...PROXY_FLAGS].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    log.info(`FLAG: --${spec.name}=${goQuote(flagValueText(p, spec.name))}`);
  }
  for (const u of p.unknown) log.warn(`ignoring unknown flag ${u} (pilot-agent accepts and ignores unknown flags)`);
  log.info(`Version ${ISTIO_VERSION}-${ISTIO_GIT_REVISION}-Clean (${AGENT_NAME} ${AGENT_VERSION})`);
}

/** Parses `agent proxy` arguments and the environment into an AgentConfig. Throws ConfigError. */
export async function loadProxyCommand(args: readonly string[], ctx: CliContext, opts: LoadOptions = {}): Promise<LoadedProxyCommand> {
  const p = parseFlags(args, PROXY_FLAGS, {});
  const issues: ConfigIssue[] = [...p.issues];
  const before = issues.length;
  checkLogFlags(p, issues);
  const badLevels = issues.length > before;
  const beforeTargets = issues.length;
  checkLogTargets(p, ctx.cwd, issues);
  const badTargets = issues.length > beforeTargets;
  // with a bad level or log file the logger falls back to the defaults; the problem is still reported
  let logFlags: ParsedFlags = p;
  if (badLevels || badTargets) {
    const values = new Map(p.values);
    const fallback = [...(badLevels ? ['log_output_level', 'log_stacktrace_level'] : []), ...(badTargets ? ['log_target'] : [])];
    for (const name of fallback) values.set(name, PROXY_FLAGS.find((f) => f.name === name)!.default);
    logFlags = { ...p, values };
  }
  const log = loggerFromFlags(logFlags, ctx);
  if (opts.logStartup ?? true) logStartup(p, log);

  const loaded = await loadProxyConfig(
    { proxyType: p.positionals[0] ?? 'sidecar', flags: proxyFlagValues(p), unknownFlags: p.unknown, env: ctx.env, cwd: ctx.cwd, log },
    opts,
  );
  issues.push(...loaded.issues);
  issues.push(...nodeMetadataConfigIssues(ctx.env, loaded.proxyConfig, issues));
  if (issues.length) throw new ConfigError(issues);
  const config = loaded.agentConfig();
  const bootstrap = bootstrapConfigIssues(config);
  if (bootstrap.length) throw new ConfigError(bootstrap);
  return { config, log };
}
