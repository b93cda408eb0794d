// The process as a command sees it (streams, environment, signals) and the exit code it returns: shared
// by the CLI and the agent's composition root.
import type { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';

/** Everything a command may touch of its process: passed in, so commands stay testable in-process. */
export interface CliContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Emits 'SIGTERM', 'SIGINT', 'SIGHUP' as the process receives them. */
  readonly signals: EventEmitter;
}

/** A command's result: the process exit code. */
export type ExitCode = number;
