#!/usr/bin/env node
// Process entry: the only place that reads process.argv/env and calls process.exit.
import { EventEmitter } from 'node:events';
import * as nodeModule from 'node:module';

// Node >= 22.1 can cache compiled code between starts (most of our start-up time is module loading);
// on Node 20 this is a no-op.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
import { runCli } from './cli/index.js';

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
// A long-running agent reports a stray rejected promise instead of dying with Envoy still up.
process.on('unhandledRejection', (e) => process.stderr.write(`${new Date().toISOString()}\terror\tunhandled rejection: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`));

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
process.stdout.write('', () => process.exit(code));
