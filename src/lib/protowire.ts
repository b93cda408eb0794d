// The protobuf wire format, reduced to what the agent needs: walk a message's top-level fields without
// decoding them, and write small messages field by field. Used by the xDS relay (which must not decode
// what it relays) and by the SDS server and CA client, whose handful of small messages would otherwise
// pull in protobufjs and Envoy's schema at start-up (about 300 ms and 60 MB to load the Secret type with
// @grpc/proto-loader, 40-80 ms to import protobufjs alone). Tests check these encodings against the
// real schemas loaded with @grpc/proto-loader.

export class WireFormatError extends Error {
  constructor(message: string) {
    super(`malformed protobuf: ${message}`);
    this.name = 'WireFormatError';
  }
}

export const WT_VARINT = 0;
export const WT_I64 = 1;
export const WT_LEN = 2;
export const WT_I32 = 5;

/** One top-level field: for VARINT `value` holds the number; for LEN `start`/`end` bound the payload. */
export interface WireField {
  readonly field: number;
  readonly wireType: number;
  readonly value: number;
  readonly start: number;
  readonly end: number;
}

/** Reads a varint at `pos`; returns [value, nextPos]. Values beyond 2^53 lose precision (we only read lengths and small ints). */
export function readVarint(buf: Uint8Array, pos: number, limit = buf.length): [number, number] {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= limit) throw new WireFormatError('truncated varint');
    const b = buf[pos++]!;
    result += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return [result, pos];
    mul *= 128;
  }
  throw new WireFormatError('varint longer than 10 bytes');
}

/** Calls `visit` for every top-level field of the message in buf[start, end). */
export function forEachField(buf: Uint8Array, visit: (f: WireField) => void, start = 0, end = buf.length): void {
  let pos = start;
  while (pos < end) {
    const [key, p1] = readVarint(buf, pos, end);
    const field = Math.floor(key / 8);
    const wireType = key & 7;
    if (field === 0) throw new WireFormatError(`field number 0 at offset ${pos}`);
    pos = p1;
    switch (wireType) {
      case WT_VARINT: {
        const [value, p2] = readVarint(buf, pos, end);
        visit({ field, wireType, value, start: pos, end: p2 });
        pos = p2;
        break;
      }
      case WT_I64:
        if (pos + 8 > end) throw new WireFormatError('truncated fixed64');
        visit({ field, wireType, value: 0, start: pos, end: pos + 8 });
        pos += 8;
        break;
      case WT_LEN: {
        const [len, p2] = readVarint(buf, pos, end);
        if (p2 + len > end) throw new WireFormatError(`field ${field} length ${len} runs past the end`);
        visit({ field, wireType, value: len, start: p2, end: p2 + len });
        pos = p2 + len;
        break;
      }
      case WT_I32:
        if (pos + 4 > end) throw new WireFormatError('truncated fixed32');
        visit({ field, wireType, value: 0, start: pos, end: pos + 4 });
        pos += 4;
        break;
      default:
        throw new WireFormatError(`unsupported wire type ${wireType} for field ${field}`);
    }
  }
}

/** Writes a message field by field (zero values are omitted, as proto3 does). */
export class Writer {
  private readonly parts: Buffer[] = [];
  private varint(n: number): void {
    const bytes: number[] = [];
    let v = n;
    while (v >= 0x80) {
      bytes.push((v % 128) | 0x80);
      v = Math.floor(v / 128);
    }
    bytes.push(v);
    this.parts.push(Buffer.from(bytes));
  }
  uint(field: number, n: number): this {
    if (n === 0) return this;
    this.varint(field * 8 + WT_VARINT);
    this.varint(n);
    return this;
  }
  bytes(field: number, b: Buffer): this {
    this.varint(field * 8 + WT_LEN);
    this.varint(b.length);
    this.parts.push(b);
    return this;
  }
  string(field: number, s: string | undefined): this {
    if (!s) return this;
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }
  /** A string that is written even when empty (a oneof member, which has presence). */
  presentString(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }
  bool(field: number, b: boolean): this {
    return b ? this.uint(field, 1) : this;
  }
  /** An embedded message (written even when empty: a set message field has presence). */
  message(field: number, m: Writer | Buffer): this {
    return this.bytes(field, m instanceof Writer ? m.finish() : m);
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

