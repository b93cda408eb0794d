import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../lib/errors.js';
import { resolveXdsProxySettings, xdsServerName, type XdsSettingsInput } from './options.js';

const CWD = '/pod';
function input(over: Partial<XdsSettingsInput> & { files?: string[] } = {}): XdsSettingsInput {
  const files = new Set(over.files ?? ['/pod/var/run/secrets/istio/root-cert.pem']);
  return { cwd: CWD, env: {}, discoveryAddress: 'istiod.istio-system.svc:15012', isFile: (p) => files.has(p), ...over };
}

void describe('xds settings: pilot-agent defaults and precedence', () => {
  void it('defaults: UDS under ./etc/istio/proxy, istiod root, token path, keepalive 30s/10s, server limits', () => {
    const s = resolveXdsProxySettings(input({ env: { ISTIO_META_CLUSTER_ID: 'Kubernetes' } }));
    assert.equal(s.udsPath, '/pod/etc/istio/proxy/XDS');
    assert.deepEqual(s.tls, { rootCertPath: '/pod/var/run/secrets/istio/root-cert.pem', serverName: 'istiod.istio-system.svc' });
    assert.equal(s.tokenPath, '/pod/var/run/secrets/tokens/istio-token');
    assert.equal(s.clusterId, 'Kubernetes');
    assert.deepEqual([s.keepaliveTimeMs, s.keepaliveTimeoutMs, s.maxConcurrentStreams, s.maxDownstreamRecvBytes], [30_000, 10_000, 100_000, 4194304]);
    assert.equal(resolveXdsProxySettings(input({ configPath: 'custom/dir' })).udsPath, '/pod/custom/dir/XDS');
  });

  void it('socket mode: 0600 for a sidecar, 0666 in proxyless mode (DISABLE_ENVOY true, as Go parses booleans)', () => {
    assert.equal(resolveXdsProxySettings(input()).socketMode, 0o600);
    for (const v of ['false', '0', 'F', '']) assert.equal(resolveXdsProxySettings(input({ env: { DISABLE_ENVOY: v } })).socketMode, 0o600, v);
    for (const v of ['true', '1', 'T', 'TRUE']) assert.equal(resolveXdsProxySettings(input({ env: { DISABLE_ENVOY: v } })).socketMode, 0o666, v);
  });

  void it('controlPlaneAuthPolicy NONE is plaintext and needs no root', () => {
    const s = resolveXdsProxySettings(input({ controlPlaneAuthPolicy: 'NONE', discoveryAddress: 'istiod.istio-system.svc:15010', files: [] }));
    assert.equal(s.tls, null);
  });

  void it('root precedence: XDS_ROOT_CA > ./etc/certs/root-cert.pem > PROV_CERT > FILE_MOUNTED_CERTS > istiod mount', () => {
    const both = ['/pod/etc/certs/root-cert.pem', '/pod/var/run/secrets/istio/root-cert.pem', '/x/root.pem'];
    assert.equal(resolveXdsProxySettings(input({ files: both })).tls?.rootCertPath, '/pod/etc/certs/root-cert.pem');
    assert.equal(resolveXdsProxySettings(input({ files: both, env: { XDS_ROOT_CA: '/x/root.pem' } })).tls?.rootCertPath, '/x/root.pem');
    assert.equal(resolveXdsProxySettings(input({ files: [], env: { XDS_ROOT_CA: 'SYSTEM' } })).tls?.rootCertPath, null);
    const prov = resolveXdsProxySettings(input({ files: [], env: { PROV_CERT: '/etc/prov' } })).tls;
    assert.deepEqual(prov, {
      rootCertPath: '/etc/prov/root-cert.pem',
      serverName: 'istiod.istio-system.svc',
      clientCertChainPath: '/etc/prov/cert-chain.pem',
      clientKeyPath: '/etc/prov/key.pem',
    });
    const mounted = resolveXdsProxySettings(
      input({
        files: ['/m/root.pem'],
        env: { FILE_MOUNTED_CERTS: 'true' },
        proxyMetadata: { ISTIO_META_TLS_CLIENT_ROOT_CERT: '/m/root.pem', ISTIO_META_TLS_CLIENT_KEY: '/m/key.pem', ISTIO_META_TLS_CLIENT_CERT_CHAIN: '/m/chain.pem' },
      }),
    ).tls;
    assert.equal(mounted?.rootCertPath, '/m/root.pem');
    assert.equal(mounted?.clientKeyPath, '/m/key.pem');
  });

  void it('a missing root, PILOT_CERT_PROVIDER=none and bad env values are all reported at once', () => {
    assert.throws(
      () => resolveXdsProxySettings(input({ files: [] })),
      (e: ConfigError) => e instanceof ConfigError && e.message.includes('root CA file for XDS does not exist /pod/var/run/secrets/istio/root-cert.pem'),
    );
    assert.throws(() => resolveXdsProxySettings(input({ files: [], env: { PILOT_CERT_PROVIDER: 'none' } })), /configured provider as none/);
    try {
      resolveXdsProxySettings(
        input({ env: { GRPC_KEEPALIVE_INTERVAL: '5x', ISTIO_GPRC_MAXSTREAMS: 'many', XDS_ROOT_CA: '/nope.pem', FILE_MOUNTED_CERTS: 'yes' } }),
      );
      assert.fail('expected a ConfigError');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(
        e.issues.map((i) => i.source),
        ['env GRPC_KEEPALIVE_INTERVAL', 'env ISTIO_GPRC_MAXSTREAMS', 'env FILE_MOUNTED_CERTS', 'env XDS_ROOT_CA'],
      );
    }
  });

  void it('server name: address host, localhost => istiod.istio-system.svc, ISTIOD_SAN wins', () => {
    assert.equal(xdsServerName('istiod-canary.istio-system.svc:15012', undefined), 'istiod-canary.istio-system.svc');
    assert.equal(xdsServerName('localhost:15012', undefined), 'istiod.istio-system.svc');
    assert.equal(xdsServerName('[::1]:15012', undefined), '::1');
    assert.equal(xdsServerName('localhost:15012', 'istiod.example'), 'istiod.example');
    assert.equal(resolveXdsProxySettings(input({ env: { ISTIOD_SAN: 'custom.san' } })).tls?.serverName, 'custom.san');
  });

  void it('collects XDS_HEADER_* as upstream metadata and rejects invalid keys', () => {
    const s = resolveXdsProxySettings(input({ env: { XDS_HEADER_X_TENANT: 'blue', XDS_HEADER_trace: 'on', OTHER: 'x' } }));
    assert.deepEqual(s.xdsHeaders, { X_TENANT: 'blue', trace: 'on' });
    assert.throws(() => resolveXdsProxySettings(input({ env: { 'XDS_HEADER_A B': '1' } })), /not a valid gRPC metadata key/);
  });
});
