// Property tests for the IPv6 text parser of proxy IP discovery (network.ts ipv6Words), against Node's own
// readers: node:net isIPv6 for which texts are addresses, inet_pton (node:net SocketAddress) for what they
// mean.
//   - random texts of IPv6 characters, and valid addresses with one character inserted, removed or
//     replaced: accepted exactly when isIPv6 accepts them (no zone: canonicalIp splits it off first);
//   - every valid address: its eight words, written out in full, are the same address for inet_pton.
import assert from 'node:assert/strict';
import { isIPv6, SocketAddress } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ipv6Words } from './network.js';

const ipv6Chars = fc.constantFrom(...'0123456789abcdefABCDEF:::::....gG '.split(''));
const nearlyText = fc.string({ unit: ipv6Chars, maxLength: 48 });

/** A valid address with one edit at a random place. */
const edited = fc.tuple(fc.ipV6(), fc.nat(), fc.constantFrom('insert', 'remove', 'replace'), ipv6Chars).map(([a, at, op, c]) => {
  const i = at % (a.length + 1);
  if (op === 'insert') return a.slice(0, i) + c + a.slice(i);
  if (op === 'remove') return a.slice(0, i) + a.slice(i + 1);
  return a.slice(0, i) + c + a.slice(i + 1);
});

const canonical = (addr: string): string => new SocketAddress({ address: addr, family: 'ipv6' }).address;

describe('ipv6Words', () => {
  it('accepts exactly the texts node:net isIPv6 accepts', () => {
    fc.assert(fc.property(fc.oneof(nearlyText, edited, fc.ipV6()), (s) => {
      assert.equal(ipv6Words(s) !== undefined, isIPv6(s), s);
    }), { numRuns: 20_000 });
  });

  it('reads every address as inet_pton does', () => {
    fc.assert(fc.property(fc.ipV6(), (a) => {
      const words = ipv6Words(a);
      assert.ok(words, a);
      assert.equal(words.length, 8);
      assert.equal(canonical(words.map((w) => w.toString(16)).join(':')), canonical(a), a);
    }), { numRuns: 5_000 });
  });

  it('reads the edge forms', () => {
    assert.deepEqual(ipv6Words('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(ipv6Words('1:2:3:4:5:6:7::'), [1, 2, 3, 4, 5, 6, 7, 0]);
    assert.deepEqual(ipv6Words('::ffff:10.1.2.3'), [0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203]);
    for (const bad of ['1:2:3:4:5:6:7:8::', '1::2::3', ':1::2', '1::2:', '::01.2.3.4', '::1.2.3', '12345::', '1:2:3:4:5:6:7:1.2.3.4', '1.2.3.4:1::']) {
      assert.equal(ipv6Words(bad), undefined, bad);
    }
  });
});
