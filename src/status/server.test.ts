import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopbackAddress, localAddressesFor } from './server.js';

void test('isLoopbackAddress: IPv4 127/8, ::1, IPv4-mapped loopback; nothing else', () => {
  for (const a of ['127.0.0.1', '127.0.0.6', '127.255.0.1', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '[::1]', '::FFFF:127.0.0.6']) {
    assert.equal(isLoopbackAddress(a), true, a);
  }
  for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '::2', '::', '0.0.0.0', 'fe80::1', '128.0.0.1', '', undefined, 'localhost', '::6']) {
    assert.equal(isLoopbackAddress(a), false, String(a));
  }
});

void test('localAddressesFor picks the IPv6 loopback and probe source for IPv6 pods', () => {
  assert.deepEqual(localAddressesFor({}), { localhost: '127.0.0.1', probeSource: '127.0.0.6' });
  assert.deepEqual(localAddressesFor({ podIP: '10.1.2.3' }), { localhost: '127.0.0.1', probeSource: '127.0.0.6' });
  assert.deepEqual(localAddressesFor({ podIP: 'fd00::3' }), { localhost: '::1', probeSource: '::6' });
  assert.deepEqual(localAddressesFor({ podIP: 'fe80::3' }), { localhost: '127.0.0.1', probeSource: '127.0.0.6' });
  assert.deepEqual(localAddressesFor({ ipv6: true, podIP: '10.1.2.3' }), { localhost: '::1', probeSource: '::6' });
});
