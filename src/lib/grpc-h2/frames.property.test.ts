import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MessageReader, messagePrefix } from './frames.js';
import { Code } from './status.js';

const framed = (m: Buffer): Buffer => Buffer.concat([messagePrefix(m.length), m]);

/** Cuts `b` at the given points (sorted, deduplicated, inside the buffer). */
function cut(b: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of at) {
    out.push(b.subarray(from, p));
    from = p;
  }
  out.push(b.subarray(from));
  return out;
}

test('MessageReader: any messages, cut into any chunks, come out whole, in order, byte for byte', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, points) => {
      const got: Buffer[] = [];
      const r = new MessageReader(1000, (m) => got.push(Buffer.from(m)));
      const wire = Buffer.concat(msgs.map((m) => framed(Buffer.from(m))));
      for (const c of cut(wire, points)) assert.equal(r.push(c), undefined);
      assert.deepEqual(got, msgs.map((m) => Buffer.from(m)));
      assert.equal(r.pendingBytes, 0);
    }),
  );
});

test('MessageReader: a message over the limit ends reading with RESOURCE_EXHAUSTED before its body arrives; nothing after it is delivered', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 500 }), fc.integer({ min: 1, max: 100 }), (limit, over) => {
      const got: Buffer[] = [];
      const r = new MessageReader(limit, (m) => got.push(m));
      const ok = framed(Buffer.alloc(limit, 1));
      assert.equal(r.push(ok), undefined);
      const err = r.push(messagePrefix(limit + over)); // the prefix alone is enough to refuse it
      assert.equal(err?.code, Code.RESOURCE_EXHAUSTED);
      assert.match(err.details, new RegExp(`larger than max \\(${limit + over} vs\\. ${limit}\\)`));
      assert.deepEqual(r.push(framed(Buffer.alloc(1))), err, 'the error sticks');
      assert.equal(got.length, 1);
    }),
  );
});

test('MessageReader: a compressed or unknown payload flag ends reading with INTERNAL, naming it', () => {
  for (const flag of [1, 2, 0x80]) {
    const r = new MessageReader(100, () => assert.fail('no message'));
    const b = framed(Buffer.from('x'));
    b[0] = flag;
    const err = r.push(b);
    assert.equal(err?.code, Code.INTERNAL);
    assert.match(err.details, flag === 1 ? /compress/ : /payload format/);
  }
});

test('MessageReader: a message that arrives in one chunk is a view of it (no copy); one spread over chunks is joined', () => {
  const seen: Buffer[] = [];
  const r = new MessageReader(100, (m) => seen.push(m));
  const wire = framed(Buffer.from('hello'));
  r.push(wire);
  assert.equal(seen[0]!.buffer, wire.buffer, 'same memory');
  r.push(wire.subarray(0, 7));
  r.push(wire.subarray(7));
  assert.equal(seen[1]!.toString(), 'hello');
  r.push(framed(Buffer.alloc(0)));
  assert.equal(seen[2]!.length, 0, 'an empty message is a message');
});

test('MessageReader: a message is allocated in full only once a quarter of it has arrived, and a prefix alone allocates nothing', () => {
  const MiB = 1024 * 1024;
  const seen: Buffer[] = [];
  const r = new MessageReader(256 * MiB, (m) => seen.push(m));
  const body = Buffer.alloc(64 * MiB, 7);
  const wire = framed(body);
  const arrayBuffers = (): number => process.memoryUsage().arrayBuffers;
  const before = arrayBuffers();
  // the prefix of a 64 MiB message, then one 1 MiB chunk of it: nothing near its length is allocated
  r.push(wire.subarray(0, 5));
  r.push(wire.subarray(5, 5 + MiB));
  assert.ok(arrayBuffers() - before < 8 * MiB, `allocated ${arrayBuffers() - before} bytes for 1 MiB received`);
  // a quarter: the message's buffer now exists; the rest is copied into it
  r.push(wire.subarray(5 + MiB, 5 + 16 * MiB));
  assert.ok(arrayBuffers() - before >= 64 * MiB, 'the buffer of the whole message once a quarter arrived');
  for (let at = 5 + 16 * MiB; at < wire.length; at += 3 * MiB) r.push(wire.subarray(at, Math.min(wire.length, at + 3 * MiB)));
  assert.equal(seen.length, 1);
  assert.ok(seen[0]!.equals(body), 'the message, byte for byte');
  assert.notEqual(seen[0]!.buffer, wire.buffer, 'assembled, not a view of the wire');
});
