// Bundles the agent (build/src, tsc's output) with esbuild into build/bundle/: main.js, the entry the
// image and the integration tests run, plus chunks that load only when used (each subcommand, execa for
// istio-iptables, node-forge's ASN.1 for CSRs). One file per piece instead of ~400 modules spread over
// node_modules: Node.js resolves, reads and compiles far fewer files at start-up (docs/performance.md).
// The sources stay as they are; dependencies come from node_modules at build time only.
import { build } from 'esbuild';
import { chmod, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
if (process.argv.includes('--analyze')) {
  const { analyzeMetafile } = await import('esbuild');
  process.stdout.write(await analyzeMetafile(result.metafile));
}
