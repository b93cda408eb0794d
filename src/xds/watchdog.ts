// Stuck-stream detection for one relayed stream: a request istiod must answer, forwarded upstream, with no
// answer of its type within `timeoutMs`, marks the stream stuck; the proxy then ends the pair (Envoy
// reconnects, and the new stream gets a new istiod connection). A connection that is up but answers
// nothing (a wedged istiod, a half-dead load balancer) otherwise leaves Envoy on stale configuration with no
// error anywhere. A dead connection is caught by gRPC keepalive (GRPC_KEEPALIVE_INTERVAL/TIMEOUT): the
// call then fails with UNAVAILABLE "Connection dropped: keepalive ping not answered" and the pair ends the
// same way (counted in istio_agent_istiod_connection_terminations, as any dropped connection).
//
// What istiod must answer: the first request of a type on a stream (SotW: no response nonce yet; Delta:
// the initial request). istiod does not answer a NACK (it logs it and waits for the next push) nor, in
// every case, a later subscription change, so those are not watched: watching them would end healthy
// streams.

/** Default answer deadline (XDS_STUCK_STREAM_TIMEOUT). */
export const DEFAULT_STUCK_STREAM_TIMEOUT_MS = 60_000;

/** True when istiod must answer this request from Envoy: the first of its type on the stream, not a NACK. */
export function mustBeAnswered(req: { readonly nonce: string; readonly nack: boolean }, firstOfType: boolean): boolean {
  return firstOfType && req.nonce === '' && !req.nack;
}

export class AnswerWatchdog {
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  /** `onStuck` is called at most once (the watchdog stops itself). `timeoutMs` 0 disables the watchdog. */
  constructor(
    private readonly timeoutMs: number,
    private readonly onStuck: (typeUrl: string, waitedMs: number) => void,
  ) {}

  /** A request that must be answered was sent upstream. */
  expectAnswer(typeUrl: string): void {
    if (this.stopped || this.timeoutMs <= 0 || this.pending.has(typeUrl)) return;
    const timer = setTimeout(() => {
      if (this.stopped) return;
      this.stop();
      this.onStuck(typeUrl, this.timeoutMs);
    }, this.timeoutMs);
    timer.unref();
    this.pending.set(typeUrl, timer);
  }

  /** A response of `typeUrl` arrived from istiod. */
  answered(typeUrl: string): void {
    const t = this.pending.get(typeUrl);
    if (t === undefined) return;
    clearTimeout(t);
    this.pending.delete(typeUrl);
  }

  /** Type URLs waiting for an answer. */
  get waiting(): string[] {
    return [...this.pending.keys()];
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
  }
}
