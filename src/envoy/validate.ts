// Asks Envoy itself whether it accepts a bootstrap (`envoy --mode validate`), before a hot restart puts
// it in front of traffic. Validate mode checks the configuration without binding ports or connecting
// anywhere; it does not catch everything Envoy checks only when it starts (e.g. stats-matcher regexes), so
// the supervisor still watches the new epoch until it serves.

export interface ValidateOptions {
  readonly binaryPath: string;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The bootstrap file, as Envoy's -c. */
  readonly configPath: string;
  /** --config-yaml (ISTIO_BOOTSTRAP_OVERRIDE), if any. */
  readonly configYaml?: string | undefined;
  readonly timeoutMs?: number;
}

/** Resolves to undefined when Envoy accepts the bootstrap, else to what Envoy said (its last lines). */
export async function validateBootstrap(o: ValidateOptions): Promise<string | undefined> {
  const args = ['--mode', 'validate', '-c', o.configPath, '-l', 'error', ...(o.configYaml ? ['--config-yaml', o.configYaml] : [])];
  const { execa } = await import('execa'); // only hot restarts validate: kept off the start-up path
  const r = await execa(o.binaryPath, args, { cwd: o.cwd, env: o.env as Record<string, string>, extendEnv: false, reject: false, all: true, timeout: o.timeoutMs ?? 30_000, maxBuffer: 1024 * 1024 });
  if (r.exitCode === 0) return undefined;
  const out = String(r.all ?? '').trim().split('\n').filter((l) => l.trim() !== '');
  const why = out.slice(-3).join(' | ') || (r.timedOut ? 'timed out' : `exit status ${r.exitCode ?? r.signal}`);
  return `Envoy rejected the new bootstrap: ${why}`;
}
