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
import { startupSnapshot } from 'node:v8';
import { runCli } from './cli/index.js';
import { runProcess } from './process.js';
import './cli/proxy.js';
import './agent/index.js';
// node:net loads node:cluster the first time a server listens (to ask whether this process is a cluster
// worker; the agent never is): 3-4 ms before the spawn when it happens at run time, for the XDS socket.
// Used below: esbuild drops an import of a built-in module that nothing uses, as free of side effects.
import { isPrimary } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

if (!isPrimary) throw new Error('the agent cannot run as a cluster worker');

/** The executable's location as the banner of build/sea/agent.cjs gives it to the modules that find the package's files. */
declare const __agentEntry: { buildPath?: string };

/**
 * Runs `agent proxy sidecar` once while the snapshot is built, for a made-up pod in a scratch directory,
 * up to the spawn of an Envoy binary that does not exist. V8 compiles a function the first time it is
 * called, and a function that has run when the snapshot is taken keeps its bytecode: a process started
 * from the snapshot then runs the flags, configuration, bootstrap and socket code without compiling it.
 * Only code is kept: the modules on this path hold no state between calls (see above), the run's output
 * goes nowhere and its files and sockets are removed. The builder is node, elsewhere: scripts/bundle.mjs
 * names the package root (bootstrap/ and package.json) in AGENT_SNAPSHOT_PACKAGE_ROOT.
 */
async function warmUp(): Promise<void> {
  const root = process.env['AGENT_SNAPSHOT_PACKAGE_ROOT'];
  if (!root) throw new Error('AGENT_SNAPSHOT_PACKAGE_ROOT is not set: the snapshot is built by scripts/bundle.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'agent-snapshot-'));
  __agentEntry.buildPath = join(root, 'build', 'agent');
  let out = '';
  const capture = new Writable({ write: (chunk: Buffer, _enc, done) => ((out += chunk.toString()), done()) });
  try {
    // what the configuration checks exists: the CA's root certificate, and setpriv on PATH (so that the
    // supervisor checks the Envoy binary, and fails there, before it would spawn)
    mkdirSync(join(dir, 'var/run/secrets/istio'), { recursive: true });
    writeFileSync(join(dir, 'var/run/secrets/istio/root-cert.pem'), '');
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin/setpriv'), '');
    const code = await runCli(['proxy', 'sidecar'], {
      env: {
        PATH: join(dir, 'bin'),
        POD_NAME: 'snapshot-0',
        POD_NAMESPACE: 'default',
        INSTANCE_IP: '10.0.0.1',
        SERVICE_ACCOUNT: 'default',
        CLOUD_PLATFORM: 'none',
        // the first workload key is generated from here too: an ECDSA one, quick
        ECC_SIGNATURE_ALGORITHM: 'ECDSA',
        PROXY_CONFIG: JSON.stringify({ binaryPath: join(dir, 'envoy') }),
      },
      cwd: dir,
      stdout: capture,
      stderr: capture,
      signals: new EventEmitter(),
    });
    if (code === 0 || !out.includes(`failed to start Envoy (binaryPath ${join(dir, 'envoy')})`)) {
      throw new Error(`the start-up path did not run to the spawn while the snapshot was built (exit ${code}):\n${out}`);
    }
  } finally {
    delete __agentEntry.buildPath;
    rmSync(dir, { recursive: true, force: true });
  }
}

// V8's options come from the executable's `execArgv` (src/process.ts V8_START_FLAGS), never set here
const main = (): void => {
  void runProcess(runCli);
};

if (startupSnapshot.isBuildingSnapshot()) {
  startupSnapshot.setDeserializeMainFunction(main);
  // a failed warm-up rejects, unhandled: the builder exits 1 with the run's output. One that never
  // finished (a promise left pending) would leave the snapshot without it: that fails the build too.
  let warmed = false;
  startupSnapshot.addSerializeCallback(() => {
    if (!warmed) throw new Error('the start-up path did not finish running while the snapshot was built');
  });
  void warmUp().then(() => (warmed = true));
} else main();
