// Property tests for every reader of socket bytes in the xDS relay: the protobuf wire walker (forEachField,
// readVarint in lib/protowire.ts) and the xDS peeks built on it (summarizeRequest, summarizeResponse,
// firstResource). For any bytes at all they either answer or throw WireFormatError (never another error,
// never an index outside the buffer); for real messages (encoded by protobufjs from Envoy's protos) they
// answer exactly what the message holds. Also the agent's own requests and the grpc-message encoding.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadProtos, messageCodec } from '../lib/proto.js';
import { WT_I32, WT_I64, WT_LEN, WT_VARINT, Writer, type WireField } from '../lib/protowire.js';
import { encodeGrpcMessage } from './proxy.js';
import { classifyTermination, statusName, terminationLabel } from './termination.js';
import { WireFormatError, encodeAgentRequest, firstResource, forEachField, readVarint, summarizeRequest, summarizeResponse } from './wire.js';

const pkg = loadProtos(['envoy/service/discovery/v3/discovery.proto']);
const codec = (n: string) => messageCodec<any>(pkg, `envoy.service.discovery.v3.${n}`);
const DiscoveryRequest = codec('DiscoveryRequest');
const DiscoveryResponse = codec('DiscoveryResponse');
const DeltaDiscoveryRequest = codec('DeltaDiscoveryRequest');
const DeltaDiscoveryResponse = codec('DeltaDiscoveryResponse');

const RUNS = { numRuns: 2000 };

/** Runs `f`; returns its result, or undefined when it threw WireFormatError. Any other throw fails the property. */
function readerOutcome<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof WireFormatError) return undefined;
    throw new Error(`reader threw ${(e as Error)?.name}: ${(e as Error)?.message} (only WireFormatError is allowed)`);
  }
}

/** Arbitrary bytes, biased toward what a walker finds hard: valid-looking keys, huge varints, truncations. */
const arbBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 600 }),
  fc.array(fc.constantFrom(0x08, 0x0a, 0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a, 0x42, 0x0d, 0x09, 0x80, 0xff, 0x7f, 0x00, 0x01, 0x03, 0x04), { maxLength: 80 }).map((a) => Uint8Array.from(a)),
);
const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** A well-formed message as a list of top-level fields, and its encoding (written here independently of Writer). */
type ModelField = { field: number; wireType: 0; value: number } | { field: number; wireType: 1 | 5; bytes: Uint8Array } | { field: number; wireType: 2; bytes: Uint8Array };
function encodeVarint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 128) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
function encodeModel(fields: readonly ModelField[]): Buffer {
  const out: number[] = [];
  for (const f of fields) {
    out.push(...encodeVarint(f.field * 8 + f.wireType));
    if (f.wireType === WT_VARINT) out.push(...encodeVarint(f.value));
    else if (f.wireType === WT_LEN) out.push(...encodeVarint(f.bytes.length), ...f.bytes);
    else out.push(...f.bytes);
  }
  return Buffer.from(out);
}
const arbFieldNo = fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 2 ** 29 - 1 }));
const arbModelField: fc.Arbitrary<ModelField> = fc.oneof(
  fc.record({ field: arbFieldNo, wireType: fc.constant(WT_VARINT as 0), value: fc.oneof(fc.nat(), fc.maxSafeNat()) }),
  fc.record({ field: arbFieldNo, wireType: fc.constant(WT_LEN as 2), bytes: fc.uint8Array({ maxLength: 200 }) }),
  fc.record({ field: arbFieldNo, wireType: fc.constant(WT_I64 as 1), bytes: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
  fc.record({ field: arbFieldNo, wireType: fc.constant(WT_I32 as 5), bytes: fc.uint8Array({ minLength: 4, maxLength: 4 }) }),
);

/** Damages a valid message: truncation, a flipped byte, an inserted byte, or two messages spliced. */
function mutate(buf: Buffer, how: { kind: number; at: number; byte: number }): Buffer {
  if (buf.length === 0) return Buffer.from([how.byte]);
  const at = how.at % buf.length;
  switch (how.kind % 3) {
    case 0:
      return buf.subarray(0, at);
    case 1: {
      const b = Buffer.from(buf);
      b[at] = how.byte;
      return b;
    }
    default:
      return Buffer.concat([buf.subarray(0, at), Buffer.from([how.byte]), buf.subarray(at)]);
  }
}
const arbMutation = fc.record({ kind: fc.nat(), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) });

// Strings that survive protobufjs's UTF-8 round trip (no lone surrogates).
const arbStr = fc.string({ unit: 'binary', maxLength: 40 });
const arbAny = fc.record({ type_url: arbStr, value: fc.uint8Array({ maxLength: 64 }).map(asBuffer) });

const arbSotwRequest = fc.record({
  version_info: arbStr,
  node: fc.option(fc.record({ id: arbStr, cluster: arbStr }), { nil: undefined }),
  resource_names: fc.array(arbStr, { maxLength: 5 }),
  type_url: arbStr,
  response_nonce: arbStr,
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: arbStr }), { nil: undefined }),
});
const arbDeltaRequest = fc.record({
  node: fc.option(fc.record({ id: arbStr }), { nil: undefined }),
  type_url: arbStr,
  resource_names_subscribe: fc.array(arbStr, { maxLength: 5 }),
  resource_names_unsubscribe: fc.array(arbStr, { maxLength: 5 }),
  initial_resource_versions: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 4 }),
  response_nonce: arbStr,
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: arbStr }), { nil: undefined }),
});
const arbSotwResponse = fc.record({
  version_info: arbStr,
  resources: fc.array(arbAny, { maxLength: 5 }),
  type_url: arbStr,
  nonce: arbStr,
  canary: fc.boolean(),
  control_plane: fc.option(fc.record({ identifier: arbStr }), { nil: undefined }),
});
const arbDeltaResponse = fc.record({
  system_version_info: arbStr,
  resources: fc.array(
    fc.record({ name: arbStr, version: arbStr, resource: fc.option(arbAny, { nil: undefined }), aliases: fc.array(arbStr, { maxLength: 2 }) }),
    { maxLength: 5 },
  ),
  type_url: arbStr,
  removed_resources: fc.array(arbStr, { maxLength: 4 }),
  nonce: arbStr,
});

void describe('protowire: forEachField and readVarint on arbitrary bytes', () => {
  void it('either walk every field inside the bounds or throw WireFormatError', () => {
    fc.assert(
      fc.property(arbBytes, fc.nat(), fc.nat(), (u, a, b) => {
        const buf = asBuffer(u);
        const start = buf.length ? a % (buf.length + 1) : 0;
        const end = start + (buf.length - start ? b % (buf.length - start + 1) : 0);
        const seen: WireField[] = [];
        readerOutcome(() => forEachField(buf, (f) => seen.push(f), start, end));
        let prev = start;
        for (const f of seen) {
          assert.ok(f.field >= 1 && Number.isInteger(f.field), `field number ${f.field}`);
          assert.ok([WT_VARINT, WT_I64, WT_LEN, WT_I32].includes(f.wireType), `wire type ${f.wireType}`);
          assert.ok(f.start > prev && f.start <= f.end && f.end <= end, `field ${f.field} at [${f.start}, ${f.end}) outside (${prev}, ${end}]`);
          if (f.wireType === WT_LEN) assert.equal(f.value, f.end - f.start);
          if (f.wireType === WT_I64) assert.equal(f.end - f.start, 8);
          if (f.wireType === WT_I32) assert.equal(f.end - f.start, 4);
          prev = f.end;
        }
      }),
      RUNS,
    );
  });

  void it('readVarint: a value and a position just past it (at most 10 bytes, never past the limit), or WireFormatError', () => {
    fc.assert(
      fc.property(arbBytes, fc.nat(), fc.nat(), (u, p, l) => {
        const limit = u.length ? l % (u.length + 1) : 0;
        const pos = p % (u.length + 2);
        const r = readerOutcome(() => readVarint(u, pos, limit));
        if (r === undefined) return;
        const [value, next] = r;
        assert.ok(value >= 0 && Number.isFinite(value));
        assert.ok(next > pos && next <= limit && next - pos <= 10);
      }),
      RUNS,
    );
  });

  void it('reads back exactly the fields of any well-formed message', () => {
    fc.assert(
      fc.property(fc.array(arbModelField, { maxLength: 12 }), (fields) => {
        const buf = encodeModel(fields);
        const seen: Array<{ field: number; wireType: number; value: number; bytes: Buffer }> = [];
        forEachField(buf, (f) => seen.push({ field: f.field, wireType: f.wireType, value: f.value, bytes: buf.subarray(f.start, f.end) }));
        assert.equal(seen.length, fields.length);
        fields.forEach((m, i) => {
          const s = seen[i]!;
          assert.deepEqual([s.field, s.wireType], [m.field, m.wireType]);
          if (m.wireType === WT_VARINT) assert.equal(s.value, m.value);
          else assert.deepEqual(s.bytes, Buffer.from(m.bytes));
        });
      }),
      RUNS,
    );
  });

  void it('a walk bounded by `end` never reports a field past it, even when the bytes after `end` would complete the field', () => {
    fc.assert(
      fc.property(fc.array(arbModelField, { minLength: 1, maxLength: 6 }), fc.nat(), (fields, c) => {
        const msg = encodeModel(fields);
        const buf = Buffer.concat([Buffer.from([0x0a, 0x00]), msg, Buffer.alloc(16, 0x01)]); // framed, then trailing bytes
        const start = 2;
        const end = start + (c % (msg.length + 1));
        const seen: WireField[] = [];
        const done = readerOutcome(() => {
          forEachField(buf, (f) => seen.push(f), start, end);
          return true;
        });
        for (const f of seen) assert.ok(f.end <= end, `field ${f.field} ends at ${f.end}, past ${end}`);
        if (end === start + msg.length) assert.ok(done, 'the whole message walks');
      }),
      RUNS,
    );
  });

  void it('Writer output is read back by forEachField', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 2 ** 29 - 1 }), fc.oneof(fc.maxSafeNat(), fc.uint8Array({ maxLength: 50 }))), { maxLength: 10 }), (parts) => {
        const w = new Writer();
        const want: Array<[number, number | Buffer]> = [];
        for (const [field, v] of parts) {
          if (typeof v === 'number') {
            w.uint(field, v);
            if (v !== 0) want.push([field, v]);
          } else {
            w.bytes(field, asBuffer(v));
            want.push([field, Buffer.from(v)]);
          }
        }
        const buf = w.finish();
        const got: Array<[number, number | Buffer]> = [];
        forEachField(buf, (f) => got.push([f.field, f.wireType === WT_VARINT ? f.value : Buffer.from(buf.subarray(f.start, f.end))]));
        assert.deepEqual(got, want);
      }),
      RUNS,
    );
  });
});

void describe('xDS peeks on arbitrary bytes: an answer or WireFormatError, nothing else', () => {
  for (const delta of [false, true]) {
    const flavour = delta ? 'delta' : 'sotw';
    void it(`${flavour}: summarizeRequest, summarizeResponse and firstResource`, () => {
      fc.assert(
        fc.property(arbBytes, (u) => {
          const buf = asBuffer(u);
          const req = readerOutcome(() => summarizeRequest(buf, delta));
          if (req) {
            for (const n of [req.names, req.unsubscribe, req.initial]) assert.ok(Number.isInteger(n) && n >= 0);
            assert.equal(typeof req.typeUrl, 'string');
          }
          const resp = readerOutcome(() => summarizeResponse(buf, delta));
          if (resp) assert.ok(resp.resources >= 0 && resp.removed >= 0);
          const first = readerOutcome(() => firstResource(buf, delta));
          if (first) {
            assert.equal(typeof first.typeUrl, 'string');
            assert.ok(Buffer.isBuffer(first.value));
            assert.ok(first.value.buffer === buf.buffer, 'the resource points into the message (no copy)');
          }
          // a response the summary reads has a first resource iff it counts one (delta: iff that one holds an Any)
          if (resp && first !== undefined) assert.ok(resp.resources > 0);
        }),
        RUNS,
      );
    });

    void it(`${flavour}: damaged real messages`, () => {
      const arb = delta
        ? fc.oneof(arbDeltaRequest.map((m) => DeltaDiscoveryRequest.encode(m)), arbDeltaResponse.map((m) => DeltaDiscoveryResponse.encode(m)))
        : fc.oneof(arbSotwRequest.map((m) => DiscoveryRequest.encode(m)), arbSotwResponse.map((m) => DiscoveryResponse.encode(m)));
      fc.assert(
        fc.property(arb, fc.array(arbMutation, { minLength: 1, maxLength: 3 }), (valid, muts) => {
          const buf = muts.reduce((b, m) => mutate(b, m), valid);
          readerOutcome(() => summarizeRequest(buf, delta));
          readerOutcome(() => summarizeResponse(buf, delta));
          readerOutcome(() => firstResource(buf, delta));
        }),
        RUNS,
      );
    });
  }
});

void describe('xDS peeks on real messages (encoded by protobufjs from the protos) read what they hold', () => {
  void it('SotW DiscoveryRequest', () => {
    fc.assert(
      fc.property(arbSotwRequest, (m) => {
        const s = summarizeRequest(DiscoveryRequest.encode(m), false);
        assert.deepEqual(
          { typeUrl: s.typeUrl, nonce: s.nonce, version: s.versionInfo, names: s.names, nack: s.nack, error: s.errorMessage },
          { typeUrl: m.type_url, nonce: m.response_nonce, version: m.version_info, names: m.resource_names.length, nack: m.error_detail !== undefined, error: m.error_detail?.message ?? '' },
        );
      }),
      RUNS,
    );
  });

  void it('Delta DeltaDiscoveryRequest', () => {
    fc.assert(
      fc.property(arbDeltaRequest, (m) => {
        const s = summarizeRequest(DeltaDiscoveryRequest.encode(m), true);
        assert.deepEqual(
          { typeUrl: s.typeUrl, nonce: s.nonce, sub: s.names, unsub: s.unsubscribe, initial: s.initial, nack: s.nack, error: s.errorMessage },
          {
            typeUrl: m.type_url,
            nonce: m.response_nonce,
            sub: m.resource_names_subscribe.length,
            unsub: m.resource_names_unsubscribe.length,
            initial: Object.keys(m.initial_resource_versions).length,
            nack: m.error_detail !== undefined,
            error: m.error_detail?.message ?? '',
          },
        );
      }),
      RUNS,
    );
  });

  void it('SotW DiscoveryResponse and its first resource', () => {
    fc.assert(
      fc.property(arbSotwResponse, (m) => {
        const buf = DiscoveryResponse.encode(m);
        assert.deepEqual(summarizeResponse(buf, false), { typeUrl: m.type_url, nonce: m.nonce, versionInfo: m.version_info, resources: m.resources.length, removed: 0 });
        const first = firstResource(buf, false);
        const want = m.resources[0];
        assert.deepEqual(first && { typeUrl: first.typeUrl, value: Buffer.from(first.value) }, want && { typeUrl: want.type_url, value: Buffer.from(want.value) });
      }),
      RUNS,
    );
  });

  void it('Delta DeltaDiscoveryResponse and its first resource', () => {
    fc.assert(
      fc.property(arbDeltaResponse, (m) => {
        const buf = DeltaDiscoveryResponse.encode(m);
        assert.deepEqual(summarizeResponse(buf, true), {
          typeUrl: m.type_url,
          nonce: m.nonce,
          versionInfo: m.system_version_info,
          resources: m.resources.length,
          removed: m.removed_resources.length,
        });
        const first = firstResource(buf, true);
        const want = m.resources[0]?.resource;
        assert.deepEqual(first && { typeUrl: first.typeUrl, value: Buffer.from(first.value) }, want && { typeUrl: want.type_url, value: Buffer.from(want.value) });
      }),
      RUNS,
    );
  });

  void it("the agent's own requests decode as the protos say and read back", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.record({ typeUrl: arbStr, versionInfo: arbStr, nonce: arbStr, errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: arbStr }), { nil: undefined }) }),
        (delta, req) => {
          const buf = encodeAgentRequest(req, delta);
          const decoded = (delta ? DeltaDiscoveryRequest : DiscoveryRequest).decode(buf) as Record<string, any>;
          assert.equal(decoded.type_url ?? '', req.typeUrl);
          assert.equal(decoded.response_nonce ?? '', req.nonce);
          if (!delta) assert.equal(decoded.version_info ?? '', req.versionInfo);
          assert.equal(decoded.error_detail?.message ?? '', req.errorDetail?.message ?? '');
          assert.equal(decoded.error_detail?.code ?? 0, req.errorDetail?.code ?? 0);
          const s = summarizeRequest(buf, delta);
          assert.deepEqual([s.typeUrl, s.nonce, s.nack], [req.typeUrl, req.nonce, req.errorDetail !== undefined]);
        },
      ),
      RUNS,
    );
  });
});

/** The gRPC spec's percent-decoding of grpc-message (what grpc-go and Envoy's codecs implement). */
function specDecode(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%' && /^[0-9A-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

void describe('grpc-message encoding of the status text sent to Envoy', () => {
  void it('is printable ASCII, leaves printable ASCII other than "%" alone, and decodes back (spec decoder and grpc-js decodeURI)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: 'binary-ascii', maxLength: 80 })), (text) => {
        const enc = encodeGrpcMessage(text);
        assert.match(enc, /^[\x20-\x7e]*$/);
        assert.equal(specDecode(enc), text);
        assert.equal(decodeURI(enc), text, 'grpc-js clients decode with decodeURI');
        if (/^[\x20-\x24\x26-\x7e]*$/.test(text)) assert.equal(enc, text);
      }),
      RUNS,
    );
  });
});

void describe('termination classes for any status a peer sends', () => {
  void it('every code and text maps to one of the three kinds, and only an unexpected end counts as an error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: -5, max: 40 }), fc.integer()), fc.string({ unit: 'binary', maxLength: 80 }), (code, details) => {
        const kind = classifyTermination(code, details);
        assert.ok(['graceful', 'expected', 'unexpected'].includes(kind));
        assert.equal(terminationLabel(kind), kind === 'unexpected' ? 'error' : 'cancelled');
        assert.equal(typeof statusName(code), 'string');
        if (code === 0) assert.equal(kind, 'graceful');
      }),
      RUNS,
    );
  });
});
