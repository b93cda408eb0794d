// Error taxonomy. Every error the agent reports carries a stable code; configuration errors carry
// every problem found, each with the input it came from, so one start-up attempt shows them all.

export type ErrorCode =
  | 'AGENT_ERR_USAGE'
  | 'AGENT_ERR_CONFIG'
  | 'AGENT_ERR_BOOTSTRAP'
  | 'AGENT_ERR_ENVOY_EXIT'
  | 'AGENT_ERR_CRASH_BUDGET'
  | 'AGENT_ERR_XDS'
  | 'AGENT_ERR_IPTABLES'
  | 'AGENT_ERR_IO';

export class AgentError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentError';
    this.code = code;
  }
}

export interface ConfigIssue {
  /** Where the bad value came from: `env PROXY_CONFIG`, `flag --concurrency`, `file ./etc/istio/pod/annotations`. */
  readonly source: string;
  readonly message: string;
}

export class ConfigError extends AgentError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super('AGENT_ERR_CONFIG', formatIssues(issues));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssues(issues: readonly ConfigIssue[]): string {
  if (issues.length === 1) return `invalid configuration: ${issues[0]!.source}: ${issues[0]!.message}`;
  return `invalid configuration (${issues.length} problems):\n${issues.map((i) => `  - ${i.source}: ${i.message}`).join('\n')}`;
}

/** Collects problems while parsing; `throwIfAny` raises one ConfigError listing all of them. */
export class IssueList {
  readonly items: ConfigIssue[] = [];
  add(source: string, message: string): void {
    this.items.push({ source, message });
  }
  get empty(): boolean {
    return this.items.length === 0;
  }
  throwIfAny(): void {
    if (this.items.length) throw new ConfigError(this.items);
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
