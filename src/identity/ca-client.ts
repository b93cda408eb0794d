// Client of Istio's CA service, `istio.v1.auth.IstioCertificateService/CreateCertificate`, as pilot-agent's
// Citadel client: TLS to CA_ADDR (plaintext for a `:15010` address) with the root chosen at start-up and
// re-read for every connection, the bearer token re-read for every attempt, `ClusterID` and CA_HEADER_*
// metadata, the requested TTL and `CertSigner`. A failed call closes the connection so the next one is
// built afresh (a new root, a new client certificate). Transient failures are retried as pilot-agent's gRPC
// interceptor does (5 calls, 100 ms doubling, ±10 %); unlike pilot-agent, every attempt has a deadline.
import { setTimeout as sleep } from 'node:timers/promises';
import { GrpcConnection, unaryCall } from '../lib/grpc-h2/client.js';
import { Code as Status, type CallStatus } from '../lib/grpc-h2/status.js';
import { clientSecureContext, readAheadOrAgain, readCallMetadata, type CallMetadataRead, type ClientTls } from '../lib/grpc-credentials.js';
import type { Logger } from '../lib/log.js';
import { Writer, WT_LEN, forEachField } from '../lib/protowire.js';

export const CREATE_CERTIFICATE_METHOD = '/istio.v1.auth.IstioCertificateService/CreateCertificate';
/** The largest CA response we accept (a chain is a few KiB). */
export const MAX_CA_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Codes pilot-agent's retry interceptor retries (Canceled and DeadlineExceeded never are, in practice). */
const RETRIED_CODES = new Set<number>([Status.RESOURCE_EXHAUSTED, Status.ABORTED, Status.INTERNAL, Status.UNAVAILABLE]);
const MAX_CALLS = 5;

/** gRPC code names as grpc-go prints them (`rpc error: code = Unavailable desc = ...`). */
const CODE_NAMES: Record<number, string> = {
  0: 'OK', 1: 'Canceled', 2: 'Unknown', 3: 'InvalidArgument', 4: 'DeadlineExceeded', 5: 'NotFound', 6: 'AlreadyExists',
  7: 'PermissionDenied', 8: 'ResourceExhausted', 9: 'FailedPrecondition', 10: 'Aborted', 11: 'OutOfRange', 12: 'Unimplemented',
  13: 'Internal', 14: 'Unavailable', 15: 'DataLoss', 16: 'Unauthenticated',
};

export class CaCallError extends Error {
  constructor(
    /** gRPC status code, or -1 when the call could not be made (bad root file). */
    readonly code: number,
    /** What the CA said (the status message). */
    readonly details: string,
    message: string,
  ) {
    super(message);
    this.name = 'CaCallError';
  }
  /** Worth retrying soon: the CA may answer next time. Refusals (token, policy, request) are not. */
  get transient(): boolean {
    return this.code === -1 || !([Status.PERMISSION_DENIED, Status.UNAUTHENTICATED, Status.INVALID_ARGUMENT, Status.UNIMPLEMENTED, Status.FAILED_PRECONDITION] as readonly number[]).includes(this.code);
  }
  get codeName(): string {
    return this.code === -1 ? 'Setup' : (CODE_NAMES[this.code] ?? String(this.code));
  }
}

export interface CaClientOptions {
  /** host:port of the CA (CA_ADDR, else the discovery address). */
  readonly endpoint: string;
  /** null = plaintext (an endpoint ending in :15010). */
  readonly tls: ClientTls | null;
  readonly tokenPath: string | null;
  readonly clusterId: string;
  /** CA_HEADER_<K>=v as { K: v }. */
  readonly headers: Readonly<Record<string, string>>;
  /** ISTIO_META_CERT_SIGNER (always sent, even empty). */
  readonly certSigner: string;
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  /** Deadline of one attempt (default 30 s). */
  readonly callTimeoutMs?: number;
  /** Scope `citadelclient`. */
  readonly log: Logger;
  /** Scope `ca` (retry warnings). */
  readonly retryLog: Logger;
  /** Called before each retry (istio_agent_num_outgoing_retries{request_type="csr"}). */
  readonly onRetry?: () => void;
  /** For tests: the wait before retry n (default 100 ms × 2^n ± 10 %). */
  readonly retryDelayMs?: (attempt: number) => number;
}

/** How long the metadata read by prepare() is used for (the token in it stays valid far longer). */
const PREPARED_METADATA_MAX_AGE_MS = 30_000;

export interface CaClient {
  /** Sends the CSR; resolves to the `cert_chain` elements (leaf first) or rejects with a CaCallError. */
  sign(csrPem: string, validitySeconds: number): Promise<string[]>;
  /**
   * Opens the connection now (TLS handshake included) and reads the call's metadata (the bearer token), so
   * a CSR built meanwhile goes out at once.
   */
  prepare?(): void;
  close(): void;
}

/** IstioCertificateRequest{csr = 1, validity_duration = 3, metadata = 4 (Struct {"CertSigner": string})}. */
export function encodeCertificateRequest(csrPem: string, validitySeconds: number, certSigner: string): Buffer {
  const value = new Writer().presentString(3, certSigner); // google.protobuf.Value.string_value
  const entry = new Writer().string(1, 'CertSigner').message(2, value); // map<string, Value> entry
  const struct = new Writer().message(1, entry);
  return new Writer().string(1, csrPem).uint(3, validitySeconds).message(4, struct).finish();
}

/** IstioCertificateResponse.cert_chain (repeated string, field 1). */
export function decodeCertificateResponse(buf: Buffer): string[] {
  const chain: string[] = [];
  forEachField(buf, (f) => {
    if (f.field === 1 && f.wireType === WT_LEN) chain.push(buf.toString('utf8', f.start, f.end));
  });
  return chain;
}

/** Go's status error text, which operators grep for. */
function statusText(code: number, details: string): string {
  return `rpc error: code = ${CODE_NAMES[code] ?? code} desc = ${details}`;
}

export function createCaClient(o: CaClientOptions): CaClient {
  let client: GrpcConnection | undefined;
  let closed = false;
  const retryDelay = o.retryDelayMs ?? ((n: number) => 100 * 2 ** n * (0.9 + Math.random() * 0.2));

  let connecting: Promise<GrpcConnection> | undefined;
  /** The connection (one at a time: a CSR and prepare() share it); a new one once it failed or closed. */
  function connect(): Promise<GrpcConnection> {
    if (client && !client.usable) reconnect();
    connecting ??= (async () => {
      let secureContext;
      try {
        secureContext = o.tls ? await clientSecureContext(o.tls, o.log) : undefined;
      } catch (e) {
        connecting = undefined;
        throw new CaCallError(-1, (e as Error).message, `create certificate: ${(e as Error).message}`);
      }
      if (closed) throw new CaCallError(Status.CANCELLED, 'client closed', 'create certificate: the CA client is closed');
      try {
        client = new GrpcConnection({
          address: o.endpoint,
          tls: o.tls && secureContext ? { secureContext, serverName: o.tls.serverName } : null,
          ...(o.tls ? { authority: o.tls.serverName } : {}),
          keepaliveTimeMs: o.keepaliveTimeMs,
          keepaliveTimeoutMs: o.keepaliveTimeoutMs,
          windowBytes: 1024 * 1024,
        });
      } catch (e) {
        connecting = undefined;
        throw new CaCallError(-1, (e as Error).message, `create certificate: ${(e as Error).message}`);
      }
      return client;
    })();
    return connecting;
  }

  function reconnect(): void {
    const c = client;
    client = undefined;
    connecting = undefined;
    if (c) {
      c.close();
      o.log.info('recreated connection');
    }
  }

  const metadata = (): Promise<CallMetadataRead> => readCallMetadata({ clusterId: o.clusterId, headers: o.headers, headerKind: 'CA', tokenPath: o.tokenPath, log: o.log });

  /** The metadata prepare() read, for the next call within PREPARED_METADATA_MAX_AGE_MS (a large key may take long). */
  let prepared: { readonly atMs: number; readonly md: Promise<CallMetadataRead> } | undefined;
  const preparedFresh = (): boolean => prepared !== undefined && Date.now() - prepared.atMs < PREPARED_METADATA_MAX_AGE_MS;

  async function attempt(req: Buffer): Promise<string[]> {
    if (closed) throw new CaCallError(Status.CANCELLED, 'client closed', 'create certificate: the CA client is closed');
    // the token is read while the connection is made (or was, by prepare(); one that was not there then
    // is looked for again): on a busy start-up each of the file's reads waits for a turn of the event loop
    const mdRead = preparedFresh() ? readAheadOrAgain(prepared!.md, o.tokenPath, metadata) : metadata();
    prepared = undefined;
    mdRead.catch(() => undefined);
    const c = await connect();
    const { md } = await mdRead;
    const deadline = Date.now() + (o.callTimeoutMs ?? 30_000);
    try {
      return decodeCertificateResponse(await unaryCall(c, CREATE_CERTIFICATE_METHOD, md, req, { deadline, maxRecvBytes: MAX_CA_RESPONSE_BYTES }));
    } catch (e) {
      const st = e as Partial<CallStatus>;
      const code = typeof st.code === 'number' ? st.code : Status.UNKNOWN;
      const details = st.details ?? (e as Error).message;
      throw new CaCallError(code, details, `create certificate: ${statusText(code, details)}`);
    }
  }

  return {
    async sign(csrPem, validitySeconds) {
      const req = encodeCertificateRequest(csrPem, validitySeconds, o.certSigner);
      try {
        for (let n = 0; ; n++) {
          try {
            return await attempt(req);
          } catch (e) {
            const err = e as CaCallError;
            if (n + 1 >= MAX_CALLS || !RETRIED_CODES.has(err.code) || closed) throw err;
            const wait = retryDelay(n);
            o.retryLog.warn(`ca request failed, starting attempt ${n + 1} in ${Math.round(wait)}ms`);
            o.onRetry?.();
            await sleep(wait);
          }
        }
      } catch (e) {
        o.log.error(`failed to sign CSR: ${(e as Error).message}`);
        reconnect();
        throw e;
      }
    },
    prepare() {
      connect().catch(() => undefined); // dialled at once; the CSR's own call reports what is wrong
      if (!preparedFresh()) {
        prepared = { atMs: Date.now(), md: metadata() };
        prepared.md.catch(() => undefined);
      }
    },
    close() {
      closed = true;
      client?.close();
      client = undefined;
      connecting = undefined;
    },
  };
}
