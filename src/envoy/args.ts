// Envoy's command line, as pilot-agent 1.30 builds it, plus our hot-restart arguments.
// Pure: every input is a parameter.

export interface EnvoyArgsInput {
  /** Path given to `-c`, as pilot-agent writes it (`filepath.Join(configPath, "envoy-rev.json")`). */
  readonly configFile: string;
  readonly drainDurationMs: number;
  /** Node IPs; `v6` is used only when every one is IPv6. */
  readonly nodeIPs: readonly string[];
  readonly fileFlushIntervalMs?: number | undefined;
  readonly fileFlushMinSizeKb?: number | undefined;
  /** `--proxyLogLevel`: bare entry = global level, `comp:level` entries = component levels. */
  readonly proxyLogLevel: string;
  /** `--proxyComponentLogLevel`, used only when proxyLogLevel has no component entries. */
  readonly proxyComponentLogLevel: string;
  readonly skipDeprecatedLogs: boolean;
  readonly enableCoreDump: boolean;
  /** JSON text of ISTIO_BOOTSTRAP_OVERRIDE, passed as `--config-yaml`. */
  readonly configYaml?: string | undefined;
  readonly concurrency: number;
}

export type HotRestartArgs =
  | { readonly mode: 'disabled' }
  | { readonly mode: 'first'; readonly baseIdPath: string; readonly parentShutdownS: number }
  | { readonly mode: 'epoch'; readonly epoch: number; readonly baseId: number; readonly parentShutdownS: number; readonly afterCrash: boolean };

export interface SplitLogLevel {
  readonly level: string;
  readonly components: readonly string[];
  readonly dropped: readonly string[];
}

/** Splits `--proxyLogLevel` the way pilot-agent does. */
export function splitComponentLog(spec: string): SplitLogLevel {
  let level = '';
  const components: string[] = [];
  const dropped: string[] = [];
  for (const item of spec.split(',')) {
    const parts = item.split(':');
    if (parts.length === 1) level = parts[0]!;
    else if (parts.length === 2) components.push(item);
    else dropped.push(item);
  }
  return { level, components, dropped };
}

export function isIPv6(ip: string): boolean {
  return ip.includes(':');
}

/** Builds the argv (without the binary). With hot restart disabled this is exactly pilot-agent's argv. */
export function buildEnvoyArgs(i: EnvoyArgsInput, hot: HotRestartArgs): string[] {
  const allV6 = i.nodeIPs.length > 0 && i.nodeIPs.every(isIPv6);
  const args = [
    '-c', i.configFile,
    '--drain-time-s', String(Math.trunc(i.drainDurationMs / 1000)),
    '--drain-strategy', 'immediate',
    '--local-address-ip-version', allV6 ? 'v6' : 'v4',
    '--file-flush-interval-msec', String(i.fileFlushIntervalMs !== undefined ? Math.trunc(i.fileFlushIntervalMs) : 1000),
  ];
  if (hot.mode === 'disabled') args.push('--disable-hot-restart');
  args.push('--allow-unknown-static-fields');
  if (i.fileFlushMinSizeKb && i.fileFlushMinSizeKb > 0) args.push('--file-flush-min-size-kb', String(i.fileFlushMinSizeKb));
  const split = splitComponentLog(i.proxyLogLevel);
  if (split.level !== '') args.push('-l', split.level);
  if (split.components.length) args.push('--component-log-level', split.components.join(','));
  else if (i.proxyComponentLogLevel !== '') args.push('--component-log-level', i.proxyComponentLogLevel);
  if (i.skipDeprecatedLogs) args.push('--skip-deprecated-logs');
  if (i.enableCoreDump) args.push('--enable-core-dump');
  if (i.configYaml !== undefined) args.push('--config-yaml', i.configYaml);
  if (i.concurrency > 0) args.push('--concurrency', String(i.concurrency));
  switch (hot.mode) {
    case 'disabled':
      break;
    case 'first':
      args.push('--restart-epoch', '0', '--use-dynamic-base-id', '--base-id-path', hot.baseIdPath, '--parent-shutdown-time-s', String(hot.parentShutdownS));
      break;
    case 'epoch':
      args.push('--restart-epoch', String(hot.epoch), '--base-id', String(hot.baseId), '--parent-shutdown-time-s', String(hot.parentShutdownS));
      if (hot.afterCrash) args.push('--skip-hot-restart-on-no-parent');
      break;
  }
  return args;
}

/** Parent shutdown must exceed the drain time so connections move over before the old epoch exits. */
export function parentShutdownSeconds(drainDurationMs: number, parentShutdownDurationMs?: number): number {
  const drainS = Math.trunc(drainDurationMs / 1000);
  const wanted = parentShutdownDurationMs !== undefined ? Math.trunc(parentShutdownDurationMs / 1000) : drainS + 5;
  return Math.max(wanted, drainS + 1);
}
