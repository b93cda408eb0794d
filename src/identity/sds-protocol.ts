// When the SDS server answers a request: pilot-agent's rules for a non-wildcard SotW type (Istio's
// pkg/xds ShouldRespond), as a pure decision over one stream's watch. In order:
//   NACK (error_detail)                 -> record the error, no response
//   no resource names                   -> unsubscribe (drop the watch), no response
//   no nonce, or no watch on the stream -> (re)subscribe to the names, respond with all of them
//   nonce other than the last one sent  -> stale, no response
//   nonce matches (an ACK)              -> adopt the names; respond with the added ones only, if any
import type { DiscoveryRequest } from './sds-messages.js';

export interface Watch {
  names: Set<string>;
  /** Nonce of the last response written to this stream. */
  nonceSent: string;
  nonceAcked: string;
  lastError: string;
}

export type Decision =
  | { readonly kind: 'nack'; readonly message: string }
  | { readonly kind: 'unsubscribe' }
  | { readonly kind: 'init'; readonly names: readonly string[] }
  | { readonly kind: 'stale' }
  | { readonly kind: 'ack' }
  | { readonly kind: 'added'; readonly names: readonly string[] };

/** Decides, and updates `state.watch` as pilot-agent does. */
export function decide(state: { watch: Watch | undefined }, req: DiscoveryRequest): Decision {
  if (req.errorDetail) {
    if (state.watch) state.watch.lastError = req.errorDetail.message;
    return { kind: 'nack', message: req.errorDetail.message };
  }
  if (req.resourceNames.length === 0) {
    state.watch = undefined;
    return { kind: 'unsubscribe' };
  }
  const w = state.watch;
  if (req.responseNonce === '' || !w) {
    state.watch = { names: new Set(req.resourceNames), nonceSent: w?.nonceSent ?? '', nonceAcked: '', lastError: '' };
    return { kind: 'init', names: [...new Set(req.resourceNames)] };
  }
  if (req.responseNonce !== w.nonceSent) return { kind: 'stale' };
  w.lastError = '';
  w.nonceAcked = req.responseNonce;
  const previous = w.names;
  const current = new Set(req.resourceNames);
  w.names = current;
  const added = [...current].filter((n) => !previous.has(n));
  return added.length ? { kind: 'added', names: added } : { kind: 'ack' };
}
