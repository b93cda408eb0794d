// Bundles the agent (build/src, tsc's output) with esbuild, twice:
// - build/agent, the single executable the image and the integration tests run: Node.js and the agent in
//   one file, started from a V8 snapshot of the agent's start-up code (src/sea.ts). esbuild makes one
//   CommonJS file of the agent (build/sea/agent.cjs; Node.js builds snapshots from CommonJS only), then
//   `node --build-sea` evaluates it, runs the start-up path once (so that its functions are compiled in
//   the snapshot; AGENT_SNAPSHOT_PACKAGE_ROOT tells it where bootstrap/ is), takes the snapshot and writes
//   it into a copy of the node executable
//   (`--sea-node PATH` names another one, e.g. a stripped node for the image). Needs Node.js 25.5 or later.
// - build/bundle/main.js, the same CLI for `node main.js ...` (npm's `bin`), plus chunks that load only
//   when used (each subcommand, execa for istio-iptables, node-forge's ASN.1 for CSRs).
// One file instead of ~400 modules spread over node_modules: Node.js resolves, reads and compiles far fewer
// files at start-up (docs/performance.md). The sources stay as they are; dependencies come from
// node_modules at build time only.
//   node scripts/bundle.mjs [--analyze] [--no-sea] [--sea-node PATH]
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { V8_START_FLAGS } from '../build/src/process.js';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({ options: { analyze: { type: 'boolean' }, 'no-sea': { type: 'boolean' }, 'sea-node': { type: 'string' } } });

// Node's built-in modules are imported through require(), not `import`: importing one as ESM builds a
// facade that reads every export, and node:http's lazy WebSocket/MessageEvent exports then load Node's
// whole fetch implementation (undici), about 35 ms of start-up for nothing.
const builtinsViaRequire = {
  name: 'builtins-via-require',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => (args.kind === 'import-statement' ? { path: args.path, namespace: 'builtin-cjs' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'builtin-cjs' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};
// prom-client requires @opentelemetry/api only to attach trace ids to exemplars, which the agent does not
// enable; with no OpenTelemetry SDK registered the API answers "no active span", as this stub does.
const noOtelApi = {
  name: 'no-otel-api',
  setup(b) {
    b.onResolve({ filter: /^@opentelemetry\/api$/ }, (args) => (args.importer.includes('prom-client') ? { path: 'otel-api-stub', namespace: 'stub' } : undefined));
    b.onLoad({ filter: /^otel-api-stub$/, namespace: 'stub' }, () => ({
      contents: 'module.exports = { trace: { getSpan() { return undefined; } }, context: { active() { return undefined; } } };',
      loader: 'js',
    }));
  },
};

// prom-client's index loads its Pushgateway client (node:http, node:https, node:zlib and node:url with it)
// although the agent never pushes: the metrics are scraped from the status port. The stub throws if used.
const noPushgateway = {
  name: 'no-pushgateway',
  setup(b) {
    b.onResolve({ filter: /^\.\/lib\/pushgateway$/ }, (args) => (args.importer.includes('prom-client') ? { path: 'pushgateway-stub', namespace: 'stub' } : undefined));
    b.onLoad({ filter: /^pushgateway-stub$/, namespace: 'stub' }, () => ({
      contents: "module.exports = class Pushgateway { constructor() { throw new Error('prom-client Pushgateway is not bundled (the agent is scraped, it never pushes)'); } };",
      loader: 'js',
    }));
  },
};

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'build', 'bundle');
await rm(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: [join(root, 'build', 'src', 'main.js')],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  // CommonJS dependencies (prom-client, node-forge) call require() for Node's built-in modules
  banner: { js: "import { createRequire as __agentCreateRequire } from 'node:module'; const require = __agentCreateRequire(import.meta.url);" },
  plugins: [builtinsViaRequire, noOtelApi, noPushgateway],
  sourcemap: 'linked',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
await chmod(join(outdir, 'main.js'), 0o755);
if (opts.analyze) {
  const { analyzeMetafile } = await import('esbuild');
  process.stdout.write(await analyzeMetafile(result.metafile));
}

// The single executable. Node.js warns about built-in modules it has not verified in snapshots. Two of
// them are evaluated into the snapshot on purpose: node:child_process (spawns Envoy; the test suite
// exercises every way the agent uses it from the executable: spawns, signals, exits, hot restarts) and
// node:cluster (whose state is only whether this process is a cluster worker, which the agent never is; see
// src/sea.ts). Their warnings are expected; any other is shown. Other such modules are loaded on first use
// rather than while the snapshot is taken: the agent imports a stand-in whose functions load the real
// module when called (only functions: all the agent imports from them).
const SNAPSHOT_BUILTINS_UNVERIFIED = ['node:child_process', 'node:cluster'];
const LAZY_BUILTINS = ['node:module'];
const require = createRequire(import.meta.url);
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    const filter = new RegExp(`^(${LAZY_BUILTINS.join('|')})$`);
    // the stand-in's own require() of the module resolves as usual (a built-in, left to run time)
    b.onResolve({ filter }, (args) => (args.namespace === 'lazy-builtin' ? undefined : { path: args.path, namespace: 'lazy-builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => {
      const names = Object.keys(require(args.path)).filter((k) => /^[a-zA-Z_$][\w$]*$/.test(k) && typeof require(args.path)[k] === 'function');
      const wrap = (k) => `export function ${k}(...a) { const f = load().${k}; return new.target ? Reflect.construct(f, a) : f.apply(this, a); }`;
      return { contents: [`let m; const load = () => (m ??= require(${JSON.stringify(args.path)}));`, ...names.map(wrap)].join('\n'), loader: 'js' };
    });
  },
};
if (!opts['no-sea']) {
  const seaDir = join(root, 'build', 'sea');
  const exe = join(root, 'build', 'agent');
  await rm(seaDir, { recursive: true, force: true });
  await rm(exe, { force: true });
  await mkdir(seaDir, { recursive: true });
  await build({
    entryPoints: [join(root, 'build', 'src', 'sea.js')],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node24',
    outfile: join(seaDir, 'agent.cjs'),
    // the few modules that find files of the package from their own location (the bootstrap fragments
    // in bootstrap/) or call createRequire() do so from the executable's: build/agent in a clone,
    // /opt/meshagent/agent in the image, beside package.json and bootstrap/. Read when called, at run time
    // (while the snapshot is built, src/sea.ts sets buildPath: the builder is node, elsewhere).
    define: { 'import.meta.url': '__agentEntry.url' },
    // "use strict" first: a directive after the banner's statement would not be one, and the whole file
    // would run in sloppy mode (the sources are ES modules, strict)
    banner: { js: "\"use strict\"; var __agentEntry = { get url() { return require('node:url').pathToFileURL(this.buildPath ?? process.execPath).href; } };" },
    plugins: [lazyBuiltins, noOtelApi, noPushgateway],
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
  });
  // The snapshot keeps the source text (V8 compiles from it the functions the start-up path did not run),
  // and V8 stores a string with any character beyond Latin-1 at two bytes per character: one such character
  // doubled its resident size (3.2 against 1.6 MiB). esbuild escapes them in string literals but leaves
  // regular expression literals as written, so the source must escape them itself (src/lib/duration.ts).
  const seaSource = await readFile(join(seaDir, 'agent.cjs'), 'utf8');
  const wide = seaSource.split('\n').findIndex((line) => [...line].some((c) => c.codePointAt(0) > 0xff));
  if (wide >= 0) throw new Error(`build/sea/agent.cjs line ${wide + 1} has a character beyond Latin-1, which would double the snapshot's copy of the source in memory: escape it in the source (\\uXXXX)`);
  const config = join(seaDir, 'sea-config.json');
  await writeFile(config, JSON.stringify({ main: join(seaDir, 'agent.cjs'), output: exe, useSnapshot: true, useCodeCache: false, disableExperimentalSEAWarning: true, execArgv: V8_START_FLAGS }, null, 2));
  const seaNode = opts['sea-node'] ?? process.execPath;
  // (the build takes a few seconds; the timeout stops one whose start-up run hangs)
  const r = spawnSync(seaNode, [...V8_START_FLAGS, '--build-sea', config], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 300_000, env: { ...process.env, AGENT_SNAPSHOT_PACKAGE_ROOT: root } });
  if (r.error) throw new Error(`cannot run ${seaNode} --build-sea: ${r.error.message}`);
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    // what made it crash so far, while src/sea.ts ran the start-up path: a `using` declaration in Node.js's
    // own code (node:fs/promises stat and lstat: src/lib/files.ts), a native binding the snapshot cannot
    // refer to ("Unknown external reference": node:net SocketAddress and BlockList)
    const hint = r.signal === 'SIGSEGV' ? ': did the start-up path call node:fs/promises stat or lstat? (src/lib/files.ts)' : '';
    throw new Error(`${seaNode} --build-sea failed (exit ${r.status ?? r.signal})${hint}`);
  }
  // Node.js's warning for each of them is three lines, from "(node:PID) Warning: ..." to the issue tracker's
  // address. Each must be there (else the module did not reach the snapshot); the rest of stderr is shown.
  let rest = r.stderr.replace(/^\(Use `node --trace-warnings.*\n/m, '');
  for (const m of SNAPSHOT_BUILTINS_UNVERIFIED) {
    const warning = new RegExp(`^\\(node:\\d+\\) Warning: [^\\n]*built-in module "${m}" works in user snapshot[^\\n]*\\n[^\\n]*\\n[^\\n]*nodejs/node/issues\\n`, 'm');
    if (!warning.test(rest)) throw new Error(`${m} was expected in the snapshot (Node.js warns about it), but Node.js did not report loading it`);
    rest = rest.replace(warning, '');
  }
  process.stderr.write(rest);
  await chmod(exe, 0o755);
  // Drop the new file's pages from the page cache (GNU dd: nocache with count=0 advises the kernel for the
  // whole file). Pages cached by writing the file are mapped in larger runs when the executable
  // faults them in, so a process started from a just-built executable shows about 35 MiB more resident
  // file-backed memory than one started from the same file read back from disk (measured: 118 against 82
  // MiB idle), which would skew the benchmark's memory figures. Best effort: nothing else depends on it.
  // The file is written back first (fdatasync): the kernel keeps pages not yet written.
  const dd = spawnSync('dd', [`of=${exe}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none'], { stdio: 'ignore' });
  if (dd.status !== 0) process.stderr.write(`bundle: could not drop ${exe} from the page cache (dd: ${dd.error?.message ?? `exit ${dd.status}`}); memory figures of a benchmark run now may be high\n`);
}
