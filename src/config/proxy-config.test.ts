import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyProxyConfigLayer, defaultProxyConfig, durationMs, proxyConfigToJson, type ProxyConfig } from './proxy-config.js';
import * as yaml from 'yaml';
import { parseYamlOrJsonWith } from './yaml.js';

const parseYamlOrJson = (text: string): unknown => parseYamlOrJsonWith(yaml, text);

const apply = (base: ProxyConfig, text: string): ProxyConfig => {
  const r = applyProxyConfigLayer(base, parseYamlOrJson(text));
  assert.deepEqual(r.errors, []);
  return r.value;
};

void describe('ProxyConfig layers (jsonpb merge semantics)', () => {
  void it("has Istio 1.30's defaults", () => {
    assert.deepEqual(proxyConfigToJson(defaultProxyConfig()), {
      binaryPath: '/usr/local/bin/envoy',
      configPath: './etc/istio/proxy',
      controlPlaneAuthPolicy: 'MUTUAL_TLS',
      discoveryAddress: 'istiod.istio-system.svc:15012',
      drainDuration: '45s',
      proxyAdminPort: 15000,
      serviceCluster: 'istio-proxy',
      statNameLength: 189,
      statusPort: 15020,
      terminationDrainDuration: '5s',
    });
  });

  void it('replaces present fields, keeps absent ones, ignores null', () => {
    const pc = apply(defaultProxyConfig(), '{"drainDuration":"1m30s","statusPort":null,"discoveryAddress":"x:1"}');
    assert.equal(pc.drainDuration, '90s');
    assert.equal(pc.statusPort, 15020);
    assert.equal(pc.discoveryAddress, 'x:1');
    assert.equal(pc.binaryPath, '/usr/local/bin/envoy');
  });

  void it('a zero scalar unsets the field (proto3), messages and wrappers stay set', () => {
    const pc = apply(defaultProxyConfig(), 'statNameLength: 0\ncontrolPlaneAuthPolicy: NONE\nstatsCompression: false\nconcurrency: 0\ntracing: {}\n');
    assert.equal(pc.statNameLength, undefined);
    assert.equal(pc.controlPlaneAuthPolicy, undefined);
    assert.equal(pc.statsCompression, false);
    assert.equal(pc.concurrency, 0);
    assert.deepEqual(pc.tracing, {});
  });

  void it('nested messages and lists are replaced wholesale', () => {
    let pc = apply({}, 'tracing: {zipkin: {address: "a:1"}, sampling: 5}\nextraStatTags: [a, b]\n');
    pc = apply(pc, 'tracing: {sampling: 1}\nextraStatTags: [c]\n');
    assert.deepEqual(pc.tracing, { sampling: 1 });
    assert.deepEqual(pc.extraStatTags, ['c']);
  });

  void it('proxyMetadata is merged key by key; runtimeValues is replaced', () => {
    let pc = apply({}, 'proxyMetadata: {A: "1", B: "2"}\nruntimeValues: {x: "1"}\n');
    pc = apply(pc, 'proxyMetadata: {B: "3", C: "4"}\nruntimeValues: {yk: "2"}\n');
    assert.deepEqual(pc.proxyMetadata, { A: '1', B: '3', C: '4' });
    assert.deepEqual(pc.runtimeValues, { yk: '2' });
  });

  void it('proxyHeaders keeps sub-fields the new layer leaves unset', () => {
    let pc = apply({}, '{"proxyHeaders":{"server":{"disabled":true},"forwardedClientCert":"SANITIZE","requestId":{"disabled":true}}}');
    pc = apply(pc, '{"proxyHeaders":{"attemptCount":{"disabled":true}}}');
    assert.deepEqual(pc.proxyHeaders, { attemptCount: { disabled: true }, server: { disabled: true }, forwardedClientCert: 'SANITIZE', requestId: { disabled: true } });
  });

  void it('a oneof member clears the other (serviceCluster / tracingServiceName)', () => {
    const pc = apply(defaultProxyConfig(), 'tracingServiceName: CANONICAL_NAME_ONLY');
    assert.equal(pc.serviceCluster, undefined);
    assert.equal(pc.tracingServiceName, 'CANONICAL_NAME_ONLY');
    const back = apply(pc, 'serviceCluster: ""');
    assert.equal(back.serviceCluster, '');
    assert.equal(back.tracingServiceName, undefined);
  });

  void it('accepts proto names, quoted integers, enum numbers and YAML 1.1 booleans', () => {
    const pc = apply({}, 'proxy_admin_port: "15001"\ncontrolPlaneAuthPolicy: 1\nholdApplicationUntilProxyStarts: yes\nstatus_port: 15021.0\n');
    assert.equal(pc.proxyAdminPort, 15001);
    assert.equal(pc.controlPlaneAuthPolicy, 'MUTUAL_TLS');
    assert.equal(pc.holdApplicationUntilProxyStarts, true);
    assert.equal(pc.statusPort, 15021);
  });

  void it('tolerates unknown fields but reports them', () => {
    const r = applyProxyConfigLayer({}, parseYamlOrJson('{"binaryPath":"/e","noSuchField":1,"tracing":{"nope":true}}'));
    assert.deepEqual(r.errors, []);
    assert.deepEqual([...r.unknown].sort(), ['noSuchField', 'tracing.nope']);
    assert.equal(r.value.binaryPath, '/e');
  });

  void it('reports every type error with its path', () => {
    const r = applyProxyConfigLayer({}, parseYamlOrJson('{"drainDuration":5,"proxyAdminPort":1.5,"extraStatTags":"a","tracing":{"zipkin":{"address":7}},"interceptionMode":"BOGUS"}'));
    assert.equal(r.errors.length, 5, r.errors.join('\n'));
    assert.match(r.errors.join('\n'), /drainDuration: bad Duration/);
    assert.match(r.errors.join('\n'), /proxyAdminPort: cannot unmarshal number 1\.5 into int32/);
    assert.match(r.errors.join('\n'), /extraStatTags: cannot unmarshal string into a list/);
    assert.match(r.errors.join('\n'), /tracing\.zipkin\.address: cannot unmarshal number 7 into string/);
    assert.match(r.errors.join('\n'), /interceptionMode: unknown value "BOGUS"/);
  });

  void it('int64 wrappers are strings in protobuf JSON; durations are canonical', () => {
    const pc = apply({}, '{"tracing":{"stackdriver":{"maxNumberOfAttributes":200}},"fileFlushInterval":"1500ms","terminationDrainDuration":"1h"}');
    assert.equal(pc.tracing?.stackdriver?.maxNumberOfAttributes, '200');
    assert.equal(pc.fileFlushInterval, '1.500s');
    assert.equal(pc.terminationDrainDuration, '3600s');
    assert.equal(durationMs(pc.fileFlushInterval), 1500);
  });
});
