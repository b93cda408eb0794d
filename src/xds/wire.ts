import { Writer, WT_LEN, forEachField, type WireField } from '../lib/protowire.js';

export { WireFormatError, forEachField, readVarint } from '../lib/protowire.js';

// Just enough of the protobuf wire format to relay xDS without decoding it.
// The proxy keeps every DiscoveryRequest/Response as the raw bytes gRPC handed it and only peeks at a
// handful of top-level scalar fields (type_url, nonce, version, counts). Skipping a length-delimited field
// is O(1), so even a 50 MB response costs one pass over its top-level field headers and no allocation
// besides the few strings we read.

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
