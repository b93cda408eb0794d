// Operability with the real istiod and the real Envoy (issue 8), in a private network namespace: istiod is
// reached through a relay that can black-hole it (TCP accepted, nothing forwarded or answered, as a wedged
// load balancer does). While black-holed, readiness explains itself (CDS and LDS not accepted) and the xDS
// proxy detects the stuck stream (counted, logged, on the status page's timeline) and closes it; once istiod
// answers again, Envoy's next stream gets its configuration and the pod becomes ready.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createNetns, PEER_PATH, startProc, type Netns, type Proc } from '../helpers/go-agent.js';
import { sidecarDir, startIstiod, type Istiod } from '../helpers/istiod.js';
import { AGENT_BIN } from '../helpers/peers.js';
import { poll } from '../helpers/poll.js';

const RELAY_PORT = 15112;
/** A TCP relay to istiod; a new connection follows the mode in the mode file (`blackhole` or `pass`). */
const RELAY_SCRIPT = `
const net = require('node:net');
const fs = require('node:fs');
const [listenPort, targetPort, modeFile] = process.argv.slice(1);
const held = new Set();
net.createServer((c) => {
  c.on('error', () => {});
  let mode = 'blackhole';
  try { mode = fs.readFileSync(modeFile, 'utf8').trim(); } catch {}
  if (mode !== 'pass') { held.add(c); c.on('close', () => held.delete(c)); c.resume(); return; }
  const u = net.connect(targetPort, '127.0.0.1');
  u.on('error', () => c.destroy());
  c.on('close', () => u.destroy());
  c.pipe(u).pipe(c);
}).listen(Number(listenPort), '127.0.0.1', () => process.stdout.write('relay listening\\n'));
`;

void describe('readiness explained and a stuck stream recovered (real istiod behind a black hole, real Envoy)', { timeout: 240_000 }, () => {
  let netns: Netns | undefined;
  let istiod: Istiod | undefined;
  let relay: Proc | undefined;
  let agent: Proc | undefined;
  let dir: string | undefined;
  const diag = (): string => `--- agent ---\n${(agent?.output() ?? '').slice(-6000)}\n--- relay ---\n${relay?.output() ?? ''}`;

  before(async () => {
    netns = await createNetns('mops');
    istiod = await startIstiod({ netns });
    dir = await mkdtemp(join(tmpdir(), 'mops-'));
    await writeFile(join(dir, 'relay-mode'), 'blackhole');
    const [rc, ra] = netns.wrap(process.execPath, ['-e', RELAY_SCRIPT, String(RELAY_PORT), String(istiod.ports.secureGrpc), join(dir, 'relay-mode')]);
    relay = startProc(rc, ra, { env: { PATH: PEER_PATH } });
    assert.ok(await netns.waitTcp(RELAY_PORT, 10_000), 'relay listening');
    const env = await sidecarDir(istiod, dir, {
      // health reporting to istiod (WorkloadEntry health): the "application" is istiod's HTTP port
      proxyConfig: { discoveryAddress: `localhost:${RELAY_PORT}`, readinessProbe: { tcpSocket: { host: '127.0.0.1', port: istiod.ports.http }, periodSeconds: 1 } },
      // the CA is reached directly: only the xDS path is black-holed
      env: { CA_ADDR: istiod.discoveryAddress, XDS_STUCK_STREAM_TIMEOUT: '3s' },
    });
    const [cmd, args] = netns.wrap(AGENT_BIN, ['proxy', 'sidecar', '--proxyLogLevel=warning', '--log_output_level=default:info']);
    agent = startProc(cmd, args, { cwd: dir, env });
  });

  after(async () => {
    await agent?.stop(10_000);
    await relay?.stop(2000);
    await istiod?.stop();
    await netns?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void it('while black-holed: not ready, saying CDS and LDS are not accepted; the stuck stream is detected and closed', async () => {
    const ns = netns!;
    const body = await poll('a 503 naming CDS and LDS', 60_000, async () => {
      const r = await ns.fetch('http://127.0.0.1:15020/healthz/ready');
      return r.status === 503 && /CDS and LDS not yet accepted by Envoy/.test(r.body) ? r.body : undefined;
    }, diag);
    assert.match(body, /^not ready: envoy: config not received from XDS server \(is Istiod running\?\)/m);
    await poll('the stuck stream detected', 60_000, async () => (/istiod did not answer the (CDS|LDS) request within 3000ms; closing the stream so that Envoy reconnects/.test(agent!.output()) ? true : undefined), diag);
    const metrics = (await ns.fetch('http://127.0.0.1:15020/stats/prometheus')).body;
    assert.match(metrics, /^istio_agent_xds_stuck_streams_total\{reason="no-answer"\} [1-9]/m);
  });

  void it('once istiod answers again: Envoy gets its configuration through a new stream and the pod is ready; the page tells the story', async () => {
    const ns = netns!;
    await writeFile(join(dir!, 'relay-mode'), 'pass');
    await poll('ready', 90_000, async () => ((await ns.fetch('http://127.0.0.1:15020/healthz/ready')).status === 200 ? true : undefined), diag);
    const page = (await ns.fetch('http://127.0.0.1:15020/')).body;
    assert.match(page, /READY/);
    assert.match(page, /spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
    assert.match(page, />CDS<\/td>/);
    assert.match(page, />stuck-stream<\/td><td>istiod did not answer (CDS|LDS) within 3000ms/);
    const status = JSON.parse((await ns.fetch('http://127.0.0.1:15020/debug/status')).body) as { xds: { counts: { stuckStreams: number }; connected: boolean } };
    assert.ok(status.xds.counts.stuckStreams >= 1);
    assert.equal(status.xds.connected, true);
    // the health report went to istiod on the stream (after Envoy's first LDS request); istiod took it
    // and the stream stayed up (a WorkloadEntry needs Kubernetes, which this istiod runs without)
    await poll('a health report to istiod', 30_000, async () => (/healthcheck\tsuccess threshold hit, marking as healthy/.test(agent!.output()) && /reported healthy to istiod/.test((await ns.fetch('http://127.0.0.1:15020/')).body) ? true : undefined), diag);
    const after = JSON.parse((await ns.fetch('http://127.0.0.1:15020/debug/status')).body) as { xds: { connected: boolean; types: Record<string, { requests: number }> } };
    assert.equal(after.xds.connected, true);
    assert.ok((after.xds.types['type.googleapis.com/istio.v1.HealthInformation']?.requests ?? 0) >= 1);
  });
});
