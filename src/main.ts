#!/usr/bin/env node
// Process entry: the only place that reads process.argv/env and calls process.exit.
import { EventEmitter } from 'node:events';
import * as nodeModule from 'node:module';
import { setFlagsFromString } from 'node:v8';

// V8's young generation starts at 1 MiB per semi-space and grows up to 16 MiB under a high allocation rate
// (a burst of scrapes or pushes), after which an idle process keeps it: tens of MiB of RSS per pod held for
// nothing. The agent keeps it at its initial size: scavenges become more frequent but stay short (little
// survives them: relayed messages are Buffers outside the V8 heap). Measured in docs/performance.md.
setFlagsFromString('--semi-space-growth-factor=1');

// Node.js caches the code it compiles between starts (a large part of start-up is compiling the agent's
// modules): in NODE_COMPILE_CACHE (the image sets it to a cache written when the image is built), else in
// the OS temporary directory. It must be enabled before the agent's modules load, hence the dynamic import
// below. A cache that cannot be read or written costs nothing but the saving (NODE_DISABLE_COMPILE_CACHE=1
// turns it off).
nodeModule.enableCompileCache?.();
const { runCli } = await import('./cli/index.js');

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
// it). If such errors repeat (more than 10 within a minute), something is wrong beyond one input: the agent
// stops the normal way (drain, then stop Envoy: nothing is left behind) and exits 1, saying why.
const uncaught: number[] = [];
let fatal = false;
function onUncaught(kind: string, e: unknown): void {
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
}
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
