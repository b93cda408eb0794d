import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDownwardApi, parseDownwardApi } from './downward-api.js';

void describe('downward-API files', () => {
  void it('parses key="go-quoted" lines as the kubelet writes them', () => {
    const text = 'app="web"\nsidecar.istio.io/status="{\\"initContainers\\":[\\"istio-init\\"]}"\nmulti="a\\nb"\nempty=""\n\nno-equals-sign\n';
    assert.deepEqual(parseDownwardApi(text), { app: 'web', 'sidecar.istio.io/status': '{"initContainers":["istio-init"]}', multi: 'a\nb', empty: '' });
  });
  void it('splits on the first = only and keeps keys as written', () => {
    assert.deepEqual(parseDownwardApi('k="v=w"\n k2="x"'), { k: 'v=w', ' k2': 'x' });
  });
  void it('rejects the whole file when a value does not unquote, naming the line', () => {
    assert.throws(() => parseDownwardApi('ok="1"\nbad=unquoted'), /line 2: failed to unquote unquoted: invalid syntax/);
    assert.throws(() => parseDownwardApi('x="1"\r\n'), /line 1: failed to unquote "1"\r: invalid syntax/);
  });
  void it('round-trips', () => {
    const m = { a: 'x', 'b/c': 'with "quotes" and \\ and\ttab', d: '日本' };
    assert.deepEqual(parseDownwardApi(formatDownwardApi(m)), m);
  });
});
