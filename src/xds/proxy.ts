// The xDS proxy: Envoy's ADS stream on a Unix socket, relayed to istiod.
//
// Behaviour follows pilot-agent's XdsProxy: one upstream connection and stream per Envoy stream, the same
// flavour (SotW or Delta) on both sides, one active Envoy stream at a time (a new stream closes the previous
// one, except during a hot-restart hand-over, see beginHandover), per-stream metadata (ClusterID,
// XDS_HEADER_*, bearer token re-read per stream), agent-consumed types (NDS, PCDS) handled and ACKed here,
// only Envoy types forwarded, and any failure on either side ending the pair so Envoy reconnects and
// re-subscribes (the proxy itself never retries).
//
// Messages are never decoded: both gRPC ends (lib/grpc-h2, on node:http2) carry raw Buffers, and a tiny wire reader
// (wire.ts) peeks at type_url/nonce/version/counts. Flow control is end to end: the next istiod message is
// read only after the previous one was written to Envoy, so at most one response is held in memory.
//
// Bytes from either socket are untrusted: a message the wire reader cannot walk ends that pair of streams
// with INTERNAL and a status naming the problem (counted and logged); nothing a peer sends can throw out of
// the proxy or touch another stream. Status text sent to Envoy is percent-encoded as gRPC specifies (as
// grpc-go does), not with grpc-js's encodeURI, because Envoy logs `grpc-message` as it arrives.
import { Code as Status, type CallStatus } from '../lib/grpc-h2/status.js';
import { createGrpcH2Server, type GrpcH2Server, type ServerCall } from '../lib/grpc-h2/server.js';
import type { CallMetadata, ClientCall, GrpcConnection } from '../lib/grpc-h2/client.js';
import { AgentError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { Registry } from 'prom-client';
import { xdsProxyMetrics, type XdsProxyMetrics } from './metrics.js';
import type { UpstreamTls } from './options.js';
import { classifyTermination, statusName, terminationLabel, type TerminationKind } from './termination.js';
import { DELTA_METHOD, HEALTH_INFO_TYPE, LISTENER_TYPE, SOTW_METHOD, isForwardedToEnvoy, shortType } from './types.js';
import { OWNER_ONLY_SOCKET_MODE, checkSocketMode, listenUds, type UdsListener } from '../lib/uds.js';
import { UPSTREAM_MAX_RECV_BYTES, openUpstreamChannel, upstreamMetadata, type UpstreamConfig } from './upstream.js';
import { readAheadOrAgain, type CallMetadataRead } from '../lib/grpc-credentials.js';
import { encodeAgentRequest, firstResource, summarizeRequest, summarizeResponse, type RawAny } from './wire.js';
import { AnswerWatchdog, DEFAULT_STUCK_STREAM_TIMEOUT_MS, mustBeAnswered } from './watchdog.js';

/** Workload health for istiod (`istio.v1.HealthInformation`): healthy, or unhealthy with why. */
export type HealthReport = { readonly healthy: true } | { readonly healthy: false; readonly message: string };

/** What happened on a relayed stream, for the agent's start-up phases and event timeline. */
export type XdsProxyEvent =
  | { readonly kind: 'connected'; readonly stream: number }
  | { readonly kind: 'request' | 'ack'; readonly stream: number; readonly typeUrl: string; readonly version: string }
  | { readonly kind: 'nack'; readonly stream: number; readonly typeUrl: string; readonly message: string }
  | { readonly kind: 'response'; readonly stream: number; readonly typeUrl: string; readonly version: string; readonly resources: number }
  | { readonly kind: 'stuck'; readonly stream: number; readonly typeUrl: string; readonly waitedMs: number };

/** A type the agent consumes itself instead of forwarding (NDS for the DNS proxy, PCDS for trust bundles). */
export interface AgentTypeHandler {
  readonly typeUrl: string;
  /**
   * Called with the first resource of each non-empty response of this type (value points into the
   * response; copy it to keep it). Resolve to ACK; throw/reject to NACK with the error message.
   */
  onResource(resource: RawAny): void | Promise<void>;
}

export interface XdsProxyOptions {
  /** Absolute path of the Unix socket to serve (`<cwd>/etc/istio/proxy/XDS`). */
  readonly udsPath: string;
  /** istiod host:port. */
  readonly discoveryAddress: string;
  /** TLS toward istiod; null = plaintext. */
  readonly tls: UpstreamTls | null;
  /** Token file re-read for every upstream stream; null = no authorization header. */
  readonly tokenPath: string | null;
  /** `ClusterID` metadata (ISTIO_META_CLUSTER_ID); sent even when empty, as pilot-agent does. */
  readonly clusterId?: string;
  /** Extra upstream metadata (XDS_HEADER_*). */
  readonly xdsHeaders?: Readonly<Record<string, string>>;
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** Downstream server limits (ISTIO_GPRC_MAXSTREAMS, ISTIO_GPRC_MAXRECVMSGSIZE). */
  readonly maxConcurrentStreams?: number;
  readonly maxDownstreamRecvBytes?: number;
  /**
   * pilot-agent keeps one Envoy stream: a new one closes the previous (default true). For a hot restart,
   * keep the default and call `beginHandover()` when the next epoch starts: overlapping streams are then
   * kept only for that hand-over. `false` keeps every overlap for the life of the proxy (deprecated: an Envoy
   * that reconnects without its old stream noticing leaves that stream open forever).
   */
  readonly exclusiveStream?: boolean;
  /** Agent-consumed types; on the first LDS request of a stream an initial request for each is sent upstream. */
  readonly agentTypes?: readonly AgentTypeHandler[];
  /** The agent's logger; the proxy logs in scope `xdsproxy`. */
  readonly log: Logger;
  /** Counter handles (pass `createAgentMetrics()`'s); default: fresh counters in a private registry. */
  readonly metrics?: XdsProxyMetrics;
  /** Graceful close deadline before connections are forced closed (default 2000 ms). */
  readonly closeTimeoutMs?: number;
  /** A single write to Envoy slower than this is logged (default 10 s, as pilot-agent). */
  readonly slowSendWarnMs?: number;
  /** Called after a response of `largeMessageBytes` (default 1 MiB) or more was received from istiod. */
  readonly onLargeResponse?: (bytes: number) => void;
  readonly largeMessageBytes?: number;
  /** Working directory of this process, used only to shorten an over-long socket path for bind(2). */
  readonly processCwd?: string;
  /**
   * Mode of the socket file (default 0600: Envoy runs as the agent's user). Proxyless mode (DISABLE_ENVOY=true)
   * needs 0666: applications reach the socket through a shared volume as another user (pilot-agent: always 0666).
   * `resolveXdsProxySettings` sets it from DISABLE_ENVOY.
   */
  readonly socketMode?: number;
  /**
   * The socket, already listening at `udsPath` (lib/uds.ts listenUds, bound before gRPC is loaded so that
   * Envoy can be started early); bound by `start` when absent. Closed (and removed) by `close`.
   */
  readonly listener?: UdsListener;
  /**
   * Connect to istiod when the proxy starts, before Envoy's first stream arrives, which then gets this
   * connection (still its own, as pilot-agent dials one per stream: later streams dial theirs). Saves the
   * TLS handshake and the token read on Envoy's start-up path. An unused connection is closed after
   * `preconnectIdleMs`.
   */
  readonly preconnect?: boolean;
  readonly preconnectIdleMs?: number;
  /**
   * Stuck-stream detection (watchdog.ts): a request istiod must answer (the first of a type on a stream)
   * left unanswered this long ends the pair, so Envoy reconnects over a new istiod connection. Default 60 s;
   * 0 disables it.
   */
  readonly stuckStreamTimeoutMs?: number;
  /** Stream events (connected, requests, ACK/NACK, responses, stuck streams); must not throw. */
  readonly onEvent?: (e: XdsProxyEvent) => void;
}

export interface XdsTypeStatus {
  /** Last response from istiod. */
  lastResponseNonce: string;
  lastResponseVersion: string;
  lastResponseResources: number;
  lastResponseAt: string;
  /** Last request from Envoy (or the agent, for agent types). */
  lastRequestNonce: string;
  lastAckedVersion: string;
  lastNack?: string;
  requests: number;
  responses: number;
}

export interface XdsProxyStatus {
  readonly udsPath: string;
  readonly upstreamAddress: string;
  readonly tls: boolean;
  readonly listening: boolean;
  /** The newest Envoy stream is active and its istiod connection is READY. */
  readonly connected: boolean;
  /** Envoy streams being relayed (more than 1 only during a hot-restart hand-over, or with exclusiveStream false). */
  readonly activeStreams: number;
  readonly stream?: {
    readonly id: number;
    readonly flavour: 'sotw' | 'delta';
    readonly startedAt: string;
    readonly upstreamState: string;
  };
  readonly types: Readonly<Record<string, XdsTypeStatus>>;
  readonly counts: {
    readonly streams: number;
    readonly requests: number;
    readonly responses: number;
    readonly upstreamFailures: number;
    readonly upstreamErrors: number;
    readonly downstreamErrors: number;
    /** Streams ended because istiod left a request it must answer unanswered (stuckStreamTimeoutMs). */
    readonly stuckStreams: number;
  };
  /** Type URLs the newest stream waits on an answer for (stuck-stream detection). */
  readonly awaitingAnswer?: readonly string[];
  readonly lastError?: { readonly at: string; readonly message: string };
  /** Present while a hot-restart hand-over keeps overlapping streams (see beginHandover). */
  readonly handover?: {
    /** When the window closes at the latest. */
    readonly until: string;
    /** Streams of the previous epoch(s) still open; the hand-over ends when they are all gone. */
    readonly streams: number;
  };
  /** What the proxy holds right now (for leak checks): every figure returns to its idle value when streams end. */
  readonly resources: {
    /** Envoy streams being relayed. */
    readonly sessions: number;
    /** Stream objects not yet garbage-collected (sessions ended and collected are subtracted). */
    readonly sessionObjects: number;
    /** Upstream channels not yet closed. */
    readonly upstreamChannels: number;
    /** Writes to Envoy in flight (each with its slow-send timer). */
    readonly sendTimers: number;
    /** Requests from Envoy waiting to be sent upstream. */
    readonly queuedRequests: number;
    /** Type URLs with per-type status (bounded). */
    readonly trackedTypes: number;
  };
}

export interface XdsProxy {
  readonly udsPath: string;
  /** Binds the socket (`socketMode`, default 0600) and starts serving; rejects with an AgentError naming the path on failure. */
  start(): Promise<void>;
  /** Ends the active stream, stops serving (forced after `closeTimeoutMs`) and removes the socket. Idempotent. */
  close(): Promise<void>;
  getStatus(): XdsProxyStatus;
  /**
   * Opens a hot-restart hand-over: call it just before starting Envoy's next epoch. Until it ends, a new
   * Envoy stream does not close the streams already open (the parent epoch keeps its stream while it
   * drains). It ends after `windowMs`, when every stream open at this call has ended (the parent exited),
   * or on `endHandover()`, whichever is first; from then on a new stream closes the previous one again, as
   * pilot-agent does. Ending it closes nothing by itself. Calling it again during a hand-over restarts the
   * window and adds the streams now open.
   */
  beginHandover(windowMs: number): void;
  /** Ends a hand-over now (e.g. the next epoch failed to start). No-op when none is open. */
  endHandover(): void;
  /**
   * Reports the workload's health to istiod (pilot-agent's health requests, for WorkloadEntry health): sent
   * on the open streams that have sent their first LDS request, and replayed on every later stream.
   */
  reportHealth(h: HealthReport): void;
}

interface EndStatus {
  code: number;
  details: string;
}

/** Shared state the sessions report into. */
interface ProxyCore {
  readonly cfg: UpstreamConfig;
  readonly log: Logger;
  readonly metrics: XdsProxyMetrics;
  readonly agentTypes: ReadonlyMap<string, AgentTypeHandler>;
  readonly slowSendWarnMs: number;
  readonly largeMessageBytes: number;
  readonly onLargeResponse: ((bytes: number) => void) | undefined;
  readonly counts: { streams: number; requests: number; responses: number; upstreamFailures: number; upstreamErrors: number; downstreamErrors: number; stuckStreams: number };
  readonly stuckStreamTimeoutMs: number;
  readonly onEvent: (e: XdsProxyEvent) => void;
  /** The last workload health report (reportHealth), replayed on every new stream. */
  health(): HealthReport | undefined;
  /** Live resource counts (XdsProxyStatus.resources). */
  readonly held: { upstreamChannels: number; sendTimers: number; sessionObjects: number };
  /** Counts sessions out of `held.sessionObjects` once they are garbage-collected. */
  readonly sessionFinalizer: FinalizationRegistry<undefined>;
  types: Map<string, XdsTypeStatus>;
  lastError?: { at: string; message: string };
  unregister(s: Session): void;
  /** The connection opened at start (`preconnect`) and its call metadata, once: the first stream's. */
  takeWarm(): WarmUpstream | undefined;
}

/**
 * Per-type status is kept for this many type URLs at most: type URLs come from the peers, and a peer
 * inventing new ones must not grow the proxy's memory. Envoy and istiod use about a dozen.
 */
export const MAX_TRACKED_TYPES = 64;

/** setTimeout's largest delay (a larger one fires at once). */
/** The upstream connection opened at start and the call metadata read with it (see `preconnect`). */
interface WarmUpstream {
  readonly channel: Promise<GrpcConnection>;
  readonly metadata: Promise<CallMetadataRead>;
}

const MAX_TIMER_MS = 2_147_483_647;

function typeStatus(core: ProxyCore, typeUrl: string): XdsTypeStatus {
  let t = core.types.get(typeUrl);
  if (!t) {
    t = {
      lastResponseNonce: '',
      lastResponseVersion: '',
      lastResponseResources: 0,
      lastResponseAt: '',
      lastRequestNonce: '',
      lastAckedVersion: '',
      requests: 0,
      responses: 0,
    };
    if (core.types.size < MAX_TRACKED_TYPES) core.types.set(typeUrl, t);
  }
  return t;
}

export { encodeGrpcMessage } from '../lib/grpc-h2/status.js';

function recordError(core: ProxyCore, message: string): void {
  core.lastError = { at: new Date().toISOString(), message };
}

/** One Envoy stream and the istiod stream paired with it. */
class Session {
  readonly startedAt = new Date();
  private readonly log: Logger;
  private channel: GrpcConnection | undefined;
  private call: ClientCall | undefined;
  private readonly sendQueue: Buffer[] = [];
  private sending = false;
  private finished = false;
  private upstreamEnded = false;
  private initialRequestsSent = false;
  private upstreamReady = false;
  private channelCounted = false;
  private channelClosing = false;
  /** The write to Envoy in flight (one at a time: the next istiod message is read after it completes). */
  private pendingWrite: { readonly typeUrl: string; readonly timer: NodeJS.Timeout } | undefined;
  /** Requests istiod must answer, and whether it did in time. */
  private readonly watchdog: AnswerWatchdog;
  /** Type URLs Envoy has requested on this stream (bounded as the per-type status is). */
  private readonly requestedTypes = new Set<string>();

  constructor(
    private readonly core: ProxyCore,
    readonly id: number,
    readonly delta: boolean,
    private readonly down: ServerCall,
  ) {
    this.log = core.log;
    this.watchdog = new AnswerWatchdog(core.stuckStreamTimeoutMs, (typeUrl, waitedMs) => this.onStuck(typeUrl, waitedMs));
    core.held.sessionObjects++;
    core.sessionFinalizer.register(this, undefined);
  }

  get queuedRequests(): number {
    return this.sendQueue.length;
  }

  get flavour(): 'sotw' | 'delta' {
    return this.delta ? 'delta' : 'sotw';
  }

  upstreamState(): string {
    return this.channel?.state ?? 'NONE';
  }

  /** Sends a health report to istiod now if this stream has sent its first LDS request (else it goes then). */
  sendHealth(h: HealthReport): void {
    if (this.finished || !this.initialRequestsSent) return;
    this.enqueue(encodeAgentRequest({ typeUrl: HEALTH_INFO_TYPE, ...(h.healthy ? {} : { errorDetail: { code: Status.INTERNAL, message: h.message } }) }, this.delta), HEALTH_INFO_TYPE);
  }

  /** Type URLs this stream waits on an answer for. */
  get awaitingAnswer(): string[] {
    return this.watchdog.waiting;
  }

  isUpstreamReady(): boolean {
    return !this.finished && this.channel?.state === 'READY';
  }

  /** Wires the downstream events, then dials istiod. Never throws. */
  run(): void {
    this.down.start({
      onMessage: (buf) => this.onDownstreamRequest(buf),
      onHalfClose: () => this.onDownstreamEnd('graceful', { code: Status.OK, details: 'EOF' }),
      onInvalid: (st) => this.onDownstreamEnd('unexpected', { code: st.code, details: `bad request from Envoy: ${st.details}` }),
      onCancel: (reason) => {
        if (this.pendingWrite) this.onWriteFailed(reason);
        else this.onDownstreamEnd('expected', { code: Status.CANCELLED, details: 'client disconnected' });
        this.finish(undefined);
      },
    });
    this.openUpstream().catch((e: unknown) => this.failUpstream({ code: Status.INTERNAL, details: `starting upstream stream: ${errorMessage(e)}` }));
  }

  private async openUpstream(): Promise<void> {
    const { cfg } = this.core;
    let md: CallMetadata;
    // the metadata (the bearer token, read from its file) is read while the connection is made, or was
    // read with the connection opened at start: Envoy's first stream waits for neither (a token that was
    // not there at start is looked for again)
    const warm = this.core.takeWarm();
    const metadata = warm ? readAheadOrAgain(warm.metadata, cfg.tokenPath, () => upstreamMetadata(cfg, this.log)) : upstreamMetadata(cfg, this.log);
    metadata.catch(() => undefined);
    try {
      this.channel = (await warm?.channel) ?? (await openUpstreamChannel(cfg, this.log));
      this.channelCounted = true;
      this.core.held.upstreamChannels++;
      md = (await metadata).md;
    } catch (e) {
      this.closeChannel();
      this.channel = undefined;
      const msg = `failed to connect to upstream ${cfg.discoveryAddress}: ${errorMessage(e)}`;
      this.log.error(msg);
      this.core.metrics.istiodConnectionFailures.inc();
      this.core.counts.upstreamFailures++;
      recordError(this.core, msg);
      this.finish({ code: Status.UNAVAILABLE, details: msg });
      return;
    }
    if (this.finished) {
      this.closeChannel();
      return;
    }
    // a connection opened at start (preconnect) may be up already
    const channel = this.channel;
    if (channel.state === 'READY') this.onUpstreamReady();
    else channel.watch((st) => (st === 'READY' ? (this.onUpstreamReady(), true) : false));
    const call = channel.call(this.delta ? DELTA_METHOD : SOTW_METHOD, md, { maxRecvBytes: UPSTREAM_MAX_RECV_BYTES }, {
      onMessage: (buf: Buffer) => {
        this.onUpstreamResponse(buf).catch((e: unknown) =>
          this.failUpstream({ code: Status.INTERNAL, details: `relaying response: ${errorMessage(e)}` }),
        );
      },
      onStatus: (st: CallStatus) => {
        if (!this.upstreamEnded) this.onUpstreamStatus(st);
      },
    });
    this.call = call;
    call.startRead();
    this.flushRequests();
  }

  private onUpstreamReady(): void {
    if (this.upstreamReady || this.finished) return;
    this.upstreamReady = true;
    this.core.onEvent({ kind: 'connected', stream: this.id });
    this.log.info(`connected to ${this.delta ? 'delta ' : ''}upstream XDS server: ${this.core.cfg.discoveryAddress}`, { id: this.id });
  }

  // ---- Envoy -> istiod ----

  private onDownstreamRequest(buf: Buffer): void {
    if (this.finished) return;
    let typeUrl: string;
    let mustAnswer = false;
    try {
      const s = summarizeRequest(buf, this.delta);
      typeUrl = s.typeUrl;
      const first = !this.requestedTypes.has(typeUrl);
      if (first && this.requestedTypes.size < MAX_TRACKED_TYPES) this.requestedTypes.add(typeUrl);
      mustAnswer = isForwardedToEnvoy(typeUrl) && mustBeAnswered(s, first);
      if (s.nack) this.core.onEvent({ kind: 'nack', stream: this.id, typeUrl, message: s.errorMessage });
      else this.core.onEvent({ kind: s.nonce ? 'ack' : 'request', stream: this.id, typeUrl, version: s.versionInfo });
      const t = typeStatus(this.core, typeUrl);
      t.lastRequestNonce = s.nonce;
      if (s.nack) t.lastNack = s.errorMessage;
      else if (!this.delta && s.nonce) t.lastAckedVersion = s.versionInfo;
      // Delta requests carry no version: an ACK of the last response acknowledges its system version
      else if (this.delta && s.nonce && s.nonce === t.lastResponseNonce) t.lastAckedVersion = t.lastResponseVersion;
      if (this.log.enabled('debug')) {
        this.log.debug(this.delta ? 'delta request' : `request for type url ${typeUrl}`, {
          id: this.id,
          type: shortType(typeUrl),
          nonce: s.nonce,
          ...(this.delta ? { sub: s.names, unsub: s.unsubscribe, initial: s.initial } : { version: s.versionInfo, resources: s.names }),
          ...(s.nack ? { nack: s.errorMessage } : {}),
        });
      }
    } catch (e) {
      this.onDownstreamEnd('unexpected', { code: Status.INTERNAL, details: `bad request from Envoy: ${errorMessage(e)}` });
      return;
    }
    this.enqueue(buf, typeUrl);
    if (mustAnswer) this.watchdog.expectAnswer(typeUrl);
    if (!this.initialRequestsSent && typeUrl === LISTENER_TYPE) {
      this.initialRequestsSent = true;
      for (const t of this.core.agentTypes.keys()) this.enqueue(encodeAgentRequest({ typeUrl: t }, this.delta), t);
      // the last health report (ProxyConfig readinessProbe), held back until now as pilot-agent does
      const h = this.core.health();
      if (h) this.sendHealth(h);
    }
  }

  private enqueue(buf: Buffer, typeUrl: string): void {
    typeStatus(this.core, typeUrl).requests++;
    this.sendQueue.push(buf);
    this.flushRequests();
  }

  /** Sends queued requests one at a time (the next once HTTP/2 has taken the previous). */
  private flushRequests(): void {
    const call = this.call;
    if (!call || this.sending || this.finished || this.upstreamEnded) return;
    const next = this.sendQueue.shift();
    if (!next) return;
    this.sending = true;
    this.core.metrics.xdsProxyRequests.inc();
    this.core.counts.requests++;
    call.sendMessage(next, (err?: Error) => {
      this.sending = false;
      if (err) {
        if (!this.finished) this.failUpstream({ code: Status.UNAVAILABLE, details: `send error: ${errorMessage(err)}` });
        return;
      }
      this.flushRequests();
    });
  }

  // ---- istiod -> Envoy ----

  private async onUpstreamResponse(buf: Buffer): Promise<void> {
    if (this.finished) return;
    if (buf.length >= this.core.largeMessageBytes) this.core.onLargeResponse?.(buf.length);
    this.core.metrics.xdsProxyResponses.inc();
    this.core.counts.responses++;
    let s;
    try {
      s = summarizeResponse(buf, this.delta);
    } catch (e) {
      this.failUpstream({ code: Status.INTERNAL, details: `bad response from upstream: ${errorMessage(e)}` });
      return;
    }
    this.watchdog.answered(s.typeUrl);
    this.core.onEvent({ kind: 'response', stream: this.id, typeUrl: s.typeUrl, version: s.versionInfo, resources: s.resources });
    const t = typeStatus(this.core, s.typeUrl);
    t.responses++;
    t.lastResponseNonce = s.nonce;
    t.lastResponseVersion = s.versionInfo;
    t.lastResponseResources = s.resources;
    t.lastResponseAt = new Date().toISOString();
    if (this.log.enabled('debug')) {
      this.log.debug('upstream response', {
        id: this.id,
        type: shortType(s.typeUrl),
        nonce: s.nonce,
        resources: s.resources,
        ...(this.delta ? { removes: s.removed } : { version: s.versionInfo }),
        bytes: buf.length,
      });
    }

    const handler = this.core.agentTypes.get(s.typeUrl);
    if (handler) {
      if (s.resources > 0) await this.handleAgentType(handler, buf, s.typeUrl, s.nonce, s.versionInfo);
      this.readNext();
      return;
    }
    if (!isForwardedToEnvoy(s.typeUrl)) {
      this.log.error(`Skipping forwarding type url ${s.typeUrl} to Envoy as is not a valid Envoy type`);
      this.readNext();
      return;
    }
    this.forwardToEnvoy(buf, s.typeUrl);
  }

  private async handleAgentType(handler: AgentTypeHandler, buf: Buffer, typeUrl: string, nonce: string, version: string): Promise<void> {
    let errorDetail: { code: number; message: string } | undefined;
    try {
      const res = firstResource(buf, this.delta);
      if (!res) throw new Error(`response for ${typeUrl} has no resource`);
      await handler.onResource(res);
    } catch (e) {
      errorDetail = { code: Status.INTERNAL, message: errorMessage(e) };
      this.log.warn(`agent failed to apply ${shortType(typeUrl)}, sending NACK: ${errorDetail.message}`, { id: this.id });
    }
    if (this.finished) return;
    const t = typeStatus(this.core, typeUrl);
    if (errorDetail) t.lastNack = errorDetail.message;
    else t.lastAckedVersion = version;
    t.lastRequestNonce = nonce;
    const ack = encodeAgentRequest({ typeUrl, nonce, versionInfo: version, ...(errorDetail ? { errorDetail } : {}) }, this.delta);
    this.enqueue(ack, typeUrl);
  }

  private forwardToEnvoy(buf: Buffer, typeUrl: string): void {
    if (this.finished || this.down.ended) {
      this.log.error(`downstream dropped ${this.delta ? 'delta ' : ''}xds push to Envoy, connection already closed`, { id: this.id });
      return;
    }
    const started = Date.now();
    const timer = setTimeout(() => {
      this.log.warn(`sendDownstream${this.delta ? 'Delta' : ''} is taking more than ${this.core.slowSendWarnMs}ms`, {
        id: this.id,
        type: shortType(typeUrl),
        bytes: buf.length,
      });
    }, this.core.slowSendWarnMs);
    timer.unref();
    const write = { typeUrl, timer };
    this.pendingWrite = write;
    this.core.held.sendTimers++;
    // called back once HTTP/2 took the message, or with an error when the stream closed first
    this.down.write(buf, (err?: Error) => {
      if (this.pendingWrite !== write) return; // already settled as failed
      this.settleWrite();
      const took = Date.now() - started;
      if (took > this.core.slowSendWarnMs) this.log.warn(`sendDownstream${this.delta ? 'Delta' : ''} took ${took}ms`, { id: this.id });
      if (err) {
        this.onWriteFailed(errorMessage(err), typeUrl);
        return;
      }
      this.readNext();
    });
  }

  /** Clears the in-flight write and its slow-send timer; returns what it was. */
  private settleWrite(): { readonly typeUrl: string } | undefined {
    const w = this.pendingWrite;
    if (!w) return undefined;
    clearTimeout(w.timer);
    this.pendingWrite = undefined;
    this.core.held.sendTimers--;
    return w;
  }

  /** A write to Envoy failed: an error (as pilot-agent's "send error"), never a cancellation. */
  private onWriteFailed(reason: string, typeUrl?: string): void {
    const w = this.settleWrite();
    const t = typeUrl ?? w?.typeUrl ?? '';
    this.onDownstreamEnd('unexpected', { code: Status.UNAVAILABLE, details: `send error for type url ${t}: ${reason}` });
  }

  private readNext(): void {
    if (!this.finished && !this.upstreamEnded) this.call?.startRead();
  }

  // ---- endings ----

  /** istiod left a request it must answer unanswered: end the pair, so that Envoy reconnects over a new connection. */
  private onStuck(typeUrl: string, waitedMs: number): void {
    if (this.finished) return;
    this.core.counts.stuckStreams++;
    this.core.metrics.xdsStuckStreams.inc({ reason: 'no-answer' });
    const msg = `istiod did not answer the ${shortType(typeUrl)} request within ${waitedMs}ms; closing the stream so that Envoy reconnects`;
    this.log.warn(msg, { id: this.id, upstreamState: this.upstreamState() });
    recordError(this.core, msg);
    this.core.onEvent({ kind: 'stuck', stream: this.id, typeUrl, waitedMs });
    this.failUpstream({ code: Status.UNAVAILABLE, details: msg });
  }

  private onUpstreamStatus(st: CallStatus): void {
    this.upstreamEnded = true;
    const kind = classifyTermination(st.code, st.details);
    this.core.metrics.istiodConnectionTerminations.inc({ type: terminationLabel(kind) });
    if (this.finished) return; // we cancelled it
    if (kind === 'unexpected') {
      this.core.counts.upstreamErrors++;
      const msg = `upstream terminated with unexpected error ${statusName(st.code)}: ${st.details}`;
      this.log.warn(msg, { id: this.id });
      recordError(this.core, msg);
    } else {
      this.log.debug(`upstream terminated with status ${statusName(st.code)}: ${st.details}`, { id: this.id });
    }
    this.finish(kind === 'graceful' ? { code: Status.OK, details: 'OK' } : { code: st.code, details: st.details });
  }

  /** Ends istiod's stream from our side (bad message, send failure) and reports `st` as its outcome. */
  private failUpstream(st: EndStatus): void {
    if (this.upstreamEnded) return;
    this.onUpstreamStatus(st); // sets upstreamEnded: the CANCELLED echo is ignored
    this.call?.cancel(Status.CANCELLED, 'proxy closed the stream');
  }

  private onDownstreamEnd(kind: TerminationKind, st: EndStatus): void {
    if (this.finished) return;
    this.core.metrics.envoyConnectionTerminations.inc({ type: terminationLabel(kind) });
    if (kind === 'unexpected') {
      this.core.counts.downstreamErrors++;
      const msg = `downstream terminated with unexpected error ${statusName(st.code)}: ${st.details}`;
      this.log.warn(msg, { id: this.id });
      recordError(this.core, msg);
    } else {
      this.log.debug(`downstream terminated with status ${statusName(st.code)}: ${st.details}`, { id: this.id });
    }
    this.finish(kind === 'graceful' ? { code: Status.OK, details: 'OK' } : st);
  }

  /**
   * Ends the pair: cancels istiod's stream, closes the connection, and ends Envoy's stream with `st`
   * (undefined when Envoy's side is already gone). Idempotent.
   */
  finish(st: EndStatus | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.watchdog.stop();
    this.core.unregister(this);
    this.sendQueue.length = 0;
    this.settleWrite();
    if (this.call && !this.upstreamEnded) this.call.cancel(Status.CANCELLED, 'downstream closed');
    this.closeChannel();
    this.log.debug(`disconnected from ${this.delta ? 'delta ' : ''}XDS server: ${this.core.cfg.discoveryAddress}`, { id: this.id });
    if (!st || this.down.ended) return;
    if (st.code === Status.OK) this.down.end(Status.OK);
    else this.down.end(st.code, st.details);
  }

  /** Closes the istiod connection. */
  private closeChannel(): void {
    const channel = this.channel;
    if (!channel || this.channelClosing) return;
    this.channelClosing = true;
    channel.close();
    if (this.channelCounted) this.core.held.upstreamChannels--;
    this.channelCounted = false;
  }
}

export function createXdsProxy(opts: XdsProxyOptions): XdsProxy {
  const log = opts.log.scope('xdsproxy');
  const cfg: UpstreamConfig = {
    discoveryAddress: opts.discoveryAddress,
    tls: opts.tls,
    tokenPath: opts.tokenPath,
    clusterId: opts.clusterId ?? '',
    xdsHeaders: opts.xdsHeaders ?? {},
    keepaliveTimeMs: opts.keepaliveTimeMs ?? 30_000,
    keepaliveTimeoutMs: opts.keepaliveTimeoutMs ?? 10_000,
  };
  const closeTimeoutMs = opts.closeTimeoutMs ?? 2000;
  const socketMode = opts.socketMode ?? OWNER_ONLY_SOCKET_MODE;
  try {
    checkSocketMode(socketMode);
  } catch (e) {
    throw new AgentError('AGENT_ERR_XDS', `xds proxy socketMode: ${errorMessage(e)}`);
  }
  const active = new Set<Session>();
  const exclusive = opts.exclusiveStream ?? true;
  /** An open hot-restart hand-over: overlapping streams are kept until `until`, or until `waitingFor` empties. */
  let handover: { until: number; timer: NodeJS.Timeout; waitingFor: Set<Session> } | undefined;
  const newest = (): Session | undefined => [...active].at(-1);
  let nextId = 0;
  let server: GrpcH2Server | undefined;
  let listener: UdsListener | undefined;
  let state: 'new' | 'starting' | 'serving' | 'closing' | 'closed' = 'new';
  let closing: Promise<void> | undefined;

  const held = { upstreamChannels: 0, sendTimers: 0, sessionObjects: 0 };
  let lastHealth: HealthReport | undefined;
  const core: ProxyCore = {
    cfg,
    log,
    metrics: opts.metrics ?? xdsProxyMetrics(new Registry()),
    agentTypes: new Map((opts.agentTypes ?? []).map((h) => [h.typeUrl, h])),
    slowSendWarnMs: opts.slowSendWarnMs ?? 10_000,
    largeMessageBytes: opts.largeMessageBytes ?? 1024 * 1024,
    onLargeResponse: opts.onLargeResponse,
    counts: { streams: 0, requests: 0, responses: 0, upstreamFailures: 0, upstreamErrors: 0, downstreamErrors: 0, stuckStreams: 0 },
    stuckStreamTimeoutMs: opts.stuckStreamTimeoutMs ?? DEFAULT_STUCK_STREAM_TIMEOUT_MS,
    health: () => lastHealth,
    onEvent: (e) => {
      try {
        opts.onEvent?.(e);
      } catch (err) {
        log.warn(`xds event listener failed: ${errorMessage(err)}`);
      }
    },
    held,
    sessionFinalizer: new FinalizationRegistry<undefined>(() => {
      held.sessionObjects--;
    }),
    types: new Map(),
    takeWarm() {
      const w = warm;
      warm = undefined;
      if (w) clearTimeout(w.idle);
      return w;
    },
    unregister(s) {
      active.delete(s);
      if (handover?.waitingFor.delete(s) && handover.waitingFor.size === 0) endHandover("the previous epoch's streams ended");
    },
  };

  function endHandover(why: string): void {
    if (!handover) return;
    clearTimeout(handover.timer);
    handover = undefined;
    log.info(`hot-restart hand-over ended (${why}): a new Envoy stream closes the previous one again`);
  }

  function beginHandover(windowMs: number): void {
    if (!Number.isFinite(windowMs) || windowMs <= 0) throw new AgentError('AGENT_ERR_XDS', `hand-over window must be a positive number of milliseconds, got ${windowMs}`);
    const ms = Math.min(Math.ceil(windowMs), MAX_TIMER_MS);
    const waitingFor = new Set([...(handover?.waitingFor ?? []), ...active]);
    if (handover) clearTimeout(handover.timer);
    const timer = setTimeout(() => endHandover(`${ms}ms window elapsed`), ms);
    timer.unref();
    handover = { until: Date.now() + ms, timer, waitingFor };
    log.info(
      `hot-restart hand-over: a new Envoy stream keeps the open ones for up to ${ms}ms` +
        (waitingFor.size ? `, or until the ${waitingFor.size} open now have ended` : ''),
    );
  }

  const handle = (delta: boolean) => (down: ServerCall) => {
    if (state !== 'serving') {
      down.end(Status.UNAVAILABLE, 'xds proxy is shutting down');
      return;
    }
    const s = new Session(core, ++nextId, delta, down);
    core.counts.streams++;
    log.debug(`accepted ${delta ? 'delta ' : ''}XDS connection from Envoy, forwarding to upstream XDS server`, { id: s.id });
    if (exclusive && !handover) {
      for (const prev of [...active]) {
        log.warn('registered overlapping stream; closing previous', { id: s.id, previous: prev.id });
        prev.finish({ code: Status.OK, details: 'OK' });
      }
    } else if (exclusive && active.size > 0) {
      log.info('registered overlapping stream during a hot-restart hand-over; keeping the previous', { id: s.id, previous: [...active].map((p) => p.id).join(',') });
    }
    active.add(s);
    s.run();
  };

  /** The connection opened at start, until the first stream takes it (see `preconnect`). */
  let warm: (WarmUpstream & { idle: NodeJS.Timeout }) | undefined;
  function preconnect(): void {
    // a failure here shows when the first stream takes it: it then dials again, and reports that attempt
    const channel = openUpstreamChannel(cfg, log).catch(() => openUpstreamChannel(cfg, log));
    channel.catch(() => undefined);
    const idle = setTimeout(() => {
      if (warm?.channel !== channel) return;
      warm = undefined;
      void channel.then((ch) => ch.close(), () => undefined);
    }, opts.preconnectIdleMs ?? 30_000);
    idle.unref();
    // the call metadata is read now too: the token it carries is at most preconnectIdleMs old when used
    // (the kubelet replaces a projected token long before it expires, and the old one stays valid)
    const metadata = upstreamMetadata(cfg, log);
    metadata.catch(() => undefined);
    warm = { channel, metadata, idle };
  }

  async function start(): Promise<void> {
    if (state !== 'new') throw new AgentError('AGENT_ERR_XDS', 'xds proxy already started');
    state = 'starting';
    log.info(`Initializing with upstream address "${cfg.discoveryAddress}" and cluster "${cfg.clusterId}"`);
    const srv = createGrpcH2Server({
      routes: { [SOTW_METHOD]: handle(false), [DELTA_METHOD]: handle(true) },
      maxConcurrentStreams: opts.maxConcurrentStreams ?? 100_000,
      maxRecvBytes: opts.maxDownstreamRecvBytes ?? 4 * 1024 * 1024,
      keepaliveTimeMs: cfg.keepaliveTimeMs,
      keepaliveTimeoutMs: cfg.keepaliveTimeoutMs,
    });
    server = srv;
    try {
      listener = opts.listener ?? (await listenUds(opts.udsPath, opts.processCwd ?? process.cwd(), socketMode));
    } catch (e) {
      state = 'closed';
      throw new AgentError('AGENT_ERR_XDS', `failed to listen on unix socket "${opts.udsPath}": ${errorMessage(e)}`, { cause: e });
    }
    state = 'serving';
    if (opts.preconnect) preconnect();
    listener.adopt((socket) => srv.adopt(socket));
    log.info(`xds proxy listening on ${opts.udsPath} (mode 0${socketMode.toString(8)})`);
  }

  async function doClose(): Promise<void> {
    const wasServing = state === 'serving' || state === 'starting';
    state = 'closing';
    if (handover) {
      clearTimeout(handover.timer);
      handover = undefined;
    }
    for (const s of [...active]) s.finish({ code: Status.UNAVAILABLE, details: 'xds proxy is shutting down' });
    void core.takeWarm()?.channel.then((ch) => ch.close(), () => undefined);
    const srv = server;
    if (srv && wasServing) await srv.shutdown(closeTimeoutMs);
    await (listener ?? opts.listener)?.close();
    state = 'closed';
  }

  return {
    udsPath: opts.udsPath,
    start,
    close(): Promise<void> {
      closing ??= doClose();
      return closing;
    },
    beginHandover,
    endHandover(): void {
      endHandover('ended by the agent');
    },
    reportHealth(h: HealthReport): void {
      lastHealth = h.healthy ? { healthy: true } : { healthy: false, message: h.message };
      for (const s of active) s.sendHealth(lastHealth);
    },
    getStatus(): XdsProxyStatus {
      const s = newest();
      // own properties even for a type URL such as "__proto__" (type URLs come from the peers)
      const types: Record<string, XdsTypeStatus> = Object.fromEntries([...core.types].map(([k, v]) => [k, { ...v }]));
      let queuedRequests = 0;
      for (const a of active) queuedRequests += a.queuedRequests;
      return {
        udsPath: opts.udsPath,
        upstreamAddress: cfg.discoveryAddress,
        tls: cfg.tls !== null,
        listening: state === 'serving',
        connected: s?.isUpstreamReady() ?? false,
        activeStreams: active.size,
        ...(s ? { stream: { id: s.id, flavour: s.flavour, startedAt: s.startedAt.toISOString(), upstreamState: s.upstreamState() } } : {}),
        types,
        counts: { ...core.counts },
        ...(s && s.awaitingAnswer.length ? { awaitingAnswer: s.awaitingAnswer } : {}),
        ...(core.lastError ? { lastError: { ...core.lastError } } : {}),
        ...(handover ? { handover: { until: new Date(handover.until).toISOString(), streams: handover.waitingFor.size } } : {}),
        resources: {
          sessions: active.size,
          sessionObjects: core.held.sessionObjects,
          upstreamChannels: core.held.upstreamChannels,
          sendTimers: core.held.sendTimers,
          queuedRequests,
          trackedTypes: core.types.size,
        },
      };
    },
  };
}
