import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, it } from 'node:test';
import { canonicalIp, discoverProxyIps, interfaceAddresses, ipMode } from './network.js';

const a = (address: string, internal = false): NetworkInterfaceInfo =>
  address.includes(':')
    ? { address, netmask: 'ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal, cidr: null, scopeid: 0 }
    : { address, netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: null };

void describe('proxy IP discovery', () => {
  void it('canonicalises addresses like netip', () => {
    assert.equal(canonicalIp('10.0.0.1'), '10.0.0.1');
    assert.equal(canonicalIp('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
    assert.equal(canonicalIp('2001:db8:0:1:0:0:0:1'), '2001:db8:0:1::1');
    assert.equal(canonicalIp('::ffff:10.1.2.3'), '::ffff:10.1.2.3');
    assert.equal(canonicalIp('fe80::1%eth0'), 'fe80::1%eth0');
    assert.equal(canonicalIp('10.0.0'), undefined);
    assert.equal(canonicalIp('not-an-ip'), undefined);
  });
  void it('skips loopback, link-local and internal interfaces', () => {
    const ifaces = { lo: [a('127.0.0.1', true), a('::1', true)], eth0: [a('10.0.0.5'), a('fe80::1'), a('169.254.1.1'), a('fd00::5')], eth1: [a('::ffff:192.168.0.2')] };
    assert.deepEqual(interfaceAddresses(ifaces), ['10.0.0.5', 'fd00::5', '192.168.0.2']);
  });
  void it('puts INSTANCE_IP first, de-duplicates, and excludes annotated interfaces', () => {
    const ifaces = { eth0: [a('10.0.0.5'), a('fd00::5')], eth1: [a('10.0.0.5'), a('192.168.9.9')], cni0: [a('10.99.0.1')] };
    assert.deepEqual(discoverProxyIps('10.0.0.5', ifaces), ['10.0.0.5', 'fd00::5', '192.168.9.9', '10.99.0.1']);
    assert.deepEqual(discoverProxyIps('10.0.0.5', ifaces, ['cni0']), ['10.0.0.5', 'fd00::5', '192.168.9.9']);
    assert.deepEqual(discoverProxyIps('bogus', ifaces, ['eth0']), ['192.168.9.9', '10.99.0.1']);
  });
  void it('falls back to 127.0.0.1 and ::1 when the host has no address', () => {
    assert.deepEqual(discoverProxyIps('', { lo: [a('127.0.0.1', true)] }), ['127.0.0.1', '::1']);
    assert.deepEqual(discoverProxyIps('10.3.3.3', {}), ['10.3.3.3', '127.0.0.1', '::1']);
  });
  void it('derives the IP mode', () => {
    assert.equal(ipMode(['10.0.0.1', '192.168.0.1']), 'IPv4');
    assert.equal(ipMode(['fd00::1', '::1']), 'IPv6');
    assert.equal(ipMode(['10.0.0.1', '::1']), 'Dual');
  });
});
