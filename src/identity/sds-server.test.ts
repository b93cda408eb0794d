// The SDS server over its real Unix socket, with a grpc-js client standing in for Envoy; responses are
// decoded with Envoy's own protos. The cases are those of Istio's sdsservice_test.go (multiplexed,
// unknown, push, reconnect, unsubscribe, NACK, cryptomb) plus what we add: malformed requests are refused
// and counted, the socket is owner-only.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Metadata, credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { loadProtos, messageCodec } from '../lib/proto.js';
import { memoryLogger } from '../lib/log.js';
import type { SecretItem } from './cache.js';
import { identityMetrics } from './metrics.js';
import { SECRET_TYPE_URL } from './sds-messages.js';
import { createSdsServer, type SdsServer, type SecretSource } from './sds-server.js';

const pkg = loadProtos(['envoy/service/discovery/v3/discovery.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto']);
const Req = messageCodec(pkg, 'envoy.service.discovery.v3.DiscoveryRequest');
const Resp = messageCodec<any>(pkg, 'envoy.service.discovery.v3.DiscoveryResponse');
const Secret = messageCodec<any>(pkg, 'envoy.extensions.transport_sockets.tls.v3.Secret');

/** A secret store the test fills; a missing name fails like a missing file. */
class Store implements SecretSource {
  readonly items = new Map<string, SecretItem>();
  private readonly listeners = new Set<(n: string) => void>();
  async generateSecret(name: string): Promise<SecretItem> {
    const it = this.items.get(name) ?? (name.startsWith('file-') || name === 'ROOTCA' ? undefined : this.items.get('default'));
    if (!it) throw new Error(`no secret ${name}`);
    return { ...it, resourceName: name };
  }
  onUpdate(l: (n: string) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  set(name: string, item: Omit<SecretItem, 'resourceName'>, push = true): void {
    this.items.set(name, { resourceName: name, ...item });
    if (push) for (const l of this.listeners) l(name);
  }
}

interface Stream {
  send(names: string[], nonce?: string, extra?: Record<string, unknown>): void;
  next(ms?: number): Promise<any>;
  /** No response within `ms`. */
  quiet(ms?: number): Promise<void>;
  ended: Promise<ServiceError | 'end'>;
  close(): void;
}

void describe('SDS server', () => {
  let dir: string;
  let server: SdsServer;
  let client: Client;
  const store = new Store();
  const registry = new Registry();
  const metrics = identityMetrics(registry);
  const { log } = memoryLogger('default:debug');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sds-'));
    server = createSdsServer({ socketPath: join(dir, 'workload-spiffe-uds/socket'), source: store, log: log.scope('sds'), adsLog: log.scope('ads'), metrics, osRootCertPath: '', crlEnabled: true, crlPath: join(dir, 'no-crl.pem') });
    await server.start();
    client = new Client(`unix:${join(dir, 'workload-spiffe-uds/socket')}`, credentials.createInsecure());
    store.set('default', { certificateChain: 'CHAIN-1', privateKey: 'KEY-1' }, false);
    store.set('ROOTCA', { rootCert: 'ROOT-1' }, false);
  });
  after(async () => {
    client.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  function open(nodeId = 'sidecar~10.0.0.1~sleep-0.default~default.svc.cluster.local'): Stream {
    const call: ClientDuplexStream<Buffer, Buffer> = client.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', (b: Buffer) => b, (b: Buffer) => b, new Metadata());
    const queue: any[] = [];
    const waiters: Array<(v: any) => void> = [];
    call.on('data', (b: Buffer) => {
      const r = Resp.decode(b);
      const w = waiters.shift();
      if (w) w(r);
      else queue.push(r);
    });
    const ended = new Promise<ServiceError | 'end'>((resolve) => {
      call.on('error', (e: ServiceError) => resolve(e));
      call.on('end', () => resolve('end'));
    });
    let first = true;
    return {
      send(names, nonce = '', extra = {}) {
        call.write(Req.encode({ ...(first && nodeId ? { node: { id: nodeId } } : {}), resource_names: names, type_url: SECRET_TYPE_URL, response_nonce: nonce, ...extra }));
        first = false;
      },
      next(ms = 3000) {
        if (queue.length) return Promise.resolve(queue.shift());
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no response')), ms);
          waiters.push((v) => {
            clearTimeout(t);
            resolve(v);
          });
        });
      },
      async quiet(ms = 300) {
        await new Promise((r) => setTimeout(r, ms));
        assert.equal(queue.length, 0, `unexpected response: ${JSON.stringify(queue[0]?.resources?.length)}`);
      },
      ended,
      close: () => call.cancel(),
    };
  }

  const names = (r: any): string[] => r.resources.map((a: any) => Secret.decode(a.value).name);

  void it('answers an initial request with every name; an ACK gets nothing; adding a name answers only the added one (multiplexed)', async () => {
    const s = open();
    s.send(['default']);
    const r1 = await s.next();
    assert.equal(r1.type_url, SECRET_TYPE_URL);
    assert.match(r1.version_info, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\/\d+$/);
    assert.match(r1.nonce, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(r1.resources[0].type_url, SECRET_TYPE_URL);
    const secret = Secret.decode(r1.resources[0].value);
    assert.equal(secret.name, 'default');
    assert.equal(secret.tls_certificate.certificate_chain.inline_bytes.toString(), 'CHAIN-1');
    assert.equal(secret.tls_certificate.private_key.inline_bytes.toString(), 'KEY-1');
    s.send(['default'], r1.nonce);
    await s.quiet();
    s.send(['default', 'ROOTCA'], r1.nonce);
    const r2 = await s.next();
    assert.deepEqual(names(r2), ['ROOTCA']);
    const root = Secret.decode(r2.resources[0].value);
    assert.equal(root.validation_context.trusted_ca.inline_bytes.toString(), 'ROOT-1');
    assert.equal(root.validation_context.crl, undefined, 'no CRL file, no crl');
    assert.ok(Number(r2.version_info.split('/')[1]) > Number(r1.version_info.split('/')[1]), 'versions count up');
    s.send(['default', 'ROOTCA'], r2.nonce);
    await s.quiet();
    s.close();
  });

  void it('pushes a changed secret only to the streams watching it', async () => {
    const a = open();
    const b = open();
    a.send(['default']);
    b.send(['ROOTCA']);
    const ra = await a.next();
    const rb = await b.next();
    a.send(['default'], ra.nonce);
    b.send(['ROOTCA'], rb.nonce);
    store.set('default', { certificateChain: 'CHAIN-2', privateKey: 'KEY-2' });
    const pushed = await a.next();
    assert.deepEqual(names(pushed), ['default']);
    assert.equal(Secret.decode(pushed.resources[0].value).tls_certificate.certificate_chain.inline_bytes.toString(), 'CHAIN-2');
    await b.quiet();
    a.close();
    b.close();
  });

  void it('a stale nonce gets no response (and is counted); a new stream carrying an old nonce is answered (reconnect)', async () => {
    const s = open();
    s.send(['default']);
    const r1 = await s.next();
    s.send(['default', 'ROOTCA'], 'not-the-last-nonce');
    await s.quiet();
    assert.match(await registry.metrics(), /istio_agent_pilot_xds_expired_nonce\{type="sds"\} [1-9]/);
    s.close();
    const again = open();
    again.send(['default'], r1.nonce);
    assert.deepEqual(names(await again.next()), ['default']);
    again.close();
  });

  void it('unsubscribe (no names) and NACK get no response; the NACK is counted', async () => {
    const s = open();
    s.send(['default']);
    const r1 = await s.next();
    s.send(['default'], r1.nonce, { error_detail: { code: 13, message: 'bad secret' } });
    await s.quiet();
    assert.match(await registry.metrics(), /istio_agent_pilot_total_xds_rejects\{type="sds"\} [1-9]/);
    s.send([], r1.nonce);
    await s.quiet();
    s.close();
  });

  void it('a secret that cannot be generated ends the stream with "failed to generate secret"; new streams work once it exists', async () => {
    const s = open();
    s.send(['file-root:/missing.pem']);
    const end = await s.ended;
    assert.notEqual(end, 'end');
    assert.match((end as ServiceError).details, /failed to generate secret for file-root:\/missing\.pem: no secret/);
    store.set('file-root:/missing.pem', { rootCert: 'FILE-ROOT' }, false);
    const t = open();
    t.send(['file-root:/missing.pem']);
    const r = await t.next();
    assert.equal(Secret.decode(r.resources[0].value).validation_context.trusted_ca.inline_bytes.toString(), 'FILE-ROOT');
    t.close();
  });

  void it('refuses a first request without a node, and malformed bytes, without harm to other streams', async () => {
    const ok = open();
    ok.send(['default']);
    await ok.next();
    const noNode = open('');
    noNode.send(['default']);
    const e1 = (await noNode.ended) as ServiceError;
    assert.equal(e1.code, 3);
    assert.match(e1.details, /missing node information/);
    const bad = client.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', (b: Buffer) => b, (b: Buffer) => b, new Metadata());
    const badEnd = new Promise<ServiceError>((resolve) => bad.on('error', resolve));
    bad.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])); // a length running past the end
    const e3 = await badEnd;
    assert.equal(e3.code, 3);
    assert.match(e3.details, /malformed DiscoveryRequest/);
    assert.match(await registry.metrics(), /istio_agent_sds_rejected_requests_total\{reason="malformed"\} 1/);
    // the server is still serving
    store.set('default', { certificateChain: 'CHAIN-3', privateKey: 'KEY-3' });
    assert.equal(Secret.decode((await ok.next()).resources[0].value).tls_certificate.certificate_chain.inline_bytes.toString(), 'CHAIN-3');
    ok.close();
  });

  void it('DeltaSecrets and FetchSecrets are UNIMPLEMENTED, as in pilot-agent', async () => {
    const delta = client.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets', (b: Buffer) => b, (b: Buffer) => b, new Metadata());
    const e = await new Promise<ServiceError>((resolve) => delta.on('error', resolve));
    assert.equal(e.code, 12);
    assert.equal(e.details, 'DeltaSecrets not implemented');
    const fe = await new Promise<ServiceError | null>((resolve) =>
      client.makeUnaryRequest('/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', (b: Buffer) => b, (b: Buffer) => b, Req.encode({}), (err) => resolve(err)),
    );
    assert.equal(fe?.code, 12);
    assert.equal(fe?.details, 'FetchSecrets not implemented');
  });

  void it('the socket is owner-only', async () => {
    assert.equal((await stat(join(dir, 'workload-spiffe-uds/socket'))).mode & 0o777, 0o600);
  });
});

void describe('SDS server: private key providers and the CRL', () => {
  void it('hands the key to cryptomb inside its typed config (poll delay nanoseconds only) and adds the CA CRL file to trust bundles', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sds-'));
    const store = new Store();
    store.set('default', { certificateChain: 'CHAIN', privateKey: 'KEY' }, false);
    store.set('ROOTCA', { rootCert: 'ROOT' }, false);
    const crl = join(dir, 'ca-crl.pem');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(crl, 'CRL');
    const { log } = memoryLogger('default:error');
    const srv = createSdsServer({ socketPath: join(dir, 's'), source: store, log, adsLog: log, metrics: identityMetrics(new Registry()), osRootCertPath: '', crlEnabled: true, crlPath: crl, keyProvider: { provider: 'cryptomb', pollDelayNanos: 10_000, fallback: true } });
    await srv.start();
    const c = new Client(`unix:${join(dir, 's')}`, credentials.createInsecure());
    try {
      const call = c.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', (b: Buffer) => b, (b: Buffer) => b, new Metadata());
      const got = new Promise<any>((resolve) => call.once('data', (b: Buffer) => resolve(Resp.decode(b))));
      call.on('error', () => undefined);
      call.write(Req.encode({ node: { id: 'x' }, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE_URL }));
      const r = await got;
      const [tls, root] = r.resources.map((a: any) => Secret.decode(a.value));
      assert.equal(tls.tls_certificate.private_key, undefined, 'the key is not in private_key');
      const pkp = tls.tls_certificate.private_key_provider;
      assert.equal(pkp.provider_name, 'cryptomb');
      assert.equal(pkp.fallback, true);
      assert.equal(pkp.typed_config.type_url, 'type.googleapis.com/envoy.extensions.private_key_providers.cryptomb.v3alpha.CryptoMbPrivateKeyMethodConfig');
      const cfg = pkp.typed_config.value as Buffer;
      // CryptoMbPrivateKeyMethodConfig{private_key = 1 {inline_bytes = 2}, poll_delay = 2 {nanos = 2}}
      assert.ok(cfg.includes(Buffer.from('KEY')));
      assert.equal(root.validation_context.crl.filename, crl);
      call.cancel();
    } finally {
      c.close();
      await srv.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
