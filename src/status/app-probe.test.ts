import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appHostHeader, decodeHealthResponse, encodeHealthRequest, forwardedHeaders, frame, unframe } from './app-probe.js';

void test('appHostHeader swaps the status port for the app port only', () => {
  assert.equal(appHostHeader('10.0.0.5:15020', 15020, 8080), '10.0.0.5:8080');
  assert.equal(appHostHeader('[fd00::5]:15020', 15020, 8080), '[fd00::5]:8080');
  assert.equal(appHostHeader('example.com:9000', 15020, 8080), 'example.com:9000');
  assert.equal(appHostHeader('example.com', 15020, 8080), 'example.com');
  assert.equal(appHostHeader(undefined, 15020, 8080), undefined);
});

void test('forwardedHeaders keeps kubelet headers, drops hop-by-hop ones, disables keep-alive', () => {
  assert.deepEqual(
    forwardedHeaders({
      'user-agent': 'kube-probe/1.30',
      'x-custom': 'v',
      accept: '*/*',
      connection: 'keep-alive',
      'content-length': '0',
      host: 'x:15020',
      'transfer-encoding': 'chunked',
    }),
    { 'user-agent': 'kube-probe/1.30', 'x-custom': 'v', accept: '*/*', connection: 'close' },
  );
});

void test('grpc.health.v1 wire format', () => {
  assert.deepEqual(encodeHealthRequest(''), Buffer.alloc(0));
  assert.deepEqual(encodeHealthRequest('svc'), Buffer.from([0x0a, 3, 0x73, 0x76, 0x63]));
  assert.equal(decodeHealthResponse(Buffer.from([0x08, 0x01])), 1);
  assert.equal(decodeHealthResponse(Buffer.from([0x08, 0x02])), 2);
  assert.equal(decodeHealthResponse(Buffer.alloc(0)), 0);
  // unknown fields are skipped
  assert.equal(decodeHealthResponse(Buffer.from([0x12, 0x02, 0x61, 0x62, 0x08, 0x01])), 1);
  assert.throws(() => decodeHealthResponse(Buffer.from([0x12, 0x05, 0x61])), /truncated/);
  assert.deepEqual(unframe(frame(Buffer.from([0x08, 0x01]))), Buffer.from([0x08, 0x01]));
  assert.throws(() => unframe(Buffer.from([1, 0, 0, 0, 0])), /compressed/);
});
