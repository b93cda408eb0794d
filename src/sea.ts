// Entry of the single executable (build/agent; the image's /usr/local/bin/agent): Node.js and the agent in
// one file, started from a V8 start-up snapshot (scripts/bundle.mjs builds it with `node --build-sea`).
//
// The snapshot is taken once, at build time, after the modules imported here have been evaluated: the CLI
// and everything `agent proxy` runs before it spawns Envoy (configuration, bootstrap, Envoy supervision).
// A process started from it begins with that code loaded instead of reading, compiling and evaluating it,
// which is most of what the agent did before the spawn (docs/performance.md). What is loaded after the spawn
// (gRPC, the status server, metrics, identity) is evaluated at run time as before: it needs node:http and
// node:http2, which Node.js does not support in snapshots.
//
// What a module computes when it is evaluated is in the snapshot, taken on the build machine: the modules
// on this path keep no process state at the top level (environment, time, host, random values) and read
// it when called. test/sea checks that the executable and the bundle behave the same.
import { setFlagsFromString, startupSnapshot } from 'node:v8';
import { runCli } from './cli/index.js';
import { V8_FLAGS, runProcess } from './process.js';
import './cli/proxy.js';
import './agent/index.js';
// node:net loads node:cluster the first time a server listens (to ask whether this process is a cluster
// worker; the agent never is): 3-4 ms before the spawn when it happens at run time, for the XDS socket.
// Used below: esbuild drops an import of a built-in module that nothing uses, as free of side effects.
import { isPrimary } from 'node:cluster';

if (!isPrimary) throw new Error('the agent cannot run as a cluster worker');

const main = (): void => {
  setFlagsFromString(V8_FLAGS);
  void runProcess(runCli);
};

if (startupSnapshot.isBuildingSnapshot()) startupSnapshot.setDeserializeMainFunction(main);
else main();
