import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, IssueList } from '../lib/errors.js';
import { parseKubeAppProbers, parsePrometheusAnnotations, parseStatusEnv } from './config.js';

void test('parseKubeAppProbers accepts the injector format (httpGet, tcpSocket, grpc)', () => {
  const issues = new IssueList();
  const probers = parseKubeAppProbers(
    JSON.stringify({
      '/app-health/app/livez': { httpGet: { path: 'healthz', port: 8080, scheme: 'HTTPS', httpHeaders: [{ name: 'a', value: 'b' }] }, timeoutSeconds: 3 },
      '/app-health/app/readyz': { tcpSocket: { port: 8081 }, timeoutSeconds: 1 },
      '/app-health/app/startupz': { grpc: { port: 8082, service: 'svc' } },
      '/app-lifecycle/app/prestopz': { httpGet: { path: '/stop', port: 8080 } },
    }),
    issues,
  );
  assert.equal(issues.items.length, 0);
  assert.deepEqual(probers.get('/app-health/app/livez'), {
    kind: 'httpGet',
    httpGet: { path: '/healthz', port: 8080, scheme: 'HTTPS' },
    timeoutSeconds: 3,
  });
  assert.deepEqual(probers.get('/app-health/app/readyz'), { kind: 'tcpSocket', tcpSocket: { port: 8081 }, timeoutSeconds: 1 });
  assert.deepEqual(probers.get('/app-health/app/startupz'), { kind: 'grpc', grpc: { port: 8082, service: 'svc' }, timeoutSeconds: 0 });
  assert.equal(probers.get('/app-lifecycle/app/prestopz')?.kind, 'httpGet');
  assert.equal(parseKubeAppProbers(undefined, issues).size, 0);
  assert.equal(parseKubeAppProbers('', issues).size, 0);
  assert.equal(issues.items.length, 0);
});

void test('parseKubeAppProbers reports every problem, each naming ISTIO_KUBE_APP_PROBERS', () => {
  const issues = new IssueList();
  parseKubeAppProbers(
    JSON.stringify({
      '/app-health/app/bogus': { httpGet: { port: 80 } },
      '/app-health/app/livez': { httpGet: { port: 'http' } },
      '/app-health/app/readyz': { httpGet: { port: 80 }, tcpSocket: { port: 80 } },
      '/app-health/app/startupz': {},
      '/app-health/other/livez': { tcpSocket: { port: 70000 } },
      '/app-health/x/readyz': { grpc: { port: '9090' } },
    }),
    issues,
  );
  const msgs = issues.items.map((i) => i.message);
  assert.ok(issues.items.every((i) => i.source === 'env ISTIO_KUBE_APP_PROBERS'));
  assert.equal(msgs.length, 6, msgs.join('\n'));
  assert.match(msgs[0]!, /"\/app-health\/app\/bogus": invalid path, must be in form of regex pattern/);
  assert.match(msgs[1]!, /"\/app-health\/app\/livez" httpGet: the port must be int type \(got "http"\)/);
  assert.match(msgs[2]!, /invalid prober type, must be one of type httpGet, tcpSocket or gRPC/);
  assert.match(msgs[3]!, /"\/app-health\/app\/startupz": invalid prober type/);
  assert.match(msgs[4]!, /port 70000 is out of range/);
  assert.match(msgs[5]!, /grpc\.port must be an integer/);
});

void test('parseKubeAppProbers: bad JSON is one issue', () => {
  const issues = new IssueList();
  parseKubeAppProbers('{"/app-health/a/livez": {', issues);
  assert.equal(issues.items.length, 1);
  assert.match(issues.items[0]!.message, /^failed to decode app prober JSON: /);
});

void test('parsePrometheusAnnotations: defaults, disable, self-scrape refusal, bad JSON', () => {
  const issues = new IssueList();
  assert.equal(parsePrometheusAnnotations(undefined, 15020, issues), undefined);
  assert.deepEqual(parsePrometheusAnnotations('{"scrape":"true"}', 15020, issues), { path: '/metrics', port: '80' });
  assert.deepEqual(parsePrometheusAnnotations('{"scrape":"true","path":"/m","port":"9090"}', 15020, issues), { path: '/m', port: '9090' });
  assert.equal(parsePrometheusAnnotations('{"scrape":"false","port":"9090"}', 15020, issues), undefined);
  assert.equal(issues.items.length, 0);
  assert.equal(parsePrometheusAnnotations('{"port":"15020"}', 15020, issues), undefined);
  assert.match(issues.items[0]!.message, /application port is the same as agent port/);
  assert.equal(parsePrometheusAnnotations('{"port":9090}', 15020, issues), undefined);
  assert.match(issues.items[1]!.message, /"port" must be a string/);
  assert.equal(parsePrometheusAnnotations('', 15020, issues), undefined);
  assert.match(issues.items[2]!.message, /^failed to unmarshal ISTIO_PROMETHEUS_ANNOTATIONS: /);
  assert.ok(issues.items.every((i) => i.source === 'env ISTIO_PROMETHEUS_ANNOTATIONS'));
});

void test('parseStatusEnv throws one ConfigError listing both inputs', () => {
  assert.throws(
    () => parseStatusEnv({ kubeAppProbers: 'nope', prometheusAnnotations: '{"port":"15020"}', statusPort: 15020 }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.issues.length, 2);
      assert.match(e.message, /env ISTIO_KUBE_APP_PROBERS: failed to decode app prober JSON/);
      assert.match(e.message, /env ISTIO_PROMETHEUS_ANNOTATIONS: invalid prometheus scrape configuration/);
      return true;
    },
  );
});

void test('parseKubeAppProbers / parsePrometheusAnnotations: a deeply nested value is an issue, not a RangeError; timeoutSeconds fits int32', () => {
  const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
  const issues = new IssueList();
  assert.equal(parseKubeAppProbers(`{"/app-health/a/livez":{"grpc":{"port":${deep}}}}`, issues).size, 0);
  assert.match(issues.items[0]!.message, /^"\/app-health\/a\/livez": grpc\.port must be an integer in 1-65535 \(got \[.*\)$/);
  assert.equal(parsePrometheusAnnotations(`{"port":${deep}}`, 15020, issues), undefined);
  assert.match(issues.items[1]!.message, /"port" must be a string \(got \[/);
  // Kubernetes' timeoutSeconds is an int32; 1e308 seconds is no timer at all
  assert.equal(parseKubeAppProbers('{"/app-health/a/livez":{"tcpSocket":{"port":80},"timeoutSeconds":1e308}}', issues).size, 0);
  assert.match(issues.items[2]!.message, /timeoutSeconds must be an integer in 0-2147483647 \(got 1e\+308\)/);
  assert.equal(parseKubeAppProbers('{"/app-health/a/livez":{"tcpSocket":{"port":80},"timeoutSeconds":2147483647}}', issues).size, 1);
  assert.ok(issues.items.every((i) => i.message.length < 400));
});
