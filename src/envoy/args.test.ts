import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildEnvoyArgs, parentShutdownSeconds, splitComponentLog, type EnvoyArgsInput } from './args.js';

const base: EnvoyArgsInput = {
  configFile: 'etc/istio/proxy/envoy-rev.json',
  drainDurationMs: 45_000,
  nodeIPs: ['10.1.1.1'],
  proxyLogLevel: 'warning',
  proxyComponentLogLevel: 'misc:error',
  skipDeprecatedLogs: true,
  enableCoreDump: false,
  concurrency: 2,
};

test('hot restart disabled gives exactly pilot-agent argv for an injected sidecar', () => {
  assert.deepEqual(buildEnvoyArgs(base, { mode: 'disabled' }), [
    '-c', 'etc/istio/proxy/envoy-rev.json', '--drain-time-s', '45', '--drain-strategy', 'immediate',
    '--local-address-ip-version', 'v4', '--file-flush-interval-msec', '1000', '--disable-hot-restart',
    '--allow-unknown-static-fields', '-l', 'warning', '--component-log-level', 'misc:error', '--skip-deprecated-logs', '--concurrency', '2',
  ]);
});

test('component levels inside --proxyLogLevel win over --proxyComponentLogLevel; v6 only when all IPs are v6', () => {
  const a = buildEnvoyArgs({ ...base, proxyLogLevel: 'debug,upstream:trace,http:info', nodeIPs: ['fd00::1', '::1'], concurrency: 0, skipDeprecatedLogs: false }, { mode: 'disabled' });
  assert.deepEqual(a.slice(a.indexOf('-l')), ['-l', 'debug', '--component-log-level', 'upstream:trace,http:info']);
  assert.equal(a[a.indexOf('--local-address-ip-version') + 1], 'v6');
  const mixed = buildEnvoyArgs({ ...base, nodeIPs: ['fd00::1', '10.0.0.1'] }, { mode: 'disabled' });
  assert.equal(mixed[mixed.indexOf('--local-address-ip-version') + 1], 'v4');
  assert.deepEqual(splitComponentLog('a:b:c,info').dropped, ['a:b:c']);
});

test('override, flush settings, core dump', () => {
  const a = buildEnvoyArgs({ ...base, configYaml: '{"a":1}', fileFlushIntervalMs: 250, fileFlushMinSizeKb: 64, enableCoreDump: true }, { mode: 'disabled' });
  assert.equal(a[a.indexOf('--file-flush-interval-msec') + 1], '250');
  assert.equal(a[a.indexOf('--file-flush-min-size-kb') + 1], '64');
  assert.ok(a.includes('--enable-core-dump'));
  assert.equal(a[a.indexOf('--config-yaml') + 1], '{"a":1}');
  assert.ok(a.indexOf('--config-yaml') < a.indexOf('--concurrency'));
});

test('hot restart epochs replace --disable-hot-restart with epoch and base id arguments', () => {
  const first = buildEnvoyArgs(base, { mode: 'first', baseIdPath: 'etc/istio/proxy/envoy-base-id', parentShutdownS: 50 });
  assert.ok(!first.includes('--disable-hot-restart'));
  assert.deepEqual(first.slice(-7), ['--restart-epoch', '0', '--use-dynamic-base-id', '--base-id-path', 'etc/istio/proxy/envoy-base-id', '--parent-shutdown-time-s', '50']);
  const next = buildEnvoyArgs(base, { mode: 'epoch', epoch: 3, baseId: 77, parentShutdownS: 50, afterCrash: true });
  assert.deepEqual(next.slice(-7), ['--restart-epoch', '3', '--base-id', '77', '--parent-shutdown-time-s', '50', '--skip-hot-restart-on-no-parent']);
  assert.equal(parentShutdownSeconds(45_000), 50);
  assert.equal(parentShutdownSeconds(10_000, 5_000), 11);
});
