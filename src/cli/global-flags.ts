// Logging flags pilot-agent accepts on every subcommand (Istio's pkg/log options), and the logger they build.
import { createLogger, type Logger, type LogSink } from '../lib/log.js';
import { closeSync, createWriteStream, openSync } from 'node:fs';
import { resolve } from 'node:path';
import type { FlagSpec, ParsedFlags } from './flags.js';
import type { CliContext } from '../lib/context.js';
import { parseOutputLevels } from '../lib/log.js';
import type { ConfigIssue } from '../lib/errors.js';

export const LOG_FLAGS: readonly FlagSpec[] = [
  { name: 'log_target', type: 'stringArray', default: ['stdout'], help: 'The set of paths where to output the log: stdout, stderr or a file path' },
  { name: 'log_as_json', type: 'bool', default: false, help: 'Whether to format output as JSON or in plain console-friendly format' },
  { name: 'log_output_level', type: 'string', default: 'default:info', help: 'Comma-separated minimum per-scope logging level, in the form <scope>:<level>,<scope>:<level>,... (levels: debug, info, warn, error, fatal, none)' },
  { name: 'log_stacktrace_level', type: 'string', default: 'default:none', help: 'Comma-separated minimum per-scope level at which stack traces are captured' },
  { name: 'log_caller', type: 'string', default: '', help: 'Comma-separated list of scopes for which to include caller information' },
  { name: 'log_rotate', type: 'string', default: '', help: 'The path for the optional rotating log file', hidden: true },
  { name: 'log_rotate_max_age', type: 'int', default: 30, help: 'The maximum age in days of a log file beyond which the file is rotated out', hidden: true },
  { name: 'log_rotate_max_size', type: 'int', default: 104857600, help: 'The maximum size in megabytes of a log file beyond which the file is rotated', hidden: true },
  { name: 'log_rotate_max_backups', type: 'int', default: 1000, help: 'The maximum number of log file backups to keep before older files are deleted', hidden: true },
  { name: 'vklog', type: 'int', default: 0, help: 'number for the log level verbosity. Like -v flag. ex: --vklog=9' },
];

/** Validates the logging flags, adding problems to `issues`. */
export function checkLogFlags(p: ParsedFlags, issues: ConfigIssue[]): void {
  for (const name of ['log_output_level', 'log_stacktrace_level']) {
    try {
      parseOutputLevels(p.values.get(name) as string);
    } catch (e) {
      issues.push({ source: `flag --${name}`, message: (e as Error).message });
    }
  }
}

/**
 * Checks that every file named by --log_target can be opened for appending (creating it, as Istio's
 * logger does when it starts), adding a problem naming the flag for each one that cannot.
 */
export function checkLogTargets(p: ParsedFlags, cwd: string, issues: ConfigIssue[]): void {
  for (const t of p.values.get('log_target') as string[]) {
    if (t === 'stdout' || t === 'stderr') continue;
    try {
      closeSync(openSync(resolve(cwd, t), 'a', 0o640));
    } catch (e) {
      issues.push({ source: 'flag --log_target', message: `cannot open log file ${JSON.stringify(t)}: ${(e as Error).message}` });
    }
  }
}

/** Builds the root logger from the parsed logging flags. `defaultTarget` lets a command keep stdout for data. */
export function loggerFromFlags(p: ParsedFlags, ctx: CliContext, defaultTarget?: 'stdout' | 'stderr'): Logger {
  let targets = p.values.get('log_target') as string[];
  if (!p.set.has('log_target') && defaultTarget) targets = [defaultTarget];
  const sinks: LogSink[] = targets.map((t) => {
    if (t === 'stdout') return { write: (l: string) => void ctx.stdout.write(l) };
    if (t === 'stderr') return { write: (l: string) => void ctx.stderr.write(l) };
    const stream = createWriteStream(resolve(ctx.cwd, t), { flags: 'a', mode: 0o640 });
    // a file that cannot be opened or written must not take the process down (an unhandled 'error')
    let failed = false;
    stream.on('error', (e) => {
      if (!failed) ctx.stderr.write(`log target ${JSON.stringify(t)} failed, no more logs go there: ${e.message}\n`);
      failed = true;
    });
    return { write: (l: string) => void (failed || stream.write(l)) };
  });
  return createLogger({
    outputLevels: p.values.get('log_output_level') as string,
    asJson: p.values.get('log_as_json') as boolean,
    sink: { write: (l) => sinks.forEach((s) => s.write(l)) },
  });
}
