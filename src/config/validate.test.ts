import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultProxyConfig } from './proxy-config.js';
import { splitHostPort, validateProxyAddress, validateProxyConfig } from './validate.js';

void describe('ProxyConfig validation', () => {
  void it('splits host:port like net.SplitHostPort', () => {
    assert.deepEqual(splitHostPort('istiod.istio-system.svc:15012'), ['istiod.istio-system.svc', '15012']);
    assert.deepEqual(splitHostPort('[::1]:15010'), ['::1', '15010']);
    assert.deepEqual(splitHostPort(':80'), ['', '80']);
    assert.throws(() => splitHostPort('host'), /missing port in address/);
    assert.throws(() => splitHostPort('::1:80'), /too many colons/);
    assert.throws(() => splitHostPort('[::1]80'), /missing port/);
  });
  void it('accepts DNS-1123 host names and IPs, with ports 1..65535', () => {
    for (const ok of ['a.b.svc:15012', '10.0.0.1:9125', '[fd00::1]:80', 'localhost:1', 'x.y.:65535']) assert.equal(validateProxyAddress(ok), undefined, ok);
    assert.match(validateProxyAddress('Upper.case:80')!, /not a valid hostname or an IP address/);
    assert.match(validateProxyAddress('host:0')!, /port number 0 must be in the range 1\.\.65535/);
    assert.match(validateProxyAddress('host:http')!, /port \(http\) is not a number/);
    assert.match(validateProxyAddress('a.123:80')!, /not a valid hostname/);
  });
  void it('accepts the defaults and reports each problem of a bad config', () => {
    assert.deepEqual(validateProxyConfig(defaultProxyConfig()), { errors: [], warnings: [] });
    const v = validateProxyConfig({ drainDuration: '0.500s', discoveryAddress: 'nohost', proxyAdminPort: 70000, controlPlaneAuthPolicy: 'INHERIT', tracing: { lightstep: { address: 'ls:1' } }, proxyMetadata: { ISTIO_META_DNS_AUTO_ALLOCATE: 'true' } });
    assert.deepEqual(v.errors, [
      'config path must be set',
      'binary path must be set',
      'oneof service cluster or tracing service name must be specified',
      'drain time only supports durations to seconds precision',
      'invalid discovery address: unable to split "nohost": address nohost: missing port in address',
      'invalid lightstep config: access token is required',
      'invalid proxy admin port: port number 70000 must be in the range 1..65535',
      'invalid authentication policy: unrecognized control plane auth policy "INHERIT"',
      'invalid status port: port number 0 must be in the range 1..65535',
    ]);
    assert.equal(v.warnings.length, 1);
  });
  void it('checks tracer TLS settings', () => {
    const v = validateProxyConfig({ ...defaultProxyConfig(), tracing: { zipkin: { address: '$(HOST_IP):9411' }, tlsSettings: { mode: 'MUTUAL', caCertificates: '/ca' } } });
    assert.deepEqual(v.errors, ['invalid tracing TLS config: client certificate required for mutual tls', 'invalid tracing TLS config: private key required for mutual tls']);
  });
});
