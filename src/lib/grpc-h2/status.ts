// gRPC status codes and the `grpc-message` text encoding (gRPC over HTTP/2 spec, as grpc-go implements it).
// No dependency: the agent's gRPC ends on node:http2 (grpc-h2/) and the status port's probes share it.

/** gRPC status codes. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES: readonly string[] = Object.keys(Code);

/** `UNAVAILABLE` for 14; the number as text for a code outside the table. */
export function codeName(code: number): string {
  return NAMES[code] ?? String(code);
}

/** How a call ended. */
export interface CallStatus {
  readonly code: number;
  readonly details: string;
}

/**
 * `grpc-message` as the gRPC spec (and grpc-go) encodes it: UTF-8 bytes outside 0x20-0x7E, and '%', become
 * %XX; everything else is sent as is (Envoy logs the header as it arrives).
 */
export function encodeGrpcMessage(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return text;
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
  }
  return out;
}

/**
 * grpc-go's decodeGrpcMessage: `%XX` escapes (two hex digits) become bytes, anything else is kept verbatim
 * (a bare `%` as in "disk 95% full"); the bytes are then read as UTF-8 (invalid sequences become U+FFFD).
 * Header values reach us as latin1 strings (one char per wire byte), so a char up to U+00FF is one byte.
 * Never throws.
 */
export function decodeGrpcMessage(msg: string): string {
  if (!/[%\u0080-\uffff]/.test(msg)) return msg;
  const bytes: number[] = [];
  const hex = /^[0-9A-Fa-f]{2}$/;
  for (let i = 0; i < msg.length; ) {
    const cp = msg.codePointAt(i)!;
    if (cp === 0x25 && i + 2 < msg.length && hex.test(msg.slice(i + 1, i + 3))) {
      bytes.push(parseInt(msg.slice(i + 1, i + 3), 16));
      i += 3;
      continue;
    }
    if (cp <= 0xff) {
      bytes.push(cp);
      i += 1;
      continue;
    }
    const ch = String.fromCodePoint(cp);
    for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
    i += ch.length;
  }
  return Buffer.from(bytes).toString('utf8');
}

/** grpc-go's check of a content-type: `application/grpc`, optionally followed by `+subtype` or `;params`. */
export function isGrpcContentType(ct: string): boolean {
  const base = 'application/grpc';
  return ct === base || (ct.startsWith(base) && (ct[base.length] === '+' || ct[base.length] === ';'));
}

/** grpc-go's reading of `grpc-status` (strconv.ParseInt(v, 10, 32) as a uint32 code); undefined when malformed. */
export function parseGrpcStatus(v: string): number | undefined {
  if (!/^[+-]?\d+$/.test(v)) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < -(2 ** 31) || n > 2 ** 31 - 1) return undefined;
  return n >>> 0;
}

/** The gRPC code for a non-200 HTTP status without `grpc-status` (gRPC's http-grpc-status-mapping). */
export function codeForHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return Code.INTERNAL;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.UNAVAILABLE;
    default:
      return Code.UNKNOWN;
  }
}

/** The status of a stream the peer reset (RST_STREAM), in the words gRPC clients use for it. */
export function statusForReset(rstCode: number): CallStatus {
  switch (rstCode) {
    case 0x7: // REFUSED_STREAM
      return { code: Code.UNAVAILABLE, details: 'Stream refused by server' };
    case 0x8: // CANCEL
      return { code: Code.CANCELLED, details: 'Call cancelled' };
    case 0xb: // ENHANCE_YOUR_CALM
      return { code: Code.RESOURCE_EXHAUSTED, details: 'Bandwidth exhausted or memory limit exceeded' };
    case 0xc: // INADEQUATE_SECURITY
      return { code: Code.PERMISSION_DENIED, details: 'Protocol not secure enough' };
    default:
      return { code: Code.INTERNAL, details: `Received RST_STREAM with code ${rstCode}` };
  }
}
