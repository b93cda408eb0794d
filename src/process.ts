// What the process entries share (src/main.ts, the bundle's entry, and src/sea.ts, the single executable's):
// signals, the last-resort policy for uncaught errors, running the CLI and exiting with its code. The only
// place, with the entries, that reads process.argv/env and calls process.exit.
import { EventEmitter } from 'node:events';
import type { CliContext, ExitCode } from './lib/context.js';

/**
 * V8 options the single executable starts with (its `execArgv`, and the command line of the node that
 * builds it: scripts/bundle.mjs). Both must be given at the start of the process, never set at run time:
 * V8 keys compiled code to its options, and these set at run time (`v8.setFlagsFromString`) gave another
 * key than the same options given at the start (measured: code cached by a process started with them was
 * rejected by one that set them at run time). With them set at run time, as before, every Node.js
 * module loaded after the start (`node:http2`, `node:tls`, `node:http`: all of the gRPC and status server
 * layers, between Envoy's spawn and its first request) was compiled from its source instead of from the
 * code the executable's snapshot holds for it: `require('node:http2')` in 18-28 ms instead of 6-8.
 *
 * - `--max-semi-space-size=1`: V8's young generation starts at 1 MiB per semi-space and grows up to 16 MiB
 *   under a high allocation rate (a burst of scrapes or pushes), after which an idle process keeps it:
 *   tens of MiB of RSS per pod held for nothing. The agent keeps it at 1 MiB: scavenges become more
 *   frequent but stay short (little survives them: relayed messages are Buffers outside the V8 heap).
 * - `--no-regexp-tier-up`: regular expressions are compiled to machine code at their first run, not first
 *   to V8's regexp bytecode and then again at the second: Node.js's own IPv6 check (`net.isIP`, run on
 *   every host name the agent connects to, istiod's among them) took 3.5 + 0.35 ms at its first two runs
 *   that way, and 0.6 ms compiled once. A snapshot keeps no compiled regular expression.
 *
 * Measured in docs/performance.md.
 */
export const V8_START_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--no-regexp-tier-up'];

/**
 * The same effects for the bundle (`node main.js`, whose options cannot be given by its `bin`), set by
 * src/main.ts as its first statement. At run time the young generation's limit has no effect and its
 * growth factor does (at the start it is the other way round: a growth factor of 1 given at the start
 * left a 16 MiB semi-space after a burst, measured), and Node.js's built-in modules loaded afterwards are
 * compiled from their source (see above): the bundle is not what the image ships.
 */
export const V8_RUNTIME_FLAGS = '--semi-space-growth-factor=1 --no-regexp-tier-up';

type RunCli = (argv: readonly string[], ctx: CliContext) => Promise<ExitCode>;

/** Runs the CLI on this process's arguments and environment, then exits with its code. */
export async function runProcess(runCli: RunCli): Promise<void> {
  const signals = new EventEmitter();
  // A termination signal that arrives before a command listens for it (e.g. while the configuration is
  // still loading) is kept and delivered to the first listener, so it is never lost.
  const early = new Set<string>();
  signals.on('newListener', (event: string, listener: () => void) => {
    if (early.delete(event)) queueMicrotask(listener);
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (signals.listenerCount(sig) === 0 && sig !== 'SIGHUP') early.add(sig);
      else signals.emit(sig);
    });
  }
  // Last-resort policy for an error nothing caught (a thrown exception or a rejected promise). The agent's
  // state lives in per-request and per-stream objects (a probe, a scrape, an xDS or SDS stream) and every
  // input parser is tested not to throw, so an error escaping one event handler leaves the rest consistent:
  // it is logged with its stack and Envoy keeps serving (dying here would take the pod's networking with
  // it). If such errors repeat (more than 10 within a minute), something is wrong beyond one input: the
  // agent stops the normal way (drain, then stop Envoy: nothing is left behind) and exits 1, saying why.
  const uncaught: number[] = [];
  let fatal = false;
  const onUncaught = (kind: string, e: unknown): void => {
    const now = Date.now();
    process.stderr.write(`${new Date(now).toISOString()}\terror\t${kind} (the agent keeps running): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    uncaught.push(now);
    while (uncaught.length && now - uncaught[0]! > 60_000) uncaught.shift();
    if (uncaught.length > 10 && !fatal) {
      fatal = true;
      process.stderr.write(`${new Date(now).toISOString()}\terror\t${uncaught.length} uncaught errors within a minute: stopping the agent\n`);
      if (signals.listenerCount('SIGTERM') > 0) signals.emit('SIGTERM');
      else process.exit(1);
    }
  };
  process.on('uncaughtException', (e) => onUncaught('uncaught exception', e));
  process.on('unhandledRejection', (e) => onUncaught('unhandled rejection', e));

  const code = await runCli(process.argv.slice(2), {
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    signals,
  }).catch((e: unknown) => {
    process.stderr.write(`Error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 255;
  });
  // Let stdout drain before exiting (pipes are asynchronous).
  process.stdout.write('', () => process.exit(fatal && code === 0 ? 1 : code));
}
