// A gRPC ADS client that plays Envoy in tests: opens a SotW or Delta stream (to the proxy's Unix socket or
// anywhere), sends requests, and hands back decoded responses and the final status, each wait bounded.
import {
  credentials,
  loadPackageDefinition,
  type ClientDuplexStream,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { loadProtos } from '../../src/lib/proto.js';
import type { Msg } from '../controlplane/resources.js';

let adsCtor: ServiceClientConstructor | undefined;
function adsClientCtor(): ServiceClientConstructor {
  if (!adsCtor) {
    const obj = loadPackageDefinition(loadProtos(['envoy/service/discovery/v3/ads.proto']));
    adsCtor = ['envoy', 'service', 'discovery', 'v3', 'AggregatedDiscoveryService'].reduce<unknown>(
      (o, k) => (o as GrpcObject)[k],
      obj,
    ) as ServiceClientConstructor;
  }
  return adsCtor;
}

export const TEST_NODE = { id: 'sidecar~10.0.0.1~test.default~default.svc.cluster.local', cluster: 'test.default' };

export class AdsTestClient {
  private readonly responses: Msg[] = [];
  private readonly waiters: Array<() => void> = [];
  private finalStatus: StatusObject | undefined;
  private readonly client: InstanceType<ServiceClientConstructor>;
  readonly stream: ClientDuplexStream<Msg, Msg>;

  constructor(
    target: string,
    readonly flavour: 'sotw' | 'delta',
  ) {
    const Ctor = adsClientCtor();
    this.client = new Ctor(target, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    const method = flavour === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources';
    this.stream = (this.client as unknown as Record<string, () => ClientDuplexStream<Msg, Msg>>)[method]!.call(this.client);
    this.stream.on('data', (m: Msg) => {
      this.responses.push(m);
      this.wake();
    });
    this.stream.on('status', (s: StatusObject) => {
      this.finalStatus = s;
      this.wake();
    });
    this.stream.on('error', (e: ServiceError) => {
      this.finalStatus ??= { code: e.code, details: e.details, metadata: e.metadata };
      this.wake();
    });
  }

  /** Connects to a Unix socket path. */
  static uds(path: string, flavour: 'sotw' | 'delta'): AdsTestClient {
    return new AdsTestClient(`unix:${path}`, flavour);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private waitUntil<T>(what: string, pick: () => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): void => {
        let v: T | undefined;
        try {
          v = pick();
        } catch (e) {
          clearTimeout(timer);
          reject(e as Error);
          return;
        }
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
        } else this.waiters.push(check);
      };
      const timer = setTimeout(() => reject(new Error(`ads client: timed out after ${timeoutMs}ms waiting for ${what}`)), timeoutMs);
      check();
    });
  }

  send(req: Msg): void {
    this.stream.write(req);
  }

  /** Next response (optionally of a type), in arrival order. Rejects if the stream ends first. */
  next(typeUrl?: string, timeoutMs = 10_000): Promise<Msg> {
    return this.waitUntil(
      `a ${typeUrl ?? 'any'} response`,
      () => {
        const i = this.responses.findIndex((r) => !typeUrl || r.type_url === typeUrl);
        if (i >= 0) return this.responses.splice(i, 1)[0];
        if (this.finalStatus) throw new Error(`stream ended (${this.finalStatus.code} ${this.finalStatus.details}) while waiting for ${typeUrl ?? 'a response'}`);
        return undefined;
      },
      timeoutMs,
    );
  }

  /** All responses received and not yet taken. */
  pending(): Msg[] {
    return [...this.responses];
  }

  status(timeoutMs = 10_000): Promise<StatusObject> {
    return this.waitUntil('the stream status', () => this.finalStatus, timeoutMs);
  }

  get ended(): boolean {
    return this.finalStatus !== undefined;
  }

  /** SotW: request (or ACK when nonce given) for a type. */
  sotw(typeUrl: string, names: string[] = [], ack?: { version: string; nonce: string }, errorMessage?: string): void {
    this.send({
      node: TEST_NODE,
      type_url: typeUrl,
      resource_names: names,
      ...(ack ? { version_info: ack.version, response_nonce: ack.nonce } : {}),
      ...(errorMessage ? { error_detail: { code: 13, message: errorMessage } } : {}),
    });
  }

  /** Delta: subscribe (or ACK with nonce). */
  delta(typeUrl: string, subscribe: string[] = [], nonce?: string, errorMessage?: string, unsubscribe: string[] = []): void {
    this.send({
      node: TEST_NODE,
      type_url: typeUrl,
      resource_names_subscribe: subscribe,
      resource_names_unsubscribe: unsubscribe,
      ...(nonce ? { response_nonce: nonce } : {}),
      ...(errorMessage ? { error_detail: { code: 13, message: errorMessage } } : {}),
    });
  }

  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}
