import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultProxyConfig } from '../config/proxy-config.js';
import { buildNodeMetadata, nodeMetadataJson, nodeMetadataProblems, type NodeMetadataInput } from './metadata.js';

const input = (over: Partial<NodeMetadataInput> = {}): NodeMetadataInput => ({
  nodeId: 'sidecar~10.0.0.1~p.ns~ns.svc.cluster.local',
  env: {},
  proxyConfig: defaultProxyConfig(),
  instanceIps: ['10.0.0.1', '10.0.0.2', '10.0.0.1'],
  stsPort: 0,
  pilotSubjectAltNames: ['istiod.istio-system.svc'],
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
  ...over,
});

void describe('node metadata', () => {
  void it('has the fixed typed fields, sorted, with empty ones left out', () => {
    const md = nodeMetadataJson(buildNodeMetadata(input()));
    assert.deepEqual(Object.keys(md), [
      'ENVOY_PROMETHEUS_PORT',
      'ENVOY_SKIP_DEPRECATED_LOGS',
      'ENVOY_STATUS_PORT',
      'INSTANCE_IPS',
      'ISTIO_VERSION',
      'METADATA_DISCOVERY',
      'PILOT_SAN',
      'PROXY_CONFIG',
      'WORKLOAD_IDENTITY_SOCKET_FILE',
    ]);
    assert.equal(md.INSTANCE_IPS, '10.0.0.1,10.0.0.2');
    assert.equal(md.METADATA_DISCOVERY, 'false');
    assert.equal(md.ENVOY_SKIP_DEPRECATED_LOGS, 'true');
  });

  void it('merges proxyMetadata < ISTIO_META_* < ISTIO_METAJSON_* and keeps untyped keys', () => {
    const md = nodeMetadataJson(
      buildNodeMetadata(
        input({
          proxyConfig: { ...defaultProxyConfig(), proxyMetadata: { ISTIO_META_A: 'pc', ISTIO_META_B: 'pc', OTHER: 'x' } },
          env: { ISTIO_META_B: 'env', ISTIO_META_C: 'env', ISTIO_METAJSON_X: '{"C":"json","D":{"n":1}}', ISTIO_META_ISTIO_VERSION: 'custom' },
        }),
      ),
    );
    assert.equal(md.A, 'pc');
    assert.equal(md.B, 'env');
    assert.equal(md.C, 'json');
    assert.deepEqual(md.D, { n: 1 });
    assert.equal(md.OTHER, undefined);
    assert.equal(md.ISTIO_VERSION, 'custom');
  });

  void it('decodes typed fields case-insensitively and normalises their values', () => {
    const md = nodeMetadataJson(
      buildNodeMetadata(input({ env: { ISTIO_META_dns_capture: 'T', ISTIO_META_POD_PORTS: '[ {"containerPort": 80, "protocol": "TCP", "extra": 1} ]', ISTIO_META_REQUESTED_NETWORK_VIEW: '' } })),
    );
    assert.equal(md.DNS_CAPTURE, 'true');
    assert.equal(md.dns_capture, 'T', 'the raw key stays too');
    assert.equal(md.POD_PORTS, '[{"containerPort":80,"protocol":"TCP"}]');
    assert.equal(md.REQUESTED_NETWORK_VIEW, '', 'an empty typed value falls back to the raw one');
  });

  void it('LABELS and STATIC_LABELS share one map: the sanitised locality shows in both', () => {
    const node = buildNodeMetadata(input({ env: { ISTIO_METAJSON_LABELS: '{"app":"a","istio-locality":"r.z.s"}', POD_NAMESPACE: 'ns' } }));
    const md = nodeMetadataJson(node);
    assert.deepEqual(md.LABELS, { app: 'a', 'istio-locality': 'r/z/s' });
    assert.deepEqual(md.STATIC_LABELS, { app: 'a', 'istio-locality': 'r/z/s' });
    assert.equal(md['istio-locality'], 'r.z.s');
    assert.deepEqual(node.locality, { region: 'r', zone: 'z', subZone: 's' });
    assert.equal(md.NAMESPACE, 'ns');
  });

  void it('the labels file overrides static labels (without pod-template-hash) and the annotations file is merged', () => {
    const node = buildNodeMetadata(
      input({
        env: { ISTIO_METAJSON_LABELS: '{"app":"static","keep":"1"}', ISTIO_METAJSON_ANN: '{"ANNOTATIONS":{"from":"env"}}' },
        podLabels: { app: 'file', 'pod-template-hash': 'abc', 'topology.istio.io/locality': 'eu.west' },
        podAnnotations: { a: 'b' },
      }),
    );
    const md = nodeMetadataJson(node);
    assert.deepEqual(md.LABELS, { app: 'file', keep: '1', 'topology.istio.io/locality': 'eu.west', 'istio-locality': 'eu/west' });
    assert.deepEqual(md.STATIC_LABELS, { app: 'static', keep: '1' });
    assert.deepEqual(md.ANNOTATIONS, { from: 'env', a: 'b' });
    assert.deepEqual(node.locality, { region: 'eu', zone: 'west', subZone: '' });
  });

  void it('adds credential keys, STS port, exit-on-zero and metadata discovery from HBONE', () => {
    const md = nodeMetadataJson(
      buildNodeMetadata(input({ credentialSocketExists: true, customCredentialsFileExists: true, stsPort: 15463, exitOnZeroActiveConnections: true, env: { ISTIO_META_ENABLE_HBONE: 'true' } })),
    );
    assert.equal(md.credential, 'true');
    assert.equal(md['file-credential'], 'true');
    assert.equal(md.STS_PORT, '15463');
    assert.equal(md.EXIT_ON_ZERO_ACTIVE_CONNECTIONS, 'true');
    assert.equal(md.METADATA_DISCOVERY, 'true');
    const forced = nodeMetadataJson(buildNodeMetadata(input({ metadataDiscovery: false, env: { ISTIO_META_ENABLE_HBONE: 'true' } })));
    assert.equal(forced.METADATA_DISCOVERY, 'false');
  });

  void it('reports malformed input with its source', () => {
    const problems = nodeMetadataProblems({ ISTIO_METAJSON_A: '[1]', ISTIO_METAJSON_B: '{', ISTIO_META_ENABLE_HBONE: 'si', ISTIO_METAJSON_C: '{"LABELS":{"a":1}}' }, defaultProxyConfig());
    assert.deepEqual(problems.map((p) => p.replace(/: .*$/s, '')), ['env ISTIO_METAJSON_A', 'env ISTIO_METAJSON_B', 'node metadata ENABLE_HBONE (from env ISTIO_META_ENABLE_HBONE)', 'node metadata LABELS (from env ISTIO_METAJSON_C).a']);
    assert.throws(() => buildNodeMetadata(input({ env: { ISTIO_META_DNS_CAPTURE: 'x' } })), /failed to generate bootstrap metadata: node metadata DNS_CAPTURE/);
  });
});
