import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveDnsSettings, splitHostPort } from './options.js';
import { parseResolvConf } from './resolvconf.js';

const base = { proxyType: 'sidecar', podNamespace: 'ns1', dnsDomain: 'ns1.svc.cluster.local', uid: 1337 };

void describe('dns settings (pilot-agent variables)', () => {
  void it('is enabled by DNS capture on a sidecar only, or by ENABLE_DNS_SERVER for any proxy type', () => {
    assert.equal(resolveDnsSettings({ ...base, env: {} }).enabled, false);
    assert.equal(resolveDnsSettings({ ...base, env: { ISTIO_META_DNS_CAPTURE: 'true' } }).enabled, true);
    assert.equal(resolveDnsSettings({ ...base, env: { ISTIO_META_DNS_CAPTURE: 'T' } }).enabled, true);
    assert.equal(resolveDnsSettings({ ...base, proxyType: 'router', env: { ISTIO_META_DNS_CAPTURE: 'true' } }).enabled, false);
    assert.equal(resolveDnsSettings({ ...base, proxyType: 'router', env: { ISTIO_META_ENABLE_DNS_SERVER: '1' } }).enabled, true);
  });

  void it('invalid values warn and fall back to the defaults, as pilot-agent', () => {
    const s = resolveDnsSettings({ ...base, env: { ISTIO_META_DNS_CAPTURE: 'yes', DNS_FORWARD_TIMEOUT: '5 seconds', DNS_FORWARD_PARALLEL: 'maybe' } });
    assert.equal(s.enabled, false);
    assert.equal(s.timeoutMs, 5000);
    assert.equal(s.parallel, false);
    assert.equal(s.warnings.length, 3);
    assert.match(s.warnings.join('\n'), /DNS_FORWARD_TIMEOUT="5 seconds"/);
    assert.equal(resolveDnsSettings({ ...base, env: { DNS_FORWARD_TIMEOUT: '1500ms', DNS_FORWARD_PARALLEL: 'true' } }).timeoutMs, 1500);
  });

  void it(':53 as root answers before the first table and reads the VM resolv.conf first; not as root, the default address', () => {
    const root = resolveDnsSettings({ ...base, uid: 0, env: { DNS_PROXY_ADDR: ':53' } });
    assert.equal(root.respondBeforeSync, true);
    assert.deepEqual(root.resolvConfPaths, ['/var/lib/istio/resolv.conf', '/etc/resolv.conf']);
    assert.equal(root.addr, ':53');
    const user = resolveDnsSettings({ ...base, env: { DNS_PROXY_ADDR: ':53' } });
    assert.equal(user.respondBeforeSync, false);
    assert.equal(user.addr, 'localhost:15053');
    assert.deepEqual(user.errors, ['DNS address :53 and not running as root, use default']);
  });

  void it('splits host:port, with brackets for IPv6, and names DNS_PROXY_ADDR when it is not one', () => {
    assert.deepEqual(splitHostPort('localhost:15053'), { host: 'localhost', port: 15053 });
    assert.deepEqual(splitHostPort('[::1]:53'), { host: '::1', port: 53 });
    assert.deepEqual(splitHostPort(':53'), { host: '', port: 53 });
    assert.throws(() => splitHostPort('localhost'), /DNS_PROXY_ADDR="localhost"/);
    assert.throws(() => splitHostPort('::1:53'), /valid host:port/);
    assert.throws(() => splitHostPort('a:99999'), /valid host:port/);
  });
});

void describe('resolv.conf', () => {
  void it('reads nameservers, the last search/domain line, and the options pilot-agent ignores', () => {
    const r = parseResolvConf('# comment\nnameserver 10.0.0.10\nnameserver fe80::1%eth0\nnameserver dns.example\ndomain a.example\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:9 rotate\n');
    assert.deepEqual(r.servers, ['10.0.0.10', 'fe80::1%eth0']);
    assert.deepEqual(r.unusable, ['dns.example']);
    assert.deepEqual(r.search, ['ns1.svc.cluster.local', 'svc.cluster.local', 'cluster.local']);
    assert.equal(r.timeoutS, 2);
    assert.equal(r.attempts, 5);
    assert.equal(r.rotate, true);
    assert.deepEqual(parseResolvConf('search a b\ndomain c\n').search, ['c']);
    assert.deepEqual(parseResolvConf('').servers, []);
  });
});
