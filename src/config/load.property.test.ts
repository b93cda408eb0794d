// Property tests for `agent proxy` start-up configuration as a whole (loadProxyCommand): flags,
// environment, the downward-API files and the mesh config file, all generated, valid or hostile.
//   - the loader resolves, or throws a ConfigError and nothing else (README: bad input stops start-up
//     with one message listing every problem, exit 255);
//   - every problem names the input it is about, as `issues` sources do (the flag, the variable, the
//     file, the annotation, the node-metadata key and where it came from), and that input was given;
//   - the limits of limits.ts hold: oversized files and values, deep JSON, unopenable log files and
//     durations past Go's range are problems with a source, not crashes.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, goDurationText, hostileJson, messageArb, yamlSoup } from '../../test/helpers/config-arbitraries.js';
import { PROXY_FLAGS } from '../cli/proxy-flags.js';
import { TYPED_FIELDS } from '../bootstrap/metadata.js';
import { ConfigError } from '../lib/errors.js';
import { formatDownwardApi } from './downward-api.js';
import { MAX_FILE_BYTES, MAX_VALUE_BYTES } from './limits.js';
import { loadProxyCommand } from '../cli/proxy-load.js';

const eth0 = (address: string): NetworkInterfaceInfo => ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null });
const ANNOTATIONS = './etc/istio/pod/annotations';

interface Input {
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly annotations?: Record<string, string> | Uint8Array;
  readonly labels?: Record<string, string> | Uint8Array;
  readonly mesh?: string;
}

const root = await mkdtemp(join(tmpdir(), 'load-prop-'));
let seq = 0;
const sink = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

/** Runs the loader in a fresh directory; returns the issues (none when it resolved). Any other throw fails. */
async function load(input: Input): Promise<ReadonlyArray<{ source: string; message: string }>> {
  const cwd = join(root, String(seq++));
  await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
  await mkdir(join(cwd, 'etc/istio/config'), { recursive: true });
  const file = (v: Record<string, string> | Uint8Array) => (v instanceof Uint8Array ? v : formatDownwardApi(v));
  if (input.annotations) await writeFile(join(cwd, ANNOTATIONS), file(input.annotations));
  if (input.labels) await writeFile(join(cwd, 'etc/istio/pod/labels'), file(input.labels));
  if (input.mesh !== undefined) await writeFile(join(cwd, 'etc/istio/config/mesh'), input.mesh);
  const ctx = { env: input.env, cwd, stdout: sink(), stderr: sink(), signals: new EventEmitter() };
  try {
    await loadProxyCommand(input.args, ctx, { interfaces: { eth0: [eth0('10.0.0.2')] }, hostCpus: 4, lookup: async () => ['10.0.0.9'] });
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw new Error(`loadProxyCommand threw ${String((e as Error)?.name)}: ${String((e as Error)?.message)} (only ConfigError is allowed)`, { cause: e });
    assert.ok(e.issues.length > 0);
    return e.issues;
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}

/** Asserts every problem names an input that was given. */
function assertSourcesNameInputs(issues: ReadonlyArray<{ source: string; message: string }>, input: Input): void {
  const flagNames = new Set(PROXY_FLAGS.map((f) => f.name));
  const annotations = input.annotations instanceof Uint8Array || !input.annotations ? {} : input.annotations;
  for (const { source, message } of issues) {
    assert.ok(typeof message === 'string' && message.length > 0, `empty message for ${source}`);
    let m: RegExpExecArray | null;
    if ((m = /^env (\S+)$/.exec(source))) assert.ok(m[1]! in input.env, `${source}: not in the environment`);
    else if ((m = /^flag --(\S+)$/.exec(source)) || (m = /^flag -. \(--(\S+)\)$/u.exec(source))) assert.ok(flagNames.has(m[1]!), `${source}: no such flag`);
    else if ((m = /^annotation (.+) \(\.\/etc\/istio\/pod\/annotations\)$/s.exec(source))) assert.ok(m[1]! in annotations, `${source}: no such annotation`);
    else if ((m = /^node metadata (\S+) \(from (?:env (\S+)|ProxyConfig proxyMetadata (\S+))\)$/.exec(source))) {
      assert.ok(m[2] === undefined || m[2] in input.env, `${source}: not in the environment`);
    } else if ((m = /^file (.*?)( \(defaultConfig\))?$/s.exec(source))) {
      // the mesh config: the default, or a value given to --meshConfig
      const meshFlags = input.args.flatMap((x, i) => (x === '--meshConfig' ? [input.args[i + 1]] : x.startsWith('--meshConfig=') ? [x.slice(13)] : []));
      assert.ok([ANNOTATIONS, './etc/istio/pod/labels', './etc/istio/config/mesh', ...meshFlags].includes(m[1]!), `${source}: not an input file`);
    } else assert.ok(['effective ProxyConfig', 'bootstrap', 'argument proxy type'].includes(source), `unexpected source: ${source}`);
  }
}

// ---- generators (each input is absent or valid often enough that some loads succeed) ----

/** `arb` one time in `n`, else undefined. */
const sometimes = <T>(arb: fc.Arbitrary<T>, n = 3): fc.Arbitrary<T | undefined> => fc.oneof({ weight: n - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const stringFlags = PROXY_FLAGS.filter((f) => f.type === 'string' && !['meshConfig', 'templateFile'].includes(f.name)).map((f) => f.name);
const intFlags = PROXY_FLAGS.filter((f) => f.type === 'int').map((f) => f.name);
const flagArg = fc.oneof(
  fc.tuple(fc.constantFrom(...stringFlags), fc.oneof(anyString(12), fc.constantFrom('default:debug', 'bad:level', 'info,misc:error', 'a:b:c'))).map(([n, v]) => [`--${n}=${v}`]),
  fc.tuple(fc.constantFrom(...intFlags), fc.oneof(fc.integer().map(String), fc.constantFrom('0x10', '-0x10', '0o17', '99999999999999999999', 'many', ''))).map(([n, v]) => [`--${n}`, v]),
  fc.oneof(goDurationText, fc.constantFrom('10', '0s', '-1s', `${'9'.repeat(400)}h`, '99999999999h')).map((v) => [`--restart-budget-window=${v}`]),
  fc.constantFrom(['--meshConfig', 'missing'], ['--meshConfig='], ['--meshConfig', './etc/istio/config'], ['--log_target', 'log.txt'], ['--log_target', 'no/such/dir/x'], ['--log_target=stderr']),
  fc.constantFrom(['--disable-hot-restart'], ['--bootstrap-only=maybe'], ['-h=x'], ['--unknown-flag', 'v'], ['router'], ['gateway'], ['--domain'], ['--'], ['-']),
);
const args = sometimes(fc.array(flagArg, { minLength: 1, maxLength: 4 }), 2).map((a) => (a ?? []).flat());

const proxyConfigText = fc.oneof(
  yamlSoup,
  hostileJson.map((v) => JSON.stringify(v) ?? ''),
  fc.dictionary(fc.constantFrom('drainDuration', 'concurrency', 'proxyMetadata', 'tracing', 'statusPort', 'discoveryAddress', 'extraStatTags'), hostileJson, { maxKeys: 3 }).map((v) => JSON.stringify(v)),
  messageArb('ProxyConfig').map((v) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x))),
);
const typedKey = fc.constantFrom(...Object.keys(TYPED_FIELDS)).chain((k) => fc.constantFrom(k, k.toLowerCase()));
const metaEnv = fc.dictionary(
  fc.oneof(typedKey, fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/)).map((k) => `ISTIO_META_${k}`),
  fc.oneof(anyString(12), fc.constantFrom('true', 'maybe', '[]', '[{"containerPort":1}]', '[null, 1]', '{"a":1}', '15020')),
  { maxKeys: 4 },
);
const metaJsonEnv = fc.dictionary(
  fc.stringMatching(/^[A-Z]{1,6}$/).map((k) => `ISTIO_METAJSON_${k}`),
  fc.oneof(fc.dictionary(fc.oneof(typedKey, anyString(6)), hostileJson, { maxKeys: 3 }).map((v) => JSON.stringify(v)), yamlSoup, fc.constantFrom('null', '[1]', '{"LABELS":{"a":1}}', '{"__proto__":{"x":1}}')),
  { maxKeys: 3 },
);
const envNames = ['ISTIO_CPU_LIMIT', 'ENVOY_STATUS_PORT', 'MINIMUM_DRAIN_DURATION', 'SECRET_TTL', 'SECRET_GRACE_PERIOD_RATIO', 'ISTIO_DELTA_XDS', 'ECC_CURVE', 'ISTIO_KUBE_APP_PROBERS', 'WORKLOAD_IDENTITY_SOCKET_FILE', 'PEER_METADATA_DISCOVERY', 'ISTIO_META_DNS_CAPTURE', 'CA_HEADER___proto__', 'INSTANCE_IP'];
const otherEnv = fc.dictionary(fc.constantFrom(...envNames), fc.oneof(anyString(10), goDurationText, fc.integer().map(String), fc.constantFrom('true', '{}', '1e400', '1'.repeat(5000) + 'x')), { maxKeys: 4 });
const env = fc
  .tuple(sometimes(proxyConfigText), sometimes(metaEnv), sometimes(metaJsonEnv), sometimes(otherEnv))
  .map(([pc, meta, metaJson, other]) => ({ CLOUD_PLATFORM: 'none', POD_NAME: 'p', POD_NAMESPACE: 'ns', ...(pc === undefined ? {} : { PROXY_CONFIG: pc }), ...meta, ...metaJson, ...other }) as Record<string, string>);
const annotationMap = fc.dictionary(
  fc.oneof(
    fc.constantFrom('proxy.istio.io/config', 'sidecar.istio.io/discoveryAddress', 'status.sidecar.istio.io/port', 'traffic.sidecar.istio.io/excludeInterfaces', 'sidecar.istio.io/statsHistogramBuckets', 'sidecar.istio.io/statsFlushInterval', 'sidecar.istio.io/statsEvictionInterval', 'sidecar.istio.io/extraStatTags'),
    anyString(8).filter((k) => !k.includes('=') && !k.includes('\n')),
  ),
  fc.oneof(proxyConfigText, anyString(12), fc.constantFrom('0', '15020', '-1', '99999', 'istiod:15012', 'eth0,__proto__', '{"a":[1,2]}', '5s')),
  { maxKeys: 4 },
);
const podFile = sometimes(fc.oneof({ weight: 4, arbitrary: annotationMap }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }) }), 2);
const mesh = sometimes(fc.oneof(yamlSoup, proxyConfigText.map((t) => `defaultConfig: ${t}`), proxyConfigText.map((t) => JSON.stringify({ defaultConfig: JSON.parse(t === '' ? 'null' : safeJson(t)) }))));

function safeJson(t: string): string {
  try {
    JSON.parse(t);
    return t;
  } catch {
    return 'null';
  }
}

void describe('loadProxyCommand on generated input', () => {
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('resolves or throws ConfigError, whose every problem names an input that was given', async () => {
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(args, env, podFile, podFile, mesh, async (a, e, annotations, labels, m) => {
        const input: Input = { args: a, env: e, ...(annotations ? { annotations } : {}), ...(labels ? { labels } : {}), ...(m === undefined ? {} : { mesh: m }) };
        const issues = await load(input);
        if (issues.length) rejected++;
        assertSourcesNameInputs(issues, input);
      }),
      { numRuns: 200 },
    );
    assert.ok(rejected > 0 && rejected < 200, `rejected ${rejected} of 200: the generators should produce both`);
  });

  void it('refuses oversized values and files, deep metadata JSON, bad log files and durations past Go, naming each', async () => {
    const base = { CLOUD_PLATFORM: 'none', POD_NAME: 'p', POD_NAMESPACE: 'ns' };
    const big = `proxyMetadata: {A: "${'x'.repeat(MAX_VALUE_BYTES)}"}`;
    const deep = `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const issues = await load({
      args: ['--restart-budget-window', `${'9'.repeat(400)}h`, '--log_target', 'no/such/dir/agent.log'],
      env: { ...base, PROXY_CONFIG: big, ISTIO_METAJSON_DEEP: deep, ISTIO_METAJSON_BIG: JSON.stringify({ a: 'x'.repeat(MAX_VALUE_BYTES) }) },
      annotations: { 'proxy.istio.io/config': big },
      labels: { big: 'x'.repeat(MAX_FILE_BYTES) },
      mesh: `# ${'x'.repeat(MAX_FILE_BYTES)}`,
    });
    const bySource = new Map(issues.map((i) => [i.source, i.message]));
    assert.match(bySource.get('flag --restart-budget-window')!, /^invalid duration "9{200}…\(401 characters\)"$/);
    assert.match(bySource.get('flag --log_target')!, /^cannot open log file "no\/such\/dir\/agent.log": ENOENT/);
    assert.match(bySource.get('env PROXY_CONFIG')!, /^value is \d+ bytes, larger than the 256 KiB limit$/);
    assert.match(bySource.get('annotation proxy.istio.io/config (./etc/istio/pod/annotations)')!, /larger than the 256 KiB limit/);
    assert.equal(bySource.get('env ISTIO_METAJSON_DEEP'), 'JSON nested deeper than 100 levels');
    assert.match(bySource.get('env ISTIO_METAJSON_BIG')!, /larger than the 256 KiB limit/);
    assert.match(bySource.get('file ./etc/istio/pod/labels')!, /^file is \d+ bytes, larger than the 1 MiB limit for a downward-API file$/);
    assert.match(bySource.get('file ./etc/istio/config/mesh')!, /^failed to read mesh config file: file is \d+ bytes, larger than the 1 MiB limit$/);
    for (const i of issues) assert.ok(i.message.length < 400, `long message for ${i.source}`);
  });

  void it('node-metadata problems keep their own source, also inside values', async () => {
    const issues = await load({
      args: [],
      env: { CLOUD_PLATFORM: 'none', ISTIO_META_POD_PORTS: '[1, {"containerPort":"x"}]', ISTIO_METAJSON_L: '{"LABELS":{"a":1},"__proto__":{"ISTIO_VERSION":1}}' },
    });
    assert.deepEqual(issues, [
      { source: 'node metadata LABELS (from env ISTIO_METAJSON_L)', message: 'LABELS.a: cannot unmarshal number into a string' },
      { source: 'node metadata POD_PORTS (from env ISTIO_META_POD_PORTS)', message: 'POD_PORTS[0]: want an object' },
      { source: 'node metadata POD_PORTS (from env ISTIO_META_POD_PORTS)', message: 'POD_PORTS[1].containerPort: want an integer' },
    ]);
  });
});
