// How a stream ended, in pilot-agent's three buckets: a clean end (the peer closed with OK / EOF), an
// expected disconnect (cancellation, the peer or transport going away), or an unexpected error.
// Expected and graceful ends count as `type="cancelled"` in the termination metrics, the rest as `type="error"`.
import { Code as Status, codeName } from '../lib/grpc-h2/status.js';

export type TerminationKind = 'graceful' | 'expected' | 'unexpected';

// The messages grpc-go uses for a peer or transport going away, plus grpc-js's wording for the same events.
const EXPECTED_UNAVAILABLE = [
  'client disconnected',
  'error reading from server: EOF',
  'transport is closing',
  'Connection dropped',
];
const EXPECTED_ANY_CODE = [
  'stream terminated by RST_STREAM with error code: NO_ERROR',
  'received prior goaway: code: NO_ERROR',
  'Received RST_STREAM with code 0',
];

export function classifyTermination(code: number, details: string): TerminationKind {
  if (code === Status.OK) return 'graceful';
  if (code === Status.CANCELLED || code === Status.DEADLINE_EXCEEDED) return 'expected';
  if (code === Status.UNAVAILABLE && EXPECTED_UNAVAILABLE.some((m) => details.includes(m))) return 'expected';
  if (EXPECTED_ANY_CODE.some((m) => details.includes(m))) return 'expected';
  return 'unexpected';
}

/** The `type` label of the termination metrics. */
export function terminationLabel(kind: TerminationKind): 'cancelled' | 'error' {
  return kind === 'unexpected' ? 'error' : 'cancelled';
}

/** `UNAVAILABLE` for 14 (the name a status code is logged with). */
export function statusName(code: number): string {
  return codeName(code);
}
