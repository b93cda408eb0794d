// The SDS wire messages, checked against the real Envoy protos (protos/, loaded with @grpc/proto-loader):
// what encodeSecret / encodeSecretResponse write decodes as the tls.Secret / DiscoveryResponse pilot-agent
// sends (sdsservice.go toEnvoySecret), and decodeDiscoveryRequest reads what Envoy's encoder writes.
// The CryptoMB / QAT configs live in Envoy's contrib protos, which are not vendored: their Any is decoded
// with a two-field schema by field number (private_key = 1 DataSource, poll_delay = 2 Duration).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadSync } from '@grpc/proto-loader';
import fc from 'fast-check';
import { PROTO_LOADER_OPTIONS, loadProtos, messageCodec, protoDir } from '../lib/proto.js';
import { WireFormatError } from '../lib/protowire.js';
import { SECRET_TYPE_URL, decodeDiscoveryRequest, encodeSecret, encodeSecretResponse, type SecretMessage } from './sds-messages.js';

const pkg = loadProtos(['envoy/service/discovery/v3/discovery.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto']);
const Secret = messageCodec<any>(pkg, 'envoy.extensions.transport_sockets.tls.v3.Secret');
const DiscoveryRequest = messageCodec<any>(pkg, 'envoy.service.discovery.v3.DiscoveryRequest');
const DiscoveryResponse = messageCodec<any>(pkg, 'envoy.service.discovery.v3.DiscoveryResponse');

// contrib: envoy.extensions.private_key_providers.{cryptomb,qat}.v3alpha.*PrivateKeyMethodConfig, by field number
const contribDir = mkdtempSync(join(tmpdir(), 'pkp-proto-'));
after(() => rmSync(contribDir, { recursive: true, force: true }));
writeFileSync(
  join(contribDir, 'pkp_by_field_number.proto'),
  `syntax = "proto3";
package pkptest;
import "envoy/config/core/v3/base.proto";
import "google/protobuf/duration.proto";
message PrivateKeyMethodConfig {
  envoy.config.core.v3.DataSource private_key = 1;
  google.protobuf.Duration poll_delay = 2;
}
`,
);
const PkpConfig = messageCodec<any>(loadSync('pkp_by_field_number.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [contribDir, protoDir()] }), 'pkptest.PrivateKeyMethodConfig');

const CRYPTOMB_URL = 'type.googleapis.com/envoy.extensions.private_key_providers.cryptomb.v3alpha.CryptoMbPrivateKeyMethodConfig';
const QAT_URL = 'type.googleapis.com/envoy.extensions.private_key_providers.qat.v3alpha.QatPrivateKeyMethodConfig';
const CHAIN = '-----BEGIN CERTIFICATE-----\nMIIBleaf\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIBroot\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN RSA PRIVATE KEY-----\nMIIEkey\n-----END RSA PRIVATE KEY-----\n';
const ROOT = '-----BEGIN CERTIFICATE-----\nMIIBroot\n-----END CERTIFICATE-----';
const CRL = '/var/run/secrets/istio/crl/ca-crl.pem';
const inline = (s: string): any => ({ inline_bytes: Buffer.from(s), specifier: 'inline_bytes' });

void describe('encodeSecret, decoded with the real tls.Secret', () => {
  void it('a TLS secret: name, certificate_chain and private_key as inline_bytes, nothing else', () => {
    const buf = encodeSecret({ name: 'default', kind: 'tls', certificateChain: CHAIN, privateKey: KEY });
    const s = Secret.decode(buf);
    assert.deepEqual(s, { name: 'default', type: 'tls_certificate', tls_certificate: { certificate_chain: inline(CHAIN), private_key: inline(KEY) } });
    // byte for byte what protobuf's own encoder (field-number order, like Go's) writes for that message
    assert.deepEqual(buf, Secret.encode({ name: 'default', tls_certificate: { certificate_chain: { inline_bytes: Buffer.from(CHAIN) }, private_key: { inline_bytes: Buffer.from(KEY) } } }));
  });

  void it('a secret served under another name keeps that name (file-cert:..., unknown names)', () => {
    const s = Secret.decode(encodeSecret({ name: 'file-cert:/etc/c.pem~/etc/k.pem', kind: 'tls', certificateChain: CHAIN, privateKey: KEY }));
    assert.equal(s.name, 'file-cert:/etc/c.pem~/etc/k.pem');
  });

  void it('a validation-context secret without CRL: trusted_ca inline_bytes only', () => {
    const buf = encodeSecret({ name: 'ROOTCA', kind: 'validation', trustedCa: ROOT });
    assert.deepEqual(Secret.decode(buf), { name: 'ROOTCA', type: 'validation_context', validation_context: { trusted_ca: inline(ROOT) } });
    assert.deepEqual(buf, Secret.encode({ name: 'ROOTCA', validation_context: { trusted_ca: { inline_bytes: Buffer.from(ROOT) } } }));
  });

  void it('a validation-context secret with the CA CRL file: crl.filename', () => {
    const buf = encodeSecret({ name: 'ROOTCA', kind: 'validation', trustedCa: ROOT, crlFilename: CRL });
    assert.deepEqual(Secret.decode(buf), {
      name: 'ROOTCA',
      type: 'validation_context',
      validation_context: { trusted_ca: inline(ROOT), crl: { filename: CRL, specifier: 'filename' } },
    });
    assert.deepEqual(buf, Secret.encode({ name: 'ROOTCA', validation_context: { trusted_ca: { inline_bytes: Buffer.from(ROOT) }, crl: { filename: CRL } } }));
  });

  void it('an empty trust bundle still sets trusted_ca (a oneof member has presence, as in Go)', () => {
    const s = Secret.decode(encodeSecret({ name: 'file-root:/empty.pem', kind: 'validation', trustedCa: '' }));
    assert.deepEqual(s.validation_context.trusted_ca, inline(''));
  });

  for (const [provider, url] of [['cryptomb', CRYPTOMB_URL], ['qat', QAT_URL]] as const) {
    void it(`a ${provider} private key provider: the key inside typed_config, poll_delay as a Duration, fallback; no private_key`, () => {
      const msg: SecretMessage = { name: 'default', kind: 'tls', certificateChain: CHAIN, privateKey: KEY, keyProvider: { provider, pollDelayNanos: 200_000, fallback: true } };
      const s = Secret.decode(encodeSecret(msg));
      assert.equal(s.type, 'tls_certificate');
      const tls = s.tls_certificate;
      assert.deepEqual(Object.keys(tls).sort(), ['certificate_chain', 'private_key_provider']);
      assert.deepEqual(tls.certificate_chain, inline(CHAIN));
      const pkp = tls.private_key_provider;
      assert.equal(pkp.provider_name, provider);
      assert.equal(pkp.fallback, true);
      assert.equal(pkp.config_type, 'typed_config');
      assert.equal(pkp.typed_config.type_url, url);
      assert.deepEqual(PkpConfig.decode(pkp.typed_config.value), { private_key: inline(KEY), poll_delay: { nanos: 200_000 } });
    });
  }

  void it('provider poll_delay 0 is an empty Duration that is still present; fallback false is omitted', () => {
    const s = Secret.decode(encodeSecret({ name: 'default', kind: 'tls', certificateChain: CHAIN, privateKey: KEY, keyProvider: { provider: 'cryptomb', pollDelayNanos: 0, fallback: false } }));
    const pkp = s.tls_certificate.private_key_provider;
    assert.equal(pkp.fallback, undefined);
    assert.deepEqual(PkpConfig.decode(pkp.typed_config.value), { private_key: inline(KEY), poll_delay: {} });
  });

  void it('a poll delay of a second or more is split into seconds and nanos', () => {
    const s = Secret.decode(encodeSecret({ name: 'default', kind: 'tls', certificateChain: CHAIN, privateKey: KEY, keyProvider: { provider: 'qat', pollDelayNanos: 1_500_000_000, fallback: false } }));
    assert.deepEqual(PkpConfig.decode(s.tls_certificate.private_key_provider.typed_config.value).poll_delay, { seconds: '1', nanos: 500_000_000 });
  });

  void it('property: any name, chain and key (any Unicode) decode back unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary', maxLength: 3000 }), fc.string({ unit: 'binary' }), (name, chain, key) => {
        const s = Secret.decode(encodeSecret({ name, kind: 'tls', certificateChain: chain, privateKey: key }));
        assert.equal(s.name ?? '', name);
        assert.equal(s.tls_certificate.certificate_chain.inline_bytes.toString('utf8'), chain);
        assert.equal(s.tls_certificate.private_key.inline_bytes.toString('utf8'), key);
      }),
      { numRuns: 300 },
    );
  });
});

void describe('encodeSecretResponse, decoded with the real DiscoveryResponse', () => {
  void it('version_info, the Secrets packed in Any in order, type_url and nonce', () => {
    const tls = encodeSecret({ name: 'default', kind: 'tls', certificateChain: CHAIN, privateKey: KEY });
    const root = encodeSecret({ name: 'ROOTCA', kind: 'validation', trustedCa: ROOT });
    const version = '2026-03-01T12:00:00Z/7';
    const nonce = '0b5f5e9e-6a5c-4b8a-9d0e-3f1b2a3c4d5e';
    const r = DiscoveryResponse.decode(encodeSecretResponse(version, nonce, [tls, root]));
    assert.deepEqual(Object.keys(r).sort(), ['nonce', 'resources', 'type_url', 'version_info']);
    assert.equal(r.version_info, version);
    assert.equal(r.type_url, SECRET_TYPE_URL);
    assert.equal(SECRET_TYPE_URL, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
    assert.equal(r.nonce, nonce);
    assert.equal(r.resources.length, 2);
    assert.deepEqual(r.resources.map((a: any) => a.type_url), [SECRET_TYPE_URL, SECRET_TYPE_URL]);
    assert.deepEqual(r.resources.map((a: any) => Secret.decode(a.value).name), ['default', 'ROOTCA']);
    assert.deepEqual(r.resources[0].value, tls);
  });

  void it('no secrets: no resources field', () => {
    const r = DiscoveryResponse.decode(encodeSecretResponse('v', 'n', []));
    assert.equal(r.resources, undefined);
    assert.equal(r.nonce, 'n');
  });
});

const NODE = {
  id: 'sidecar~10.244.0.17~productpage-v1-6b746f74dc-9stvs.default~default.svc.cluster.local',
  cluster: 'productpage.default',
  metadata: { fields: { CLUSTER_ID: { stringValue: 'Kubernetes' }, ISTIO_VERSION: { stringValue: '1.30.3' } } },
  user_agent_name: 'envoy',
  user_agent_build_version: { version: { major_number: 1, minor_number: 40 } },
};

void describe('decodeDiscoveryRequest on requests encoded with the real DiscoveryRequest', () => {
  void it("Envoy's first request: node id, names, type, no nonce", () => {
    const r = decodeDiscoveryRequest(DiscoveryRequest.encode({ node: NODE, resource_names: ['default'], type_url: SECRET_TYPE_URL }));
    assert.deepEqual(r, { versionInfo: '', nodeId: NODE.id, hasNode: true, resourceNames: ['default'], typeUrl: SECRET_TYPE_URL, responseNonce: '' });
  });

  void it('an ACK: version, nonce, several names in order; no node (set_node_on_first_message_only)', () => {
    const r = decodeDiscoveryRequest(DiscoveryRequest.encode({ version_info: '2026-03-01T12:00:00Z/1', resource_names: ['default', 'ROOTCA', 'file-root:/etc/ca.pem'], type_url: SECRET_TYPE_URL, response_nonce: 'n-1' }));
    assert.deepEqual(r, { versionInfo: '2026-03-01T12:00:00Z/1', nodeId: '', hasNode: false, resourceNames: ['default', 'ROOTCA', 'file-root:/etc/ca.pem'], typeUrl: SECRET_TYPE_URL, responseNonce: 'n-1' });
  });

  void it('a NACK: error_detail code and message (details ignored)', () => {
    const r = decodeDiscoveryRequest(
      DiscoveryRequest.encode({
        version_info: 'v0',
        node: NODE,
        resource_names: ['default'],
        type_url: SECRET_TYPE_URL,
        response_nonce: 'n-2',
        error_detail: { code: 3, message: 'Failed to load certificate chain from <inline>', details: [{ type_url: 'type.googleapis.com/google.protobuf.Empty', value: Buffer.alloc(0) }] },
      }),
    );
    assert.deepEqual(r.errorDetail, { code: 3, message: 'Failed to load certificate chain from <inline>' });
    assert.equal(r.responseNonce, 'n-2');
    assert.equal(r.nodeId, NODE.id);
  });

  void it('a NACK with code 0 and an empty message is still a NACK (error_detail present)', () => {
    const r = decodeDiscoveryRequest(DiscoveryRequest.encode({ resource_names: ['default'], response_nonce: 'n', error_detail: {} }));
    assert.deepEqual(r.errorDetail, { code: 0, message: '' });
  });

  void it('a node without id: hasNode, empty id', () => {
    const r = decodeDiscoveryRequest(DiscoveryRequest.encode({ node: { cluster: 'x' }, resource_names: ['default'] }));
    assert.equal(r.hasNode, true);
    assert.equal(r.nodeId, '');
  });

  void it('the health-information type of pilot-agent is read as any other type URL', () => {
    const r = decodeDiscoveryRequest(DiscoveryRequest.encode({ type_url: 'type.googleapis.com/istio.v1.HealthInformation' }));
    assert.equal(r.typeUrl, 'type.googleapis.com/istio.v1.HealthInformation');
    assert.deepEqual(r.resourceNames, []);
  });

  void it('unknown fields of every wire type are skipped', () => {
    const known = DiscoveryRequest.encode({ resource_names: ['default'], response_nonce: 'n' });
    const extra = Buffer.from([
      (11 << 3) | 0, 0x96, 0x01, // varint 150
      (12 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, // fixed64
      (13 << 3) | 5, 1, 2, 3, 4, // fixed32
      (14 << 3) | 2, 2, 0x41, 0x42, // bytes
    ]);
    const r = decodeDiscoveryRequest(Buffer.concat([extra, known, extra]));
    assert.deepEqual(r.resourceNames, ['default']);
    assert.equal(r.responseNonce, 'n');
  });

  void it('malformed bytes throw WireFormatError', () => {
    const valid = DiscoveryRequest.encode({ node: NODE, resource_names: ['default'], response_nonce: 'nonce' });
    const cases: Array<[string, Buffer]> = [
      ['truncated in the middle of a field', valid.subarray(0, valid.length - 3)],
      ['a length running past the end', Buffer.from([(3 << 3) | 2, 10, 0x61])],
      ['a truncated varint', Buffer.from([(1 << 3) | 0, 0x80])],
      ['a varint over 10 bytes', Buffer.from([(1 << 3) | 0, ...new Array<number>(11).fill(0x80), 1])],
      ['field number 0', Buffer.from([0x02, 0x00])],
      ['group wire types (3, 4)', Buffer.from([(3 << 3) | 3])],
      ['wire type 7', Buffer.from([(3 << 3) | 7, 0])],
      ['a truncated fixed64', Buffer.from([(9 << 3) | 1, 1, 2, 3])],
      ['a truncated fixed32', Buffer.from([(9 << 3) | 5, 1])],
      ['a malformed node', Buffer.from([(2 << 3) | 2, 2, (1 << 3) | 2, 5])],
      ['a malformed error_detail', Buffer.from([(6 << 3) | 2, 1, 0x08])],
    ];
    for (const [what, buf] of cases) {
      assert.throws(() => decodeDiscoveryRequest(buf), WireFormatError, what);
    }
  });

  const arbRequest = fc.record(
    {
      version_info: fc.string({ unit: 'binary' }),
      node: fc.record({ id: fc.string({ unit: 'binary' }), cluster: fc.string() }, { requiredKeys: [] }),
      resource_names: fc.array(fc.string({ unit: 'binary' }), { maxLength: 5 }),
      type_url: fc.string(),
      response_nonce: fc.string({ unit: 'binary' }),
      error_detail: fc.record({ code: fc.integer({ min: 0, max: 2 ** 31 - 1 }), message: fc.string({ unit: 'binary' }) }, { requiredKeys: [] }),
    },
    { requiredKeys: [] },
  );

  void it('property: every request the real encoder writes decodes to the same fields', () => {
    fc.assert(
      fc.property(arbRequest, (req) => {
        const r = decodeDiscoveryRequest(DiscoveryRequest.encode(req));
        assert.equal(r.versionInfo, req.version_info ?? '');
        assert.equal(r.hasNode, req.node !== undefined);
        assert.equal(r.nodeId, req.node?.id ?? '');
        assert.deepEqual(r.resourceNames, req.resource_names ?? []);
        assert.equal(r.typeUrl, req.type_url ?? '');
        assert.equal(r.responseNonce, req.response_nonce ?? '');
        if (req.error_detail) assert.deepEqual(r.errorDetail, { code: req.error_detail.code ?? 0, message: req.error_detail.message ?? '' });
        else assert.equal(r.errorDetail, undefined);
      }),
      { numRuns: 500 },
    );
  });

  void it('property: arbitrary bytes either decode or throw WireFormatError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeDiscoveryRequest(Buffer.from(bytes));
        } catch (e) {
          assert.ok(e instanceof WireFormatError, `threw ${String(e)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  void it('property: a valid request cut short inside a field throws WireFormatError; cut at a field boundary it decodes', () => {
    fc.assert(
      fc.property(arbRequest, fc.nat(), (req, cut) => {
        const buf = DiscoveryRequest.encode(req);
        if (buf.length === 0) return;
        const n = cut % buf.length;
        // the top-level field boundaries, as protobufjs wrote them
        const boundaries = new Set<number>([0]);
        let pos = 0;
        while (pos < buf.length) {
          let len = 0;
          let shift = 1;
          pos++; // every top-level key of DiscoveryRequest fits in one byte
          for (;;) {
            const b = buf[pos++]!;
            len += (b & 0x7f) * shift;
            shift *= 128;
            if (!(b & 0x80)) break;
          }
          pos += len;
          boundaries.add(pos);
        }
        if (boundaries.has(n)) assert.doesNotThrow(() => decodeDiscoveryRequest(buf.subarray(0, n)));
        else assert.throws(() => decodeDiscoveryRequest(buf.subarray(0, n)), WireFormatError);
      }),
      { numRuns: 500 },
    );
  });
});
