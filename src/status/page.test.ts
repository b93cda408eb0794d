import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeHtml, renderStatusPage } from './page.js';

void test('status page: not-ready blockers, xDS rows with NACKs, identity, events; every peer value escaped; no script or external asset', () => {
  const html = renderStatusPage(
    {
      agent: { name: 'meshagent', version: '0.1.0', istioVersion: '1.30.3', pid: 42, uptimeSeconds: 3 },
      envoy: { process: { epoch: 1, pid: 43, state: 'running', restarts: 1 }, server: { state: 'LIVE', version: 'abc/1.40.0' } },
      readiness: { ready: false, reason: 'r', blockers: [{ check: 'envoy', reason: 'LDS not yet accepted <script>alert(1)</script>' }] },
      xds: {
        upstreamAddress: 'istiod:15012',
        connected: true,
        types: { 'type.googleapis.com/envoy.config.listener.v3.Listener': { lastResponseVersion: 'v2', lastAckedVersion: 'v1', lastNack: 'bad "listener"', lastResponseResources: 3, lastResponseAt: 't' } },
        awaitingAnswer: ['type.googleapis.com/envoy.config.cluster.v3.Cluster'],
      },
      identity: { spiffeId: 'spiffe://cluster.local/ns/a/sa/b', state: 'ready', certificate: { serial: 'ab12', notAfter: 'x', nextRotation: 'y' } },
      dns: { tableReceived: true, names: 7, lastUpdate: 't2', updates: 2, rejectedUpdates: 1, listening: ['udp 127.0.0.1:15053'], upstreams: ['10.0.0.10:53'] },
      timeline: { startupPhasesMs: { ready: 120 }, events: [{ at: 't1', kind: 'nack', message: 'Envoy rejected LDS: <b>' }], dropped: 0 },
    },
    new Date(0),
  );
  assert.match(html, /NOT READY/);
  assert.match(html, /<li><b>envoy<\/b>: LDS not yet accepted &lt;script&gt;alert\(1\)&lt;\/script&gt;<\/li>/);
  assert.match(html, /<td title="type.googleapis.com\/envoy.config.listener.v3.Listener">LDS<\/td><td><code>v2<\/code><\/td><td><code>v1<\/code><\/td><td class="bad">bad &quot;listener&quot;<\/td>/);
  assert.match(html, /waiting for istiod to answer CDS/);
  assert.match(html, /spiffe:\/\/cluster.local\/ns\/a\/sa\/b/);
  assert.match(html, /Envoy rejected LDS: &lt;b&gt;/);
  assert.match(html, /<table id="dns"><tr><th>name table<\/th><td>7 names<\/td><\/tr>[\s\S]*<td>2 \(1\)<\/td>[\s\S]*10\.0\.0\.10:53/);
  assert.doesNotMatch(html, /<script|<link|src=|https?:/);
  assert.equal(escapeHtml(`<&>"'`), '&lt;&amp;&gt;&quot;&#39;');
  // sections may be null (no Envoy, no identity yet)
  assert.match(renderStatusPage({ readiness: { ready: true }, xds: null, identity: null, timeline: null }), /READY[\s\S]*no workload identity/);
  assert.doesNotMatch(renderStatusPage({ readiness: { ready: true } }), /DNS proxy/);
});
