// Property tests for the node-metadata inputs (ISTIO_META_* strings and ISTIO_METAJSON_* JSON objects
// from the environment, ISTIO_META_* keys of ProxyConfig proxyMetadata), as buildNodeMetadata and
// nodeMetadataIssues read them:
//   - any environment: a list of problems (never an exception), each naming the variable it is about;
//     buildNodeMetadata fails exactly when there are problems, with an Error listing them;
//   - without problems, the metadata is JSON and holds every untyped key with the value it was given
//     (keys such as `__proto__`, `constructor` or `toString` included), the later source winning;
//   - limits (limits.ts): a value over 256 KiB or nested deeper than 100 levels is a problem naming the variable.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, deepValue, hostileJson, yamlSoup } from '../../test/helpers/config-arbitraries.js';
import { MAX_VALUE_BYTES } from '../config/limits.js';
import { defaultProxyConfig } from '../config/proxy-config.js';
import { buildNodeMetadata, nodeMetadataIssues, nodeMetadataJson, TYPED_FIELDS, type NodeMetadataInput } from './metadata.js';

const input = (env: Record<string, string>, proxyMetadata?: Record<string, string>): NodeMetadataInput => ({
  nodeId: 'sidecar~10.0.0.1~p.ns~ns.svc.cluster.local',
  env,
  proxyConfig: { ...defaultProxyConfig(), ...(proxyMetadata ? { proxyMetadata } : {}) },
  instanceIps: ['10.0.0.1'],
  stsPort: 0,
  pilotSubjectAltNames: [],
  credentialSocketExists: false,
  customCredentialsFileExists: false,
  xdsRootCert: '',
  outlierLogPath: '',
  envoyStatusPort: 15021,
  envoyPrometheusPort: 15090,
  exitOnZeroActiveConnections: false,
  metadataDiscovery: undefined,
  envoySkipDeprecatedLogs: true,
  workloadIdentitySocketFile: 'socket',
  podLabels: undefined,
  podAnnotations: undefined,
  istioVersion: '1.30.3',
});

const TYPED = Object.keys(TYPED_FIELDS);
const isTyped = (k: string) => TYPED.some((t) => t.toUpperCase() === k.toUpperCase());
/** Keys: typed field names (any case), names that collide with Object.prototype, anything. */
const metaKey = fc.oneof(fc.constantFrom(...TYPED).chain((k) => fc.constantFrom(k, k.toLowerCase())), fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'credential'), anyString(8));
const envKeyOf = (prefix: string) => metaKey.filter((k) => !k.includes('\0')).map((k) => `${prefix}${k}`);
const metaEnv = fc.dictionary(envKeyOf('ISTIO_META_'), fc.oneof(anyString(12), fc.constantFrom('true', 'false', 'maybe', '[]', '[{"containerPort":80,"protocol":"TCP"}]', '[null,1]', '{"a":"b"}', '15020')), { maxKeys: 5 });
const metaJsonEnv = fc.dictionary(
  envKeyOf('ISTIO_METAJSON_'),
  fc.oneof(fc.dictionary(metaKey, hostileJson, { maxKeys: 4 }).map((v) => JSON.stringify(v)), yamlSoup, anyString(10), fc.constantFrom('null', '[1]', '"s"', '{}')),
  { maxKeys: 4 },
);

void describe('node metadata from the environment', () => {
  void it('any environment: problems naming their variable; buildNodeMetadata fails exactly when there are some', () => {
    fc.assert(
      fc.property(metaEnv, metaJsonEnv, (meta, metaJson) => {
        const env = { ...meta, ...metaJson };
        const problems = nodeMetadataIssues(env, input(env).proxyConfig);
        for (const p of problems) {
          assert.match(p.origin, /^env /);
          assert.ok(p.origin.slice(4) in env, `${p.origin} was not given`);
          if (p.key === '') assert.equal(p.source, p.origin);
          else assert.equal(p.source, `node metadata ${p.key} (from ${p.origin})`);
          assert.ok(p.message.length > 0 && p.message.length < 300, p.message);
        }
        let node;
        try {
          node = buildNodeMetadata(input(env));
        } catch (e) {
          assert.ok(problems.length > 0, `failed without problems: ${(e as Error).message}`);
          assert.match((e as Error).message, /^failed to generate bootstrap metadata: /);
          return;
        }
        assert.equal(problems.length, 0);
        const out = nodeMetadataJson(node);
        JSON.stringify(out);
        // every untyped key is there with its value; later sources win (ISTIO_META_* < ISTIO_METAJSON_*)
        const expected = new Map<string, unknown>();
        for (const [k, v] of Object.entries(env)) if (k.startsWith('ISTIO_META_')) expected.set(k.slice(11), v);
        for (const [k, v] of Object.entries(env)) {
          if (!k.startsWith('ISTIO_METAJSON_')) continue;
          const parsed = JSON.parse(v) as unknown;
          if (parsed && typeof parsed === 'object') for (const [jk, jv] of Object.entries(parsed)) expected.set(jk, jv);
        }
        for (const [k, v] of expected) {
          if (isTyped(k)) continue;
          assert.ok(Object.hasOwn(out, k), `key ${JSON.stringify(k)} is missing`);
          assert.deepEqual(out[k], v);
        }
      }),
      { numRuns: 3000 },
    );
  });

  void it('ISTIO_META_* keys of proxyMetadata come first, the environment overrides them', () => {
    fc.assert(
      fc.property(fc.dictionary(metaKey.filter((k) => !isTyped(k)), anyString(6), { maxKeys: 4 }), fc.dictionary(metaKey.filter((k) => !isTyped(k)), anyString(6), { maxKeys: 4 }), (fromPc, fromEnv) => {
        const pm = Object.fromEntries(Object.entries(fromPc).map(([k, v]) => [`ISTIO_META_${k}`, v]));
        const env = Object.fromEntries(Object.entries(fromEnv).map(([k, v]) => [`ISTIO_META_${k}`, v]));
        const out = nodeMetadataJson(buildNodeMetadata(input(env, pm)));
        for (const [k, v] of Object.entries({ ...fromPc, ...fromEnv })) assert.equal(out[k], v);
      }),
      { numRuns: 500 },
    );
  });

  void it('refuses ISTIO_METAJSON_* values over 256 KiB or nested deeper than 100 levels, naming the variable', () => {
    fc.assert(
      fc.property(fc.integer({ min: 101, max: 30_000 }), fc.constantFrom('array', 'object') as fc.Arbitrary<'array' | 'object'>, (depth, kind) => {
        const text = kind === 'array' ? `{"k":${'['.repeat(depth)}${']'.repeat(depth)}}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
        const env = { ISTIO_METAJSON_X: text };
        assert.deepEqual(nodeMetadataIssues(env, defaultProxyConfig()).map((p) => `${p.source}: ${p.message}`), ['env ISTIO_METAJSON_X: JSON nested deeper than 100 levels']);
        assert.throws(() => buildNodeMetadata(input(env)), /failed to generate bootstrap metadata: env ISTIO_METAJSON_X: JSON nested deeper/);
      }),
      { numRuns: 40 },
    );
    // 100 levels: accepted, and the bootstrap metadata serialises
    const ok = { ISTIO_METAJSON_X: JSON.stringify({ k: deepValue(99) }) };
    assert.deepEqual(nodeMetadataJson(buildNodeMetadata(input(ok))).k, deepValue(99));
    const big = { ISTIO_METAJSON_BIG: JSON.stringify({ a: 'é'.repeat(MAX_VALUE_BYTES / 2) }) };
    assert.deepEqual(nodeMetadataIssues(big, defaultProxyConfig()).map((p) => p.source), ['env ISTIO_METAJSON_BIG']);
    assert.match(nodeMetadataIssues(big, defaultProxyConfig())[0]!.message, /^value is \d+ bytes, larger than the 256 KiB limit$/);
  });
});
