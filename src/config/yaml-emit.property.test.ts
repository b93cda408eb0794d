// Property tests for toYaml, the `Effective config:` log line's YAML: every JSON value reads back unchanged
// with the `yaml` package in YAML 1.1 (what Istio's Go YAML reads) and 1.2, and a ProxyConfig prints as
// `yaml.stringify(v, { sortMapEntries: true, lineWidth: 0 })` prints it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { defaultProxyConfig, proxyConfigToJson } from './proxy-config.js';
import { toYaml } from './yaml-emit.js';

const readBack = (text: string, version: '1.1' | '1.2'): unknown =>
  parse(text, { version, customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:timestamp') });

/** Strings a config holds, and the ones YAML could misread. */
const tricky = fc.constantFrom(
  '', ' ', 'yes', 'No', 'on', 'OFF', 'y', 'n', 'true', 'null', '~', '.inf', '-.Inf', '.nan', '0', '-1', '+1', '0x1F', '0o17', '017', '1_000', '1e3', '.5', '1.', '190:20:30',
  '2026-01-01', '2026-01-01T00:00:00Z', '45s', '1h0m0s', './etc/istio/proxy', '/usr/local/bin/envoy', 'istiod.istio-system.svc:15012', 'zipkin:9411', 'a:', 'a: b', 'a #b',
  '#c', '- x', '? x', '& a', '*a', '!tag', '%x', '@x', '`x', '|', '>', '"q"', "'q'", '{a}', '[a]', 'a,b', '...', '---', '=', '<<', '::1', '[::1]:15012', 'é', '日本', '\t', 'a\nb', '\u0000',
  'http://x/y?z=1', 'k=v', 'a+b', 'A_B-C.d/e',
);
const str = fc.oneof(tricky, fc.string(), fc.string({ unit: 'grapheme' }));
const json = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, str, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0)), fc.boolean(), fc.constant(null), tie('arr'), tie('obj')),
  arr: fc.array(tie('value'), { maxLength: 4 }),
  obj: fc.dictionary(str, tie('value'), { maxKeys: 5 }),
}));

void describe('toYaml', () => {
  void it('reads back as the same value in YAML 1.1 and 1.2', () => {
    fc.assert(
      fc.property(json.obj, (generated) => {
        const v = JSON.parse(JSON.stringify(generated)) as unknown;
        const text = toYaml(v);
        assert.deepEqual(readBack(text, '1.2'), v, text);
        assert.deepEqual(readBack(text, '1.1'), v, text);
      }),
      { numRuns: 2000 },
    );
    for (const s of ['yes', '0x1F', '190:20:30', '2026-01-01', 'a: b', '::1', '', '...', '=']) {
      assert.deepEqual(readBack(toYaml({ k: s, [s]: [s] }), '1.1'), { k: s, [s]: [s] });
    }
  });

  void it('prints a ProxyConfig as the yaml package does (keys sorted, block style)', () => {
    const pc = {
      ...proxyConfigToJson(defaultProxyConfig()),
      concurrency: 2,
      proxyMetadata: { ISTIO_META_DNS_CAPTURE: 'true', B: '45s' },
      extraStatTags: ['a', 'b'],
      tracing: { zipkin: { address: 'zipkin.istio-system:9411' }, sampling: 1.5 },
      proxyStatsMatcher: { inclusionPrefixes: [] },
      holdApplicationUntilProxyStarts: true,
      readinessProbe: { httpGet: { path: '/ready', port: 15021 }, timeoutSeconds: 3 },
      gatewayTopology: { numTrustedProxies: 2, forwardClientCertDetails: 'SANITIZE_SET' },
      volumes: [{ name: 'a', emptyDir: {} }],
    };
    assert.equal(toYaml(pc), stringify(pc, { sortMapEntries: true, lineWidth: 0 }));
    assert.match(toYaml(pc), /^binaryPath: \/usr\/local\/bin\/envoy\nconcurrency: 2\nconfigPath: \.\/etc\/istio\/proxy\n/);
  });
});
