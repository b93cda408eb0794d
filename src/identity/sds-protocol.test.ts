// When the SDS server answers: Istio's ShouldRespond (pkg/xds/server_test.go TestShouldRespond) for the
// non-wildcard Secret type, over the single watch an SDS stream holds (sdsservice.go Watch).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SECRET_TYPE_URL, type DiscoveryRequest } from './sds-messages.js';
import { decide, type Watch } from './sds-protocol.js';

function request(r: Partial<DiscoveryRequest>): DiscoveryRequest {
  return { versionInfo: '', nodeId: 'sidecar~10.0.0.1~sleep-0.default~default.svc.cluster.local', hasNode: true, resourceNames: [], typeUrl: SECRET_TYPE_URL, responseNonce: '', ...r };
}

function watch(w: { names: string[]; nonceSent?: string; nonceAcked?: string; lastError?: string }): Watch {
  return { nonceSent: w.nonceSent ?? '', nonceAcked: w.nonceAcked ?? '', lastError: w.lastError ?? '', names: new Set(w.names) };
}

/** Stands for the server sending a response with `nonce` (xds.Send records NonceSent on success). */
function sent(state: { watch: Watch | undefined }, nonce: string): void {
  assert.ok(state.watch, 'a response is only sent on a watched stream');
  state.watch.nonceSent = nonce;
}

void describe('decide: Istio TestShouldRespond cases for SDS', () => {
  void it('initial request: subscribes to the names and responds with all of them', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    const d = decide(state, request({ resourceNames: ['default'] }));
    assert.deepEqual(d, { kind: 'init', names: ['default'] });
    assert.deepEqual([...state.watch!.names], ['default']);
    assert.equal(state.watch!.nonceAcked, '');
  });

  void it('initial request for several names: all of them, duplicates once', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    assert.deepEqual(decide(state, request({ resourceNames: ['default', 'ROOTCA', 'default'] })), { kind: 'init', names: ['default', 'ROOTCA'] });
  });

  void it('ack: the nonce sent, same names: no response; NonceAcked updated', () => {
    const state = { watch: watch({ names: ['default'], nonceSent: 'nonce' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ versionInfo: 'v1', responseNonce: 'nonce', resourceNames: ['default'] })), { kind: 'ack' });
    assert.equal(state.watch!.nonceAcked, 'nonce');
    assert.deepEqual([...state.watch!.names], ['default']);
  });

  void it('stale nonce ("nack" case in Istio: a nonce other than the last sent): no response, watch unchanged', () => {
    const w = watch({ names: ['default'], nonceSent: 'nonce', nonceAcked: 'older' });
    const state = { watch: w as Watch | undefined };
    assert.deepEqual(decide(state, request({ versionInfo: 'v1', responseNonce: 'stale nonce', resourceNames: ['default', 'ROOTCA'] })), { kind: 'stale' });
    assert.equal(state.watch, w);
    assert.deepEqual([...w.names], ['default']);
    assert.equal(w.nonceAcked, 'older');
  });

  void it('reconnect: a fresh stream whose first request carries a nonce from an earlier stream gets a response', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    assert.deepEqual(decide(state, request({ versionInfo: 'v1', responseNonce: 'reconnect nonce', resourceNames: ['default'] })), { kind: 'init', names: ['default'] });
    assert.deepEqual([...state.watch!.names], ['default']);
  });

  void it('an init request (no nonce) on a watched stream re-subscribes and responds again (multiplexed root first)', () => {
    const state = { watch: watch({ names: ['ROOTCA'], nonceSent: 'n1', nonceAcked: 'n1' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ resourceNames: ['ROOTCA'] })), { kind: 'init', names: ['ROOTCA'] });
    assert.equal(state.watch!.nonceAcked, '');
  });

  void it('resources change: a name added with the current nonce is responded, with only the added name', () => {
    const state = { watch: watch({ names: ['default'], nonceSent: 'nonce' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ versionInfo: 'v1', responseNonce: 'nonce', resourceNames: ['default', 'ROOTCA'] })), { kind: 'added', names: ['ROOTCA'] });
    assert.equal(state.watch!.nonceAcked, 'nonce');
    assert.deepEqual([...state.watch!.names].sort(), ['ROOTCA', 'default']);
  });

  void it('resources change with removals only: no response (non-wildcard type), names replaced', () => {
    const state = { watch: watch({ names: ['default', 'ROOTCA'], nonceSent: 'nonce' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ responseNonce: 'nonce', resourceNames: ['default'] })), { kind: 'ack' });
    assert.deepEqual([...state.watch!.names], ['default']);
    assert.equal(state.watch!.nonceAcked, 'nonce');
  });

  void it('added and removed at once: responds with the added ones', () => {
    const state = { watch: watch({ names: ['a', 'b'], nonceSent: 'nonce' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ responseNonce: 'nonce', resourceNames: ['b', 'c', 'd'] })), { kind: 'added', names: ['c', 'd'] });
    assert.deepEqual([...state.watch!.names].sort(), ['b', 'c', 'd']);
  });

  void it('ack with the same resources in another order: no response', () => {
    const state = { watch: watch({ names: ['cluster2', 'cluster1'], nonceSent: 'nonce' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ versionInfo: 'v1', responseNonce: 'nonce', resourceNames: ['cluster1', 'cluster2'] })), { kind: 'ack' });
  });

  void it('unsubscribe (no names): the watch is dropped, no response; a later request with the old nonce starts afresh', () => {
    const state = { watch: watch({ names: ['cluster2', 'cluster1'], nonceSent: 'nonce' }) as Watch | undefined };
    assert.deepEqual(decide(state, request({ versionInfo: 'v1', responseNonce: 'nonce', resourceNames: [] })), { kind: 'unsubscribe' });
    assert.equal(state.watch, undefined);
    // no watch any more: the next request is an init even with a nonce
    assert.deepEqual(decide(state, request({ responseNonce: 'nonce', resourceNames: ['default'] })), { kind: 'init', names: ['default'] });
  });

  void it('a first request without names is an unsubscribe, not an init (SDS is not a wildcard type)', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    assert.deepEqual(decide(state, request({})), { kind: 'unsubscribe' });
    assert.equal(state.watch, undefined);
  });

  void it('NACK: records the error, no response; checked before anything else (even a matching nonce with new names)', () => {
    const state = { watch: watch({ names: ['default'], nonceSent: 'nonce', nonceAcked: 'prev' }) as Watch | undefined };
    const d = decide(state, request({ responseNonce: 'nonce', resourceNames: ['default', 'ROOTCA'], errorDetail: { code: 13, message: 'bad secret' } }));
    assert.deepEqual(d, { kind: 'nack', message: 'bad secret' });
    assert.equal(state.watch!.lastError, 'bad secret');
    assert.equal(state.watch!.nonceAcked, 'prev');
    assert.deepEqual([...state.watch!.names], ['default']);
    // the next ACK clears the error
    assert.deepEqual(decide(state, request({ responseNonce: 'nonce', resourceNames: ['default'] })), { kind: 'ack' });
    assert.equal(state.watch!.lastError, '');
  });

  void it('NACK with no names and no watch: still a NACK (no unsubscribe, no watch created)', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    assert.deepEqual(decide(state, request({ errorDetail: { code: 3, message: 'x' } })), { kind: 'nack', message: 'x' });
    assert.equal(state.watch, undefined);
  });
});

void describe('decide: the Envoy conversation of sdsservice_test.go', () => {
  void it('multiplexed: default, then ROOTCA added with the nonce gives only ROOTCA, then plain ACKs', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    assert.deepEqual(decide(state, request({ resourceNames: ['default'] })), { kind: 'init', names: ['default'] });
    sent(state, 'n1');
    assert.deepEqual(decide(state, request({ responseNonce: 'n1', versionInfo: 'v1', resourceNames: ['default', 'ROOTCA'] })), { kind: 'added', names: ['ROOTCA'] });
    sent(state, 'n2');
    assert.deepEqual(decide(state, request({ responseNonce: 'n2', versionInfo: 'v2', resourceNames: ['default', 'ROOTCA'] })), { kind: 'ack' });
    // the ACK of n1 arriving late is stale once n2 was sent
    assert.deepEqual(decide(state, request({ responseNonce: 'n1', versionInfo: 'v1', resourceNames: ['default', 'ROOTCA'] })), { kind: 'stale' });
    assert.equal(state.watch!.nonceAcked, 'n2');
  });

  void it('a push (new nonce sent) makes the previous nonce stale and the new one an ACK', () => {
    const state: { watch: Watch | undefined } = { watch: undefined };
    decide(state, request({ resourceNames: ['default'] }));
    sent(state, 'n1');
    assert.equal(decide(state, request({ responseNonce: 'n1', resourceNames: ['default'] })).kind, 'ack');
    sent(state, 'push-1');
    assert.equal(decide(state, request({ responseNonce: 'n1', resourceNames: ['default'] })).kind, 'stale');
    assert.equal(decide(state, request({ responseNonce: 'push-1', resourceNames: ['default'] })).kind, 'ack');
    assert.equal(state.watch!.nonceAcked, 'push-1');
  });
});
