import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadProtos, messageCodec } from '../lib/proto.js';
import { CLUSTER_TYPE, NAME_TABLE_TYPE } from './types.js';
import { WireFormatError, encodeAgentRequest, firstResource, forEachField, summarizeRequest, summarizeResponse } from './wire.js';

const pkg = loadProtos(['envoy/service/discovery/v3/discovery.proto']);
const codec = (n: string) => messageCodec(pkg, `envoy.service.discovery.v3.${n}`);
const node = { id: 'sidecar~1.2.3.4~a.b~b.svc.cluster.local', metadata: { fields: { CLUSTER_ID: { stringValue: 'Kubernetes' } } } };

void describe('wire: reading xDS messages without decoding them', () => {
  void it('summarizes a SotW response (type, nonce, version, resource count) encoded by protobufjs', () => {
    const buf = codec('DiscoveryResponse').encode({
      version_info: '2026-01-01T00:00:00Z/7',
      type_url: CLUSTER_TYPE,
      nonce: 'nonce-1',
      resources: [
        { type_url: CLUSTER_TYPE, value: Buffer.from('a') },
        { type_url: CLUSTER_TYPE, value: Buffer.alloc(300, 1) },
      ],
      control_plane: { identifier: 'istiod-1' },
    });
    assert.deepEqual(summarizeResponse(buf, false), {
      typeUrl: CLUSTER_TYPE,
      nonce: 'nonce-1',
      versionInfo: '2026-01-01T00:00:00Z/7',
      resources: 2,
      removed: 0,
    });
    const first = firstResource(buf, false);
    assert.equal(first?.typeUrl, CLUSTER_TYPE);
    assert.deepEqual(first?.value, Buffer.from('a'));
  });

  void it('summarizes a Delta response and finds resources[0].resource', () => {
    const buf = codec('DeltaDiscoveryResponse').encode({
      system_version_info: 'v9',
      type_url: NAME_TABLE_TYPE,
      nonce: 'n2',
      resources: [{ name: 'r', version: '1', resource: { type_url: NAME_TABLE_TYPE, value: Buffer.from('table') } }],
      removed_resources: ['gone-1', 'gone-2'],
    });
    assert.deepEqual(summarizeResponse(buf, true), { typeUrl: NAME_TABLE_TYPE, nonce: 'n2', versionInfo: 'v9', resources: 1, removed: 2 });
    assert.deepEqual(firstResource(buf, true), { typeUrl: NAME_TABLE_TYPE, value: Buffer.from('table') });
    assert.equal(firstResource(codec('DeltaDiscoveryResponse').encode({ type_url: NAME_TABLE_TYPE }), true), undefined);
  });

  void it('summarizes SotW and Delta requests, including NACKs', () => {
    const sotw = codec('DiscoveryRequest').encode({
      node,
      version_info: 'v1',
      type_url: CLUSTER_TYPE,
      response_nonce: 'n1',
      resource_names: ['a', 'b'],
      error_detail: { code: 13, message: 'rejected: bad cluster' },
    });
    const s = summarizeRequest(sotw, false);
    assert.equal(s.typeUrl, CLUSTER_TYPE);
    assert.equal(s.nonce, 'n1');
    assert.equal(s.versionInfo, 'v1');
    assert.equal(s.names, 2);
    assert.equal(s.nack, true);
    assert.equal(s.errorMessage, 'rejected: bad cluster');
    const delta = codec('DeltaDiscoveryRequest').encode({
      node,
      type_url: CLUSTER_TYPE,
      resource_names_subscribe: ['x'],
      resource_names_unsubscribe: ['y', 'z'],
      initial_resource_versions: { x: '1' },
      response_nonce: 'n5',
    });
    const d = summarizeRequest(delta, true);
    assert.deepEqual([d.typeUrl, d.nonce, d.names, d.unsubscribe, d.initial, d.nack], [CLUSTER_TYPE, 'n5', 1, 2, 1, false]);
  });

  void it('encodes the agent ACK/NACK requests so protobufjs reads them back', () => {
    const ack = codec('DiscoveryRequest').decode(encodeAgentRequest({ typeUrl: NAME_TABLE_TYPE, versionInfo: 'v3', nonce: 'n3' }, false));
    assert.deepEqual({ ...ack }, { type_url: NAME_TABLE_TYPE, version_info: 'v3', response_nonce: 'n3' });
    const nack = codec('DeltaDiscoveryRequest').decode(
      encodeAgentRequest({ typeUrl: NAME_TABLE_TYPE, versionInfo: 'ignored', nonce: 'n4', errorDetail: { code: 13, message: 'bad table' } }, true),
    ) as { type_url: string; response_nonce: string; error_detail: { code: number; message: string } };
    assert.equal(nack.type_url, NAME_TABLE_TYPE);
    assert.equal(nack.response_nonce, 'n4');
    assert.deepEqual({ code: nack.error_detail.code, message: nack.error_detail.message }, { code: 13, message: 'bad table' });
    assert.ok(!('version_info' in nack), 'delta requests carry no version');
    const initial = codec('DiscoveryRequest').decode(encodeAgentRequest({ typeUrl: NAME_TABLE_TYPE }, false));
    assert.equal(initial.type_url, NAME_TABLE_TYPE);
    assert.equal(initial.response_nonce, undefined);
  });

  void it('rejects malformed input with WireFormatError', () => {
    assert.throws(() => summarizeResponse(Buffer.from([0x22, 0x10, 0x41]), false), WireFormatError); // length past the end
    assert.throws(() => summarizeResponse(Buffer.from([0x0b]), false), WireFormatError); // group wire type
    assert.throws(() => summarizeResponse(Buffer.from([0x08, 0xff]), false), WireFormatError); // truncated varint
    assert.throws(() => forEachField(Buffer.from([0x00, 0x00]), () => {}), /field number 0/);
  });

  void it('skips a large resource without reading it', () => {
    const big = Buffer.alloc(5 * 1024 * 1024, 7);
    const buf = codec('DiscoveryResponse').encode({ type_url: CLUSTER_TYPE, nonce: 'n', resources: [{ type_url: CLUSTER_TYPE, value: big }] });
    const visited: number[] = [];
    forEachField(buf, (f) => visited.push(f.field));
    assert.deepEqual(visited.sort(), [2, 4, 5]);
    assert.equal(summarizeResponse(buf, false).resources, 1);
  });
});
