// The SDS server Envoy's `sds-grpc` cluster talks to: `envoy.service.secret.v3.SecretDiscoveryService` on
// ./var/run/secrets/workload-spiffe-uds/socket (owner-only), State-of-the-World StreamSecrets with
// pilot-agent's version, nonce, ACK/NACK and push rules (sds-protocol.ts); DeltaSecrets and FetchSecrets
// answer UNIMPLEMENTED as pilot-agent's do. Each stream handles its requests and pushes one at a time, in
// order. Where pilot-agent closes the stream when a secret cannot be made, we do too for file secrets
// (Envoy retries), but a request for the workload certificate waits for the CA instead of failing: the
// answer comes as soon as the certificate does, and a CA outage never breaks an established stream.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createGrpcH2Server, type GrpcH2Server, type ServerCall } from '../lib/grpc-h2/server.js';
import { Code as Status } from '../lib/grpc-h2/status.js';
import { AgentError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { listenUds, type UdsListener } from '../lib/uds.js';
import type { SecretItem } from './cache.js';
import type { IdentityMetrics } from './metrics.js';
import { isRootResource } from './resources.js';
import { HEALTH_INFO_TYPE_URL, decodeDiscoveryRequest, encodeSecret, encodeSecretResponse, type PrivateKeyProviderConfig, type SecretMessage } from './sds-messages.js';
import { decide, type Watch } from './sds-protocol.js';

export const SDS_SERVICE = 'envoy.service.secret.v3.SecretDiscoveryService';
/** Where Istio's plugged-in CA puts its CRL (pilot-agent adds it to every trust bundle when present). */
export const CA_CRL_FILE = '/var/run/secrets/istio/crl/ca-crl.pem';

export interface SecretSource {
  generateSecret(name: string): Promise<SecretItem>;
  onUpdate(listener: (name: string) => void): () => void;
}

export interface SdsServerOptions {
  /** Absolute socket path. */
  readonly socketPath: string;
  /**
   * The socket, already listening at `socketPath` (lib/uds.ts listenUds, bound before gRPC is loaded so
   * that Envoy can be started early); bound by `start` when absent. Closed (and removed) by `close`.
   */
  readonly listener?: UdsListener;
  readonly source: SecretSource;
  /** Scope `sds`. */
  readonly log: Logger;
  /** Scope `ads` (stream events, as pilot-agent logs them). */
  readonly adsLog: Logger;
  readonly metrics: IdentityMetrics;
  /** The OS bundle `file-root:system` stands for ('' = none). */
  readonly osRootCertPath: string;
  readonly keyProvider?: PrivateKeyProviderConfig;
  /** PILOT_ENABLE_CA_CRL; the CRL file is checked at every response. */
  readonly crlEnabled: boolean;
  readonly crlPath?: string;
  /** The agent only serves file certificates (another SDS server owns the workload socket). */
  readonly filesOnly?: boolean;
  /** Largest request accepted from Envoy (default 4 MiB). */
  readonly maxRecvBytes?: number;
  readonly processCwd?: string;
  readonly closeTimeoutMs?: number;
}

export interface SdsStatus {
  readonly socketPath: string;
  readonly listening: boolean;
  readonly streams: ReadonlyArray<{ readonly id: string; readonly resources: readonly string[]; readonly nonceSent: string; readonly nonceAcked: string; readonly lastError?: string; readonly responses: number }>;
  readonly counts: { readonly streams: number; readonly responses: number; readonly nacks: number; readonly rejected: number };
}

export interface SdsServer {
  readonly socketPath: string;
  start(): Promise<void>;
  close(): Promise<void>;
  status(): SdsStatus;
}

class StreamError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export function createSdsServer(o: SdsServerOptions): SdsServer {
  const { log, adsLog, metrics } = o;
  const streams = new Set<SdsStream>();
  const counts = { streams: 0, responses: 0, nacks: 0, rejected: 0 };
  /** The largest request received (istio_agent_pilot_xds_recv_max). */
  let recvMax = 0;
  let server: GrpcH2Server | undefined;
  let listener: UdsListener | undefined;
  let state: 'new' | 'serving' | 'closing' | 'closed' = 'new';
  let closing: Promise<void> | undefined;
  let unsubscribe: (() => void) | undefined;
  let versionCounter = 0;
  let connectionCounter = 0;

  /** pilot-agent's toEnvoySecret. */
  function toMessage(item: SecretItem): SecretMessage {
    if (isRootResource(item.resourceName, o.osRootCertPath)) {
      const crl = o.crlEnabled && existsSync(o.crlPath ?? CA_CRL_FILE) ? o.crlPath ?? CA_CRL_FILE : undefined;
      return { name: item.resourceName, kind: 'validation', trustedCa: item.rootCert ?? '', ...(crl ? { crlFilename: crl } : {}) };
    }
    return { name: item.resourceName, kind: 'tls', certificateChain: item.certificateChain ?? '', privateKey: item.privateKey ?? '', ...(o.keyProvider ? { keyProvider: o.keyProvider } : {}) };
  }

  /** version_info as pilot-agent makes it: RFC 3339 time (seconds) + "/" + a process-wide counter. */
  function nextVersion(): string {
    return `${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}/${++versionCounter}`;
  }

  class SdsStream {
    id = '';
    readonly st: { watch: Watch | undefined } = { watch: undefined };
    private queue: Promise<void> = Promise.resolve();
    private closed = false;
    responses = 0;

    constructor(private readonly call: ServerCall) {}

    run(): void {
      this.call.start({
        // a copy: the request is decoded later, in turn, and the view points into the connection's buffer
        onMessage: (buf) => {
          const req = Buffer.from(buf);
          this.enqueue(() => this.onRequest(req));
        },
        onHalfClose: () => this.close(),
        onCancel: () => this.close(),
        onInvalid: (st) => {
          adsLog.warn(`ADS: "${this.id}" SDS request rejected: ${st.details}`);
          counts.rejected++;
          metrics.sdsRejectedRequests.inc({ reason: 'malformed' });
          this.close();
        },
      });
    }

    push(name: string): void {
      if (this.id === '') return;
      this.enqueue(async () => {
        if (this.st.watch?.names.has(name)) await this.respond([name]);
      });
    }

    private enqueue(step: () => Promise<void>): void {
      this.queue = this.queue.then(async () => {
        if (this.closed) return;
        try {
          await step();
        } catch (e) {
          const err = e instanceof StreamError ? e : new StreamError(Status.UNKNOWN, errorMessage(e));
          adsLog.warn(`ADS: "${this.id}" SDS terminated with error: ${err.message}`);
          this.fail(err);
        }
      });
    }

    private async onRequest(buf: Buffer): Promise<void> {
      if (buf.length > recvMax) {
        recvMax = buf.length;
        metrics.xdsRecvMax.set(recvMax);
      }
      let req;
      try {
        req = decodeDiscoveryRequest(buf);
      } catch (e) {
        counts.rejected++;
        metrics.sdsRejectedRequests.inc({ reason: 'malformed' });
        throw new StreamError(Status.INVALID_ARGUMENT, `malformed DiscoveryRequest: ${errorMessage(e)}`);
      }
      if (req.typeUrl === HEALTH_INFO_TYPE_URL) {
        log.warn('ignoring health check request on the SDS stream');
        return;
      }
      if (this.id === '') {
        if (!req.nodeId) {
          counts.rejected++;
          metrics.sdsRejectedRequests.inc({ reason: 'missing_node' });
          throw new StreamError(Status.INVALID_ARGUMENT, 'missing node information');
        }
        this.id = String(++connectionCounter);
        streams.add(this);
        counts.streams++;
        adsLog.info(`ADS: new connection for node:${this.id}`);
      }
      const d = decide(this.st, req);
      switch (d.kind) {
        case 'nack':
          counts.nacks++;
          metrics.xdsRejects.inc({ type: 'sds' });
          adsLog.warn(`ADS:SDS: ACK ERROR ${this.id} ${req.errorDetail?.code ?? 0}:${d.message}`);
          return;
        case 'stale':
          metrics.xdsExpiredNonce.inc({ type: 'sds' });
          adsLog.debug(`ADS:SDS: REQ ${this.id} Expired nonce received ${req.responseNonce}, sent ${this.st.watch?.nonceSent ?? ''}`);
          return;
        case 'unsubscribe':
        case 'ack':
          return;
        case 'init':
        case 'added':
          await this.respond(d.names);
      }
    }

    private async respond(names: readonly string[]): Promise<void> {
      const secrets: Buffer[] = [];
      for (const name of names) {
        let item: SecretItem;
        try {
          item = await o.source.generateSecret(name);
        } catch (e) {
          throw new StreamError(Status.UNKNOWN, `failed to generate secret for ${name}: ${errorMessage(e)}`);
        }
        secrets.push(encodeSecret(toMessage({ ...item, resourceName: name })));
      }
      if (this.closed) return;
      const nonce = randomUUID();
      const body = encodeSecretResponse(nextVersion(), nonce, secrets);
      const t0 = process.hrtime.bigint();
      await new Promise<void>((resolve) => {
        this.call.write(body, (err?: Error) => {
          if (!err && this.st.watch) this.st.watch.nonceSent = nonce;
          resolve();
        });
      });
      metrics.xdsSendTime.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      this.responses++;
      counts.responses++;
      log.debug(`SDS: PUSH for node:${this.id} resources:${names.length}`, { resources: names.join(',') });
    }

    private fail(err: StreamError): void {
      if (this.closed) return;
      this.close();
      this.call.end(err.code, err.message);
    }

    close(): void {
      if (this.closed) return;
      this.closed = true;
      streams.delete(this);
    }

    end(code: number, details: string): void {
      this.fail(new StreamError(code, details));
    }

    view(): SdsStatus['streams'][number] {
      const w = this.st.watch;
      return { id: this.id, resources: w ? [...w.names] : [], nonceSent: w?.nonceSent ?? '', nonceAcked: w?.nonceAcked ?? '', ...(w?.lastError ? { lastError: w.lastError } : {}), responses: this.responses };
    }
  }

  async function start(): Promise<void> {
    if (state !== 'new') throw new AgentError('AGENT_ERR_IO', 'SDS server already started');
    const srv = createGrpcH2Server({
      maxRecvBytes: o.maxRecvBytes ?? 4 * 1024 * 1024,
      routes: {
        [`/${SDS_SERVICE}/StreamSecrets`]: (call) => {
          if (state !== 'serving') {
            call.end(Status.UNAVAILABLE, 'SDS server is shutting down');
            return;
          }
          new SdsStream(call).run();
        },
        [`/${SDS_SERVICE}/DeltaSecrets`]: (call) => call.end(Status.UNIMPLEMENTED, 'DeltaSecrets not implemented'),
        [`/${SDS_SERVICE}/FetchSecrets`]: (call) => call.end(Status.UNIMPLEMENTED, 'FetchSecrets not implemented'),
      },
    });
    server = srv;
    log.info('Starting SDS grpc server');
    try {
      listener = o.listener ?? (await listenUds(o.socketPath, o.processCwd ?? process.cwd()));
    } catch (e) {
      state = 'closed';
      throw new AgentError('AGENT_ERR_IO', `SDS grpc server for workload proxies failed to set up UDS: ${o.socketPath}: ${errorMessage(e)}`, { cause: e });
    }
    unsubscribe = o.source.onUpdate((name) => {
      for (const s of streams) s.push(name);
    });
    state = 'serving';
    listener.adopt((socket) => srv.adopt(socket));
    log.info(`Starting SDS server for ${o.filesOnly ? 'file certificates only' : 'workload certificates'}, will listen on "${o.socketPath}"`);
  }

  async function doClose(): Promise<void> {
    const wasServing = state === 'serving';
    state = 'closing';
    unsubscribe?.();
    for (const s of [...streams]) s.end(Status.UNAVAILABLE, 'SDS server is shutting down');
    if (server && wasServing) await server.shutdown(o.closeTimeoutMs ?? 2000);
    await (listener ?? o.listener)?.close();
    state = 'closed';
  }

  return {
    socketPath: o.socketPath,
    start,
    close() {
      closing ??= doClose();
      return closing;
    },
    status() {
      return { socketPath: o.socketPath, listening: state === 'serving', streams: [...streams].map((s) => s.view()), counts: { ...counts } };
    },
  };
}
