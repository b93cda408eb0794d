// A small but real xDS control plane for tests and the demo: ADS (State-of-the-World and Delta, with
// nonces, ACK/NACK and run-time pushes) and Istio's CA service (IstioCertificateService/CreateCertificate)
// on one gRPC server, plain or TLS (serving certificate for istiod.istio-system.svc under a test root).
// It records what it received (stream metadata, requests, ACKs, NACKs, CSRs) for assertions.
// The CA can be made to misbehave (`caFault`: a gRPC error, a broken or wrong chain, no answer at all),
// can switch to another signing CA at run time (`setCa`: root rotation), and can be served alone
// (`caOnly`: no ADS service).
import type { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  Metadata,
  Server,
  ServerCredentials,
  loadPackageDefinition,
  status as Status,
  type GrpcObject,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceClientConstructor,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { CsrError, TestCa, freshSpki, type LeafOverrides } from './pki.js';
import { CLUSTER_TYPE, LISTENER_TYPE, Protos, ROUTE_TYPE, httpConfigMessages, resourceVersion, type HttpConfig, type Msg, type RawResource } from './resources.js';

export type Flavour = 'sotw' | 'delta';

export interface StreamRecord {
  readonly id: number;
  readonly flavour: Flavour;
  /** Request metadata, keys lower-cased as on the wire; multiple values joined with ", ". */
  readonly metadata: Readonly<Record<string, string>>;
  nodeId?: string;
  readonly openedAt: number;
  closedAt?: number;
}

export interface RequestRecord {
  readonly stream: number;
  readonly flavour: Flavour;
  readonly typeUrl: string;
  readonly nonce: string;
  readonly version: string;
  /** SotW resource_names, or Delta subscribe list. */
  readonly names: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly kind: 'initial' | 'ack' | 'nack' | 'stale' | 'subscribe';
  readonly error?: string;
}

export interface ResponseRecord {
  readonly stream: number;
  readonly typeUrl: string;
  readonly nonce: string;
  readonly version: string;
  readonly resources: readonly string[];
  readonly removed: readonly string[];
  readonly bytes: number;
}

export interface CsrRecord {
  readonly metadata: Readonly<Record<string, string>>;
  readonly validity: number;
  readonly certSigner?: string;
  /** Answered with a certificate chain (gRPC OK), even if a fault made it a bad one. */
  readonly ok: boolean;
  /** Why not (the status details sent), or what the fault did instead of answering. */
  readonly error?: string;
  /** URI SANs of the issued leaf. */
  readonly uris: readonly string[];
  /** The CSR as received (PEM text). */
  readonly csr: string;
  /** When the request arrived (ms since the epoch). */
  readonly receivedAt: number;
  /** The fault applied to this request (`describeCaFault`), if any. */
  readonly fault?: string;
  /** Serial number of the issued leaf, hex upper case as X509Certificate.serialNumber writes it. */
  readonly serial?: string;
  /** When the chain was sent (ms since the epoch). */
  readonly issuedAt?: number;
  /** The issued leaf's NotAfter (ms since the epoch). */
  readonly notAfter?: number;
  /** The cert_chain answered. */
  readonly chain?: readonly string[];
}

/**
 * How the CA misbehaves (ControlPlane.caFault); undefined = it signs normally.
 *   { kind: 'status', code, details }  answers that gRPC status (e.g. PERMISSION_DENIED, UNAVAILABLE)
 *   'garbage'         cert_chain of strings that are not PEM
 *   'single'          only the leaf (no intermediate, no root)
 *   'other-identity'  a valid chain for INTRUDER_SPIFFE_ID, with the CSR's key
 *   'other-key'       a valid chain for the CSR's identity, for a freshly generated key
 *   'expired'         a valid chain whose leaf's validity ended an hour ago
 *   'hang'            never answers (the client's deadline ends the call)
 * A token check (requireToken) still comes first.
 */
export type CaFault =
  | { readonly kind: 'status'; readonly code: number; readonly details?: string }
  | 'garbage'
  | 'single'
  | 'other-identity'
  | 'other-key'
  | 'expired'
  | 'hang';

export const CA_FAULT_MODES = ['garbage', 'single', 'other-identity', 'other-key', 'expired', 'hang'] as const;
export const INTRUDER_SPIFFE_ID = 'spiffe://cluster.local/ns/other/sa/intruder';
/** cert_chain of the 'garbage' fault. */
export const GARBAGE_CHAIN: readonly string[] = ['this is not a certificate', 'neither is this'];

function statusName(code: number): string {
  return (Status as unknown as Record<number, string | undefined>)[code] ?? String(code);
}

/** `status:PERMISSION_DENIED:no identities`, `garbage`, ... (what parseCaFault reads). */
export function describeCaFault(f: CaFault): string {
  return typeof f === 'string' ? f : `status:${statusName(f.code)}${f.details !== undefined ? `:${f.details}` : ''}`;
}

/**
 * Reads a fault as the CLI takes it: `none`, one of CA_FAULT_MODES, or `status:CODE[:DETAILS]` where CODE
 * is a gRPC code name (PERMISSION_DENIED, permission-denied) or number. Throws on anything else.
 */
export function parseCaFault(text: string): CaFault | undefined {
  if (text === 'none' || text === '') return undefined;
  if ((CA_FAULT_MODES as readonly string[]).includes(text)) return text as CaFault;
  const m = /^status:([^:]+)(?::(.*))?$/s.exec(text);
  if (!m) throw new Error(`unknown CA fault "${text}" (none, ${CA_FAULT_MODES.join(', ')}, status:CODE[:DETAILS])`);
  const codeText = m[1]!;
  let code: number | undefined;
  if (/^\d+$/.test(codeText)) code = Number(codeText);
  else code = (Status as unknown as Record<string, number | undefined>)[codeText.toUpperCase().replace(/-/g, '_')];
  if (code === undefined || code <= 0 || code > 16 || !Number.isInteger(code)) throw new Error(`CA fault "${text}": "${codeText}" is not a gRPC error code`);
  return { kind: 'status', code, ...(m[2] !== undefined ? { details: m[2] } : {}) };
}

export interface ControlPlaneOptions {
  /** host:port to listen on (default 127.0.0.1:0 = any free port). */
  readonly address?: string;
  /** Serve TLS with a certificate for `tlsDnsNames` (default istiod.istio-system.svc, istiod.istio-system, istiod). */
  readonly tls?: boolean;
  readonly tlsDnsNames?: readonly string[];
  /** Write the CA root certificate here (e.g. the agent's ./var/run/secrets/istio/root-cert.pem). */
  readonly rootCertOut?: string;
  /** When set, ADS streams and CSRs must carry `authorization: Bearer <requireToken>` (else UNAUTHENTICATED). */
  readonly requireToken?: string;
  /** The CA to use (keep one across restarts so roots stay valid); default: a new one. */
  readonly ca?: TestCa;
  /** Initial CA fault (see CaFault); can be changed at run time with `caFault`. */
  readonly caFault?: CaFault;
  /** Serve only the CA service (no ADS): to run the CA as its own process, as a standalone Citadel. */
  readonly caOnly?: boolean;
  /** Initial listener/route/cluster. */
  readonly http?: HttpConfig;
}

interface SotwTypeState {
  names: string[];
  nonce: string;
  version: string;
}

interface DeltaTypeState {
  wildcard: boolean;
  subscribed: Set<string>;
  known: Map<string, string>;
  nonce: string;
}

interface ServedResource {
  readonly name: string;
  readonly version: string;
  readonly value: Buffer;
}

/** Marks, in a Delta stream's known versions, a name the client was told does not exist. */
const ABSENT = '\u0000absent';

function metadataRecord(md: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = Buffer.isBuffer(v) ? v.toString('base64') : String(v);
  for (const k of Object.keys(out)) {
    const all = md.get(k);
    if (all.length > 1) out[k] = all.map(String).join(', ');
  }
  return out;
}

class AdsStream {
  readonly sotw = new Map<string, SotwTypeState>();
  readonly delta = new Map<string, DeltaTypeState>();
  private nonceCounter = 0;
  constructor(
    readonly record: StreamRecord,
    readonly call: ServerDuplexStream<Msg, Msg>,
  ) {}
  nextNonce(): string {
    return `${this.record.id}-${++this.nonceCounter}`;
  }
}

export class ControlPlane extends EventEmitter {
  readonly protos = new Protos();
  /** How the CA answers CSRs from now on (undefined = normally). */
  caFault: CaFault | undefined;
  private currentCa: TestCa;
  readonly streams: StreamRecord[] = [];
  readonly requests: RequestRecord[] = [];
  readonly responses: ResponseRecord[] = [];
  readonly csrs: CsrRecord[] = [];
  private readonly resources = new Map<string, Map<string, ServedResource>>();
  private readonly typeVersions = new Map<string, number>();
  private readonly active = new Set<AdsStream>();
  private server: Server | undefined;
  private streamIds = 0;
  private boundPort = 0;

  constructor(private readonly opts: ControlPlaneOptions = {}) {
    super();
    this.currentCa = opts.ca ?? new TestCa();
    this.caFault = opts.caFault;
    if (opts.http) this.setHttpConfig(opts.http);
  }

  /** The CA signing workload certificates now. */
  get ca(): TestCa {
    return this.currentCa;
  }

  /**
   * Signs with `ca` from now on (root rotation): new workload chains end at its root. The TLS serving
   * certificate and the root written to `rootCertOut` stay those of the CA the server started with, so
   * clients keep connecting as before.
   */
  setCa(ca: TestCa): void {
    this.currentCa = ca;
    this.emit('event');
  }

  /** host:port the server listens on. */
  get address(): string {
    const host = (this.opts.address ?? '127.0.0.1:0').replace(/:\d+$/, '');
    return `${host}:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  get activeStreams(): number {
    return this.active.size;
  }

  async start(): Promise<void> {
    if (this.server) throw new Error('control plane already started');
    if (this.opts.rootCertOut) {
      await mkdir(dirname(this.opts.rootCertOut), { recursive: true });
      await writeFile(this.opts.rootCertOut, this.ca.rootCertPem);
    }
    const grpcObj = loadPackageDefinition(this.protos.pkg);
    const svc = (path: string): ServiceClientConstructor =>
      path.split('.').reduce<unknown>((o, k) => (o as GrpcObject)[k], grpcObj) as ServiceClientConstructor;
    const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': -1 });
    if (!this.opts.caOnly) {
      server.addService(svc('envoy.service.discovery.v3.AggregatedDiscoveryService').service, {
        StreamAggregatedResources: (call: ServerDuplexStream<Msg, Msg>) => this.onStream(call, 'sotw'),
        DeltaAggregatedResources: (call: ServerDuplexStream<Msg, Msg>) => this.onStream(call, 'delta'),
      });
    }
    server.addService(svc('istio.v1.auth.IstioCertificateService').service, {
      CreateCertificate: (call: ServerUnaryCall<Msg, Msg>, cb: sendUnaryData<Msg>) => this.onCsr(call, cb),
    });
    let creds = ServerCredentials.createInsecure();
    if (this.opts.tls) {
      const serving = this.ca.issueServing(this.opts.tlsDnsNames ?? ['istiod.istio-system.svc', 'istiod.istio-system', 'istiod']);
      creds = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.chainPem) }], false);
    }
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(this.opts.address ?? '127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
  }

  /** Stops at once: every open stream is cancelled (clients see UNAVAILABLE/CANCELLED). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.forceShutdown();
    this.active.clear();
  }

  /** Ends every open ADS stream with `code` (default UNAVAILABLE), keeping the server up. */
  closeStreams(code: number = Status.UNAVAILABLE, details = 'closed by test control plane'): void {
    for (const s of [...this.active]) {
      this.active.delete(s);
      s.call.emit('error', { code, details, metadata: new Metadata() });
    }
  }

  // ---- resources ----

  /** Replaces every resource of `typeUrl` with `resources` (raw encoded messages) and pushes to subscribers. */
  setResources(typeUrl: string, resources: readonly RawResource[]): void {
    const m = new Map<string, ServedResource>();
    for (const r of resources) m.set(r.name, { name: r.name, version: resourceVersion(r.value), value: r.value });
    this.resources.set(typeUrl, m);
    this.typeVersions.set(typeUrl, (this.typeVersions.get(typeUrl) ?? 0) + 1);
    for (const s of this.active) this.push(s, typeUrl);
  }

  /** setResources from proto-shaped objects of the type named by `typeUrl`. */
  setMessages(typeUrl: string, msgs: readonly Msg[]): void {
    this.setResources(typeUrl, this.protos.encodeResources(typeUrl, msgs));
  }

  /** Serves a listener on `listenerPort` routing everything to the HTTP upstream on `upstreamPort`. */
  setHttpConfig(c: HttpConfig): void {
    const m = httpConfigMessages(this.protos, c);
    // Clusters first, then routes, then listeners: what Envoy needs before what refers to it.
    this.setMessages(CLUSTER_TYPE, m.clusters);
    this.setMessages(ROUTE_TYPE, m.routes);
    this.setMessages(LISTENER_TYPE, m.listeners);
  }

  resourceNames(typeUrl: string): string[] {
    return [...(this.resources.get(typeUrl)?.keys() ?? [])];
  }

  /** Resolves with the first value `pick` returns (checked now and on every event), or rejects after timeoutMs. */
  waitFor<T>(what: string, pick: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        const v = pick();
        if (v === undefined || v === false) return false;
        cleanup();
        resolve(v);
        return true;
      };
      const onEvent = (): void => void check();
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`control plane: timed out after ${timeoutMs}ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
      };
      this.on('event', onEvent);
      check();
    });
  }

  // ---- ADS ----

  private authorized(md: Metadata): boolean {
    if (this.opts.requireToken === undefined) return true;
    return md.get('authorization').map(String).includes(`Bearer ${this.opts.requireToken}`);
  }

  private onStream(call: ServerDuplexStream<Msg, Msg>, flavour: Flavour): void {
    const record: StreamRecord = { id: ++this.streamIds, flavour, metadata: metadataRecord(call.metadata), openedAt: Date.now() };
    this.streams.push(record);
    if (!this.authorized(call.metadata)) {
      record.closedAt = Date.now();
      this.emit('event');
      call.emit('error', { code: Status.UNAUTHENTICATED, details: 'authentication failure', metadata: new Metadata() });
      return;
    }
    const s = new AdsStream(record, call);
    this.active.add(s);
    const done = (): void => {
      if (record.closedAt === undefined) record.closedAt = Date.now();
      this.active.delete(s);
      this.emit('event');
    };
    call.on('data', (req: Msg) => {
      try {
        if (flavour === 'sotw') this.onSotwRequest(s, req);
        else this.onDeltaRequest(s, req);
      } catch (e) {
        this.active.delete(s);
        call.emit('error', { code: Status.INTERNAL, details: `control plane: ${(e as Error).message}`, metadata: new Metadata() });
      }
    });
    call.on('end', () => {
      done();
      if (!call.writableEnded) call.end();
    });
    call.on('cancelled', done);
    call.on('close', done);
    call.on('error', done);
    this.emit('event');
  }

  private noteNode(s: AdsStream, req: Msg): void {
    const node = req.node as { id?: string } | undefined;
    if (node?.id && !s.record.nodeId) s.record.nodeId = node.id;
  }

  private recordRequest(r: RequestRecord): void {
    this.requests.push(r);
    this.emit('event');
  }

  private onSotwRequest(s: AdsStream, req: Msg): void {
    this.noteNode(s, req);
    const typeUrl = String(req.type_url ?? '');
    const nonce = String(req.response_nonce ?? '');
    const names = ((req.resource_names as string[] | undefined) ?? []).slice();
    const err = req.error_detail as { message?: string } | undefined;
    const st = s.sotw.get(typeUrl);
    const base = { stream: s.record.id, flavour: 'sotw' as const, typeUrl, nonce, version: String(req.version_info ?? ''), names, unsubscribe: [] };
    if (nonce && (!st || nonce !== st.nonce)) {
      this.recordRequest({ ...base, kind: 'stale' });
      return;
    }
    if (nonce && err) {
      this.recordRequest({ ...base, kind: 'nack', error: err.message ?? '' });
      if (st) st.names = names;
      return;
    }
    const changed = !st || st.names.length !== names.length || st.names.some((n, i) => n !== names[i]);
    this.recordRequest({ ...base, kind: nonce ? (changed ? 'subscribe' : 'ack') : 'initial' });
    if (!nonce || changed) {
      s.sotw.set(typeUrl, { names, nonce: st?.nonce ?? '', version: st?.version ?? '' });
      this.push(s, typeUrl);
    }
  }

  private onDeltaRequest(s: AdsStream, req: Msg): void {
    this.noteNode(s, req);
    const typeUrl = String(req.type_url ?? '');
    const nonce = String(req.response_nonce ?? '');
    const sub = (req.resource_names_subscribe as string[] | undefined) ?? [];
    const unsub = (req.resource_names_unsubscribe as string[] | undefined) ?? [];
    const err = req.error_detail as { message?: string } | undefined;
    let st = s.delta.get(typeUrl);
    const initial = !st;
    if (!st) {
      st = { wildcard: sub.length === 0 || sub.includes('*'), subscribed: new Set(), known: new Map(), nonce: '' };
      const iv = (req.initial_resource_versions as Record<string, string> | undefined) ?? {};
      for (const [k, v] of Object.entries(iv)) st.known.set(k, v);
      s.delta.set(typeUrl, st);
    }
    for (const n of sub) if (n === '*') st.wildcard = true; else st.subscribed.add(n);
    for (const n of unsub) {
      if (n === '*') st.wildcard = false;
      else st.subscribed.delete(n);
      st.known.delete(n);
    }
    const base = { stream: s.record.id, flavour: 'delta' as const, typeUrl, nonce, version: '', names: sub, unsubscribe: unsub };
    let kind: RequestRecord['kind'];
    if (initial || !nonce) kind = initial ? 'initial' : 'subscribe';
    else if (nonce !== st.nonce) kind = 'stale';
    else if (err) kind = 'nack';
    else kind = sub.length || unsub.length ? 'subscribe' : 'ack';
    // error_detail is recorded whatever the kind (the agent's health reports carry one without a nonce)
    this.recordRequest({ ...base, kind, ...(err ? { error: err.message ?? '' } : {}) });
    if (kind === 'nack') return;
    this.push(s, typeUrl, initial);
  }

  private push(s: AdsStream, typeUrl: string, force = false): void {
    if (s.call.writableEnded || s.call.destroyed) return;
    const all = this.resources.get(typeUrl) ?? new Map<string, ServedResource>();
    const typeVersion = String(this.typeVersions.get(typeUrl) ?? 0);
    if (s.record.flavour === 'sotw') {
      const st = s.sotw.get(typeUrl);
      if (!st) return;
      // No names = wildcard (LDS/CDS, and the agent's own NDS/PCDS requests).
      const served = st.names.length === 0 ? [...all.values()] : st.names.flatMap((n) => (all.has(n) ? [all.get(n)!] : []));
      st.nonce = s.nextNonce();
      st.version = typeVersion;
      const resp = {
        version_info: typeVersion,
        type_url: typeUrl,
        nonce: st.nonce,
        resources: served.map((r) => ({ type_url: typeUrl, value: r.value })),
      };
      this.send(s, resp, { typeUrl, nonce: st.nonce, version: typeVersion, resources: served.map((r) => r.name), removed: [] });
      return;
    }
    const st = s.delta.get(typeUrl);
    if (!st) return;
    const inScope = (n: string): boolean => st.wildcard || st.subscribed.has(n);
    const changed = [...all.values()].filter((r) => inScope(r.name) && st.known.get(r.name) !== r.version);
    // Deleted resources the client has, and subscribed names that do not exist (told once).
    const candidates = new Set([...st.known.keys(), ...st.subscribed]);
    const removed = [...candidates].filter((n) => !all.has(n) && st.known.get(n) !== ABSENT);
    if (!force && changed.length === 0 && removed.length === 0) return;
    for (const r of changed) st.known.set(r.name, r.version);
    for (const n of removed) st.known.set(n, ABSENT);
    st.nonce = s.nextNonce();
    const resp = {
      system_version_info: typeVersion,
      type_url: typeUrl,
      nonce: st.nonce,
      resources: changed.map((r) => ({ name: r.name, version: r.version, resource: { type_url: typeUrl, value: r.value } })),
      removed_resources: removed,
    };
    this.send(s, resp, { typeUrl, nonce: st.nonce, version: typeVersion, resources: changed.map((r) => r.name), removed });
  }

  private send(s: AdsStream, resp: Msg, rec: Omit<ResponseRecord, 'stream' | 'bytes'>): void {
    const bytes = (rec.resources as string[]).reduce((n, name) => n + (this.resources.get(rec.typeUrl)?.get(name)?.value.length ?? 0), 0);
    s.call.write(resp);
    this.responses.push({ ...rec, stream: s.record.id, bytes });
    this.emit('event');
  }

  // ---- CA ----

  private onCsr(call: ServerUnaryCall<Msg, Msg>, cb: sendUnaryData<Msg>): void {
    const req = call.request;
    const metadata = metadataRecord(call.metadata);
    const validity = Number(req.validity_duration ?? 0);
    const csr = String(req.csr ?? '');
    // google.protobuf.* come from protobufjs's built-in descriptors, whose field names are camelCase.
    const fields = (req.metadata as { fields?: Record<string, { stringValue?: string }> } | undefined)?.fields;
    const certSigner = fields?.CertSigner?.stringValue;
    const base = { metadata, validity, csr, receivedAt: Date.now(), ...(certSigner !== undefined ? { certSigner } : {}) };
    const record = (r: Omit<CsrRecord, keyof typeof base>): void => {
      this.csrs.push({ ...base, ...r });
      this.emit('event');
    };
    if (!this.authorized(call.metadata)) {
      record({ ok: false, error: 'request authenticate failure', uris: [] });
      cb({ code: Status.UNAUTHENTICATED, details: 'request authenticate failure' });
      return;
    }
    const fault = this.caFault;
    const tag = fault !== undefined ? { fault: describeCaFault(fault) } : {};
    if (fault === 'hang') {
      record({ ...tag, ok: false, error: 'not answered (fault: hang)', uris: [] });
      return;
    }
    if (typeof fault === 'object') {
      const details = fault.details ?? `injected fault: ${statusName(fault.code)}`;
      record({ ...tag, ok: false, error: details, uris: [] });
      cb({ code: fault.code, details });
      return;
    }
    if (fault === 'garbage') {
      record({ ...tag, ok: true, uris: [], issuedAt: Date.now(), chain: GARBAGE_CHAIN });
      cb(null, { cert_chain: [...GARBAGE_CHAIN] });
      return;
    }
    const now = Date.now();
    const overrides: LeafOverrides =
      fault === 'other-identity'
        ? { uris: [INTRUDER_SPIFFE_ID] }
        : fault === 'other-key'
          ? { spki: freshSpki() }
          : fault === 'expired'
            ? { notBefore: new Date(now - 2 * 3600_000), notAfter: new Date(now - 3600_000) }
            : {};
    try {
      const { chain, leaf } = this.ca.issueLeaf(csr, validity, overrides);
      const answer = fault === 'single' ? chain.slice(0, 1) : chain;
      record({ ...tag, ok: true, uris: sanUris(leaf), serial: leaf.serialNumber, issuedAt: Date.now(), notAfter: Date.parse(leaf.validTo), chain: answer });
      cb(null, { cert_chain: answer });
    } catch (e) {
      const msg = (e as Error).message;
      record({ ...tag, ok: false, error: msg, uris: [] });
      cb({ code: e instanceof CsrError ? Status.INVALID_ARGUMENT : Status.INTERNAL, details: `CSR signing error (${msg})` });
    }
  }
}

/** URI SANs of a certificate, read back with node's own X.509 parser. */
function sanUris(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/** Creates and starts a control plane. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const cp = new ControlPlane(opts);
  await cp.start();
  return cp;
}
