// Just enough of the protobuf wire format to relay xDS without decoding it.
// The proxy keeps every DiscoveryRequest/Response as the raw bytes gRPC handed it and only peeks at a
// handful of top-level scalar fields (type_url, nonce, version, counts). Skipping a length-delimited field
// is O(1), so even a 50 MB response costs one pass over its top-level field headers and no allocation
// besides the few strings we read.

export class WireFormatError extends Error {
  constructor(message: string) {
    super(`malformed protobuf: ${message}`);
    this.name = 'WireFormatError';
  }
}

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

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

function str(buf: Buffer, f: WireField): string {
  return buf.toString('utf8', f.start, f.end);
}

// Field numbers (envoy/service/discovery/v3/discovery.proto).
const SOTW_REQ = { version: 1, resourceNames: 3, typeUrl: 4, nonce: 5, errorDetail: 6 } as const;
const SOTW_RESP = { version: 1, resources: 2, typeUrl: 4, nonce: 5 } as const;
const DELTA_REQ = { typeUrl: 2, subscribe: 3, unsubscribe: 4, initialVersions: 5, nonce: 6, errorDetail: 7 } as const;
const DELTA_RESP = { systemVersion: 1, resources: 2, typeUrl: 4, nonce: 5, removed: 6, removedNames: 8 } as const;
const RESOURCE_ANY = 2; // envoy.service.discovery.v3.Resource.resource
const ANY_TYPE_URL = 1;
const ANY_VALUE = 2;
const STATUS_CODE = 1;
const STATUS_MESSAGE = 2;

/** What the proxy needs to know about a request from Envoy (either flavour). */
export interface RequestSummary {
  typeUrl: string;
  nonce: string;
  /** SotW only: the version being ACKed. */
  versionInfo: string;
  /** SotW resource_names, or Delta subscribe count. */
  names: number;
  /** Delta only. */
  unsubscribe: number;
  /** Delta only: initial_resource_versions entries. */
  initial: number;
  /** error_detail present: a NACK. */
  nack: boolean;
  errorMessage: string;
}

/** What the proxy needs to know about a response from istiod (either flavour). */
export interface ResponseSummary {
  typeUrl: string;
  nonce: string;
  /** SotW version_info, or Delta system_version_info. */
  versionInfo: string;
  resources: number;
  /** Delta only: removed_resources + removed_resource_names. */
  removed: number;
}

export function summarizeRequest(buf: Buffer, delta: boolean): RequestSummary {
  const s: RequestSummary = { typeUrl: '', nonce: '', versionInfo: '', names: 0, unsubscribe: 0, initial: 0, nack: false, errorMessage: '' };
  const n = delta ? DELTA_REQ : null;
  forEachField(buf, (f) => {
    if (f.wireType !== WT_LEN) return;
    if (n) {
      if (f.field === n.typeUrl) s.typeUrl = str(buf, f);
      else if (f.field === n.nonce) s.nonce = str(buf, f);
      else if (f.field === n.subscribe) s.names++;
      else if (f.field === n.unsubscribe) s.unsubscribe++;
      else if (f.field === n.initialVersions) s.initial++;
      else if (f.field === n.errorDetail) {
        s.nack = true;
        s.errorMessage = statusMessage(buf, f);
      }
    } else {
      if (f.field === SOTW_REQ.typeUrl) s.typeUrl = str(buf, f);
      else if (f.field === SOTW_REQ.nonce) s.nonce = str(buf, f);
      else if (f.field === SOTW_REQ.version) s.versionInfo = str(buf, f);
      else if (f.field === SOTW_REQ.resourceNames) s.names++;
      else if (f.field === SOTW_REQ.errorDetail) {
        s.nack = true;
        s.errorMessage = statusMessage(buf, f);
      }
    }
  });
  return s;
}

function statusMessage(buf: Buffer, status: WireField): string {
  let msg = '';
  forEachField(
    buf,
    (g) => {
      if (g.field === STATUS_MESSAGE && g.wireType === WT_LEN) msg = str(buf, g);
    },
    status.start,
    status.end,
  );
  return msg;
}

export function summarizeResponse(buf: Buffer, delta: boolean): ResponseSummary {
  const s: ResponseSummary = { typeUrl: '', nonce: '', versionInfo: '', resources: 0, removed: 0 };
  forEachField(buf, (f) => {
    if (f.wireType !== WT_LEN) return;
    if (delta) {
      if (f.field === DELTA_RESP.typeUrl) s.typeUrl = str(buf, f);
      else if (f.field === DELTA_RESP.nonce) s.nonce = str(buf, f);
      else if (f.field === DELTA_RESP.systemVersion) s.versionInfo = str(buf, f);
      else if (f.field === DELTA_RESP.resources) s.resources++;
      else if (f.field === DELTA_RESP.removed || f.field === DELTA_RESP.removedNames) s.removed++;
    } else {
      if (f.field === SOTW_RESP.typeUrl) s.typeUrl = str(buf, f);
      else if (f.field === SOTW_RESP.nonce) s.nonce = str(buf, f);
      else if (f.field === SOTW_RESP.version) s.versionInfo = str(buf, f);
      else if (f.field === SOTW_RESP.resources) s.resources++;
    }
  });
  return s;
}

/** A google.protobuf.Any whose value still points into the message it came from (no copy). */
export interface RawAny {
  typeUrl: string;
  value: Buffer;
}

function readAny(buf: Buffer, start: number, end: number): RawAny {
  const any: RawAny = { typeUrl: '', value: buf.subarray(start, start) };
  forEachField(
    buf,
    (f) => {
      if (f.wireType !== WT_LEN) return;
      if (f.field === ANY_TYPE_URL) any.typeUrl = str(buf, f);
      else if (f.field === ANY_VALUE) any.value = buf.subarray(f.start, f.end);
    },
    start,
    end,
  );
  return any;
}

/** The first resource of a response as an Any (SotW: resources[0]; Delta: resources[0].resource), or undefined. */
export function firstResource(buf: Buffer, delta: boolean): RawAny | undefined {
  let found: WireField | undefined;
  const field = delta ? DELTA_RESP.resources : SOTW_RESP.resources;
  forEachField(buf, (f) => {
    if (!found && f.field === field && f.wireType === WT_LEN) found = f;
  });
  if (!found) return undefined;
  if (!delta) return readAny(buf, found.start, found.end);
  let anyField: WireField | undefined;
  forEachField(
    buf,
    (g) => {
      if (g.field === RESOURCE_ANY && g.wireType === WT_LEN) anyField = g;
    },
    found.start,
    found.end,
  );
  return anyField ? readAny(buf, anyField.start, anyField.end) : undefined;
}

// ---- writing (only the small requests the agent itself sends) ----

class Writer {
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
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface ErrorDetail {
  /** gRPC status code (pilot-agent uses 13 INTERNAL). */
  code: number;
  message: string;
}

export interface AgentRequest {
  typeUrl: string;
  /** SotW only (ignored for Delta, as pilot-agent omits it). */
  versionInfo?: string;
  nonce?: string;
  errorDetail?: ErrorDetail;
}

/** Encodes a DiscoveryRequest (SotW) or DeltaDiscoveryRequest (Delta) the agent sends on its own: an initial subscription or an ACK/NACK. */
export function encodeAgentRequest(req: AgentRequest, delta: boolean): Buffer {
  const w = new Writer();
  const status = req.errorDetail
    ? new Writer().uint(STATUS_CODE, req.errorDetail.code).string(STATUS_MESSAGE, req.errorDetail.message).finish()
    : undefined;
  if (delta) {
    w.string(DELTA_REQ.typeUrl, req.typeUrl).string(DELTA_REQ.nonce, req.nonce);
    if (status) w.bytes(DELTA_REQ.errorDetail, status);
  } else {
    w.string(SOTW_REQ.version, req.versionInfo).string(SOTW_REQ.typeUrl, req.typeUrl).string(SOTW_REQ.nonce, req.nonce);
    if (status) w.bytes(SOTW_REQ.errorDetail, status);
  }
  return w.finish();
}
