import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ALLOWED_APP_TYPES,
  ALLOWED_ENVOY_TYPES,
  allowedContentTypes,
  FMT_OPENMETRICS_001,
  FMT_OPENMETRICS_100,
  FMT_TEXT,
  negotiateMetricsFormat,
  MAX_SCRAPE_TIMEOUT_MS,
  scrapeTimeoutMs,
} from './prom-merge.js';
import { memoryLogger } from '../lib/log.js';

const PROM_ACCEPT =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,' +
  'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,' +
  'application/openmetrics-text;version=0.0.1;q=0.4,' +
  'text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,' +
  'text/plain;version=0.0.4;q=0.2,' +
  '*/*;q=0.1';

void test('allowedContentTypes for the app: protobuf dropped, order kept, q rewritten, duplicates dropped', () => {
  // */* maps to text 0.0.4, which is already listed: dropped
  assert.equal(
    allowedContentTypes(PROM_ACCEPT, ALLOWED_APP_TYPES),
    'application/openmetrics-text; escaping=allow-utf-8; q=0.4; version=1.0.0,' +
      'application/openmetrics-text; q=0.3; version=0.0.1,' +
      'text/plain; escaping=allow-utf-8; q=0.2; version=1.0.0,' +
      'text/plain; q=0.1; version=0.0.4',
  );
});

void test('allowedContentTypes for Envoy: text types only', () => {
  assert.equal(
    allowedContentTypes(PROM_ACCEPT, ALLOWED_ENVOY_TYPES),
    'text/plain; escaping=allow-utf-8; q=0.2; version=1.0.0,text/plain; q=0.1; version=0.0.4',
  );
});

void test('allowedContentTypes: wildcards, ranges, nothing usable, unparseable', () => {
  assert.equal(allowedContentTypes('*/*', ALLOWED_ENVOY_TYPES), 'text/plain; q=0.1; version=0.0.4');
  assert.equal(allowedContentTypes('application/*', ALLOWED_APP_TYPES), 'application/openmetrics-text; q=0.1; version=0.0.1');
  assert.equal(allowedContentTypes('application/*', ALLOWED_ENVOY_TYPES), 'text/plain;version=0.0.4');
  assert.equal(
    allowedContentTypes('application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited', ALLOWED_APP_TYPES),
    'text/plain;version=0.0.4',
  );
  assert.equal(allowedContentTypes('/', ALLOWED_APP_TYPES), 'text/plain;version=0.0.4');
  assert.equal(allowedContentTypes('', ALLOWED_APP_TYPES), 'text/plain;version=0.0.4');
  assert.equal(allowedContentTypes(undefined, ALLOWED_APP_TYPES), 'text/plain;version=0.0.4');
});

void test('negotiateMetricsFormat follows the app answer', () => {
  assert.equal(negotiateMetricsFormat('application/openmetrics-text; version=0.0.1'), FMT_OPENMETRICS_001);
  assert.equal(negotiateMetricsFormat('application/openmetrics-text; version=1.0.0; charset=utf-8'), FMT_OPENMETRICS_100);
  assert.equal(negotiateMetricsFormat('application/openmetrics-text'), FMT_OPENMETRICS_001);
  assert.equal(negotiateMetricsFormat('application/openmetrics-text; version=2.0.0'), FMT_TEXT);
  assert.equal(negotiateMetricsFormat('text/plain; version=0.0.4; charset=utf-8'), FMT_TEXT);
  assert.equal(negotiateMetricsFormat(''), FMT_TEXT);
  assert.equal(negotiateMetricsFormat(undefined), FMT_TEXT);
});

void test('scrapeTimeoutMs parses Prometheus seconds', () => {
  assert.equal(scrapeTimeoutMs('1.5'), 1500);
  assert.equal(scrapeTimeoutMs('10'), 10000);
  assert.equal(scrapeTimeoutMs(''), undefined);
  assert.equal(scrapeTimeoutMs('soon'), undefined);
});

void test('scrapeTimeoutMs: floats as Go ParseFloat, whole milliseconds, bounded; bad values fall back (undefined), logged', () => {
  assert.equal(scrapeTimeoutMs('16.1'), 16100);
  assert.equal(scrapeTimeoutMs('0.0005'), 1);
  assert.equal(scrapeTimeoutMs('1e10'), MAX_SCRAPE_TIMEOUT_MS);
  assert.equal(scrapeTimeoutMs('+Inf'), MAX_SCRAPE_TIMEOUT_MS);
  assert.equal(scrapeTimeoutMs('0x1p4'), 16000);
  for (const bad of ['NaN', '-1', '0', '-0', '0x10', '1_0', ' ', '1e', '.', '1.5s', '\u0661']) assert.equal(scrapeTimeoutMs(bad), undefined, bad);
  const warned: string[] = [];
  const { log, lines } = memoryLogger('default:debug');
  scrapeTimeoutMs('soon', log);
  warned.push(...lines);
  assert.match(warned[0]!, /Failed to parse timeout header "soon"/);
});
