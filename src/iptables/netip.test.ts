import assert from 'node:assert/strict';
import { it } from 'node:test';
import { addrString, isLoopback, parseAddr, parsePrefix, prefixString } from './netip.js';

void it('prints addresses the way Go netip does', () => {
  const cases: Array<[string, string]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['::127.0.0.53', '::7f00:35'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:4860:4860:0:0:0:0:8888', '2001:4860:4860::8888'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['1:2:3:4:5:6:7:0', '1:2:3:4:5:6:7:0'],
    ['::', '::'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
  ];
  for (const [inp, want] of cases) assert.equal(addrString(parseAddr(inp)), want, inp);
});

void it('rejects what Go netip rejects', () => {
  for (const bad of ['010.0.0.1', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', 'fe80::1%', 'abc', '', ':1', '1:2:3:4:5:6:7::8'])
    assert.throws(() => parseAddr(bad), Error, bad);
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/08', '::/129', 'fe80::1%eth0/64', '10.0.0.0/-1', '10.0.0.0/ 8', '*'])
    assert.throws(() => parsePrefix(bad), Error, bad);
});

void it('keeps host bits and canonicalises prefixes', () => {
  assert.equal(prefixString(parsePrefix('10.0.0.1/8')), '10.0.0.1/8');
  assert.equal(prefixString(parsePrefix('2001:DB8:0:0::/64')), '2001:db8::/64');
  assert.equal(prefixString(parsePrefix('::ffff:10.0.0.0/104')), '::ffff:10.0.0.0/104');
  assert.equal(prefixString(parsePrefix('0.0.0.0/0')), '0.0.0.0/0');
  assert.ok(isLoopback(parsePrefix('127.1.2.3/32').addr));
  assert.ok(isLoopback(parseAddr('::ffff:127.0.0.1')));
  assert.ok(isLoopback(parseAddr('::1')));
  assert.ok(!isLoopback(parseAddr('::2')));
});
