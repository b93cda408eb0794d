// What Envoy shows when istiod refuses its ADS stream, through our proxy and through the Go pilot-agent:
// Envoy logs `grpc-message` as it arrives (no percent-decoding), so the text must reach it encoded as
// grpc-go encodes it (only '%' and bytes outside printable ASCII escaped), not with grpc-js's encodeURI.
// The Go pilot-agent (with its fixed ports) and its istiod run in a network namespace of their own.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { createLogger } from '../../src/lib/log.js';
import { createXdsProxy } from '../../src/xds/index.js';
import { TestCa } from '../controlplane/pki.js';
import { PEER_PATH, createNetns, startProc } from '../helpers/go-agent.js';
import { envoyBin, istioBootstrapTemplate, pilotAgentBin } from '../helpers/peers.js';
import { createPod } from '../helpers/pod.js';
import { grpcSpecEncode, startRefusingUpstream } from './raw-peers.js';

/** The refusal istiod sends when no identity in the token is allowed (the text Envoy must show). */
const REFUSAL = 'authorization failed: no identities ([spiffe://cluster.local/ns/default/sa/httpbin]) allowed (100%)';

function bootstrap(apiType: 'GRPC' | 'DELTA_GRPC'): unknown {
  return {
    node: { id: 'sidecar~127.0.0.1~envoy-status.default~default.svc.cluster.local', cluster: 'envoy-status.default' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    dynamic_resources: {
      ads_config: { api_type: apiType, transport_api_version: 'V3', set_node_on_first_message_only: true, grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }] },
      cds_config: { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: '0s' },
      lds_config: { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: '0s' },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds-grpc',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: './etc/istio/proxy/XDS' } } } }] }] },
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        },
      ],
    },
  };
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Polls a process's accumulated output for `re`. */
async function waitForText(output: () => string, re: RegExp, ms: number, what: string): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(output());
    if (m) return m[0];
    if (Date.now() > deadline) throw new Error(`${what}: no ${re} within ${ms} ms; output:\n${output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const CLOSE_LINE = /(\w+) gRPC config stream to xds-grpc closed[^\n]*/;

/** Runs Envoy through our proxy against an istiod that refuses; returns Envoy's "gRPC config stream ... closed" line. */
async function envoyCloseLine(apiType: 'GRPC' | 'DELTA_GRPC'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'xds-envoy-status-'));
  const refusing = await startRefusingUpstream(Status.PERMISSION_DENIED, REFUSAL);
  const proxy = createXdsProxy({
    udsPath: join(dir, 'etc', 'istio', 'proxy', 'XDS'),
    discoveryAddress: refusing.address,
    tls: null,
    tokenPath: null,
    log: createLogger({ outputLevels: 'default:info', sink: { write: () => undefined } }),
  });
  let envoy: ChildProcess | undefined;
  try {
    await proxy.start();
    await writeFile(join(dir, 'envoy.json'), JSON.stringify(bootstrap(apiType)));
    envoy = spawn(
      envoyBin(),
      ['-c', 'envoy.json', '--disable-hot-restart', '--log-level', 'info', '--component-log-level', 'config:debug', '--concurrency', '1'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    envoy.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    envoy.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const line = await waitForText(() => out, CLOSE_LINE, 20_000, 'Envoy');
    assert.ok(refusing.refused >= 1, 'the stream reached the refusing istiod');
    return line;
  } finally {
    if (envoy) await stopProcess(envoy);
    await proxy.close();
    await refusing.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** An istiod that refuses like startRefusingUpstream, as a process (to run inside a network namespace). */
const REFUSING_ISTIOD = `
const http2 = require('node:http2');
const [code, text, port] = process.argv.slice(1);
let msg = '';
for (const b of Buffer.from(text, 'utf8')) msg += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0');
const server = http2.createServer();
server.on('stream', (st) => {
  st.on('error', () => {});
  st.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': code, 'grpc-message': msg }, { endStream: true });
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\\n'));`;

/** The same with the Go pilot-agent (and its own bootstrap, DELTA_GRPC) between Envoy and the refusing istiod. */
async function goAgentCloseLine(): Promise<string> {
  const netns = await createNetns('mxds-status');
  const istiod = startProc(...netns.wrap(process.execPath, ['-e', REFUSING_ISTIOD, String(Status.PERMISSION_DENIED), REFUSAL, '15012']), { env: { PATH: PEER_PATH } });
  const pod = await createPod({
    proxyConfig: { discoveryAddress: '127.0.0.1:15012', controlPlaneAuthPolicy: 'NONE' },
    env: { CA_ADDR: '127.0.0.1:15012' },
    rootCert: new TestCa().rootCertPem,
  });
  let agent: ReturnType<typeof startProc> | undefined;
  try {
    await waitForText(istiod.output, /listening/, 10_000, 'the refusing istiod');
    await mkdir(join(pod.cwd, 'var/lib/istio/envoy'), { recursive: true });
    await copyFile(istioBootstrapTemplate(), join(pod.cwd, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json'));
    const args = pod.args.map((a) => (a.startsWith('--proxyComponentLogLevel') ? '--proxyComponentLogLevel=misc:error,config:debug' : a));
    agent = startProc(...netns.wrap(pilotAgentBin(), args), { cwd: pod.cwd, env: pod.env });
    return await waitForText(agent.output, CLOSE_LINE, 30_000, 'Envoy under pilot-agent');
  } finally {
    await agent?.stop(2000);
    await istiod.stop(1000);
    await pod.cleanup();
    await netns.dispose();
  }
}

/** What Envoy shows after "closed: " (status code, message and Envoy's own suffix), without the fields pilot-agent appends to Envoy's lines. */
const closedText = (line: string): string => line.slice(line.indexOf('closed: ')).split('\t')[0]!;

void describe('real Envoy: istiod refusing the stream, through the xDS proxy', () => {
  const expected = `closed: 7, ${grpcSpecEncode(REFUSAL)}`; // only the '%' is escaped, as grpc-go sends it
  for (const apiType of ['DELTA_GRPC', 'GRPC'] as const) {
    void it(`${apiType}: Envoy logs the refusal text as istiod sent it`, async () => {
      const line = await envoyCloseLine(apiType);
      assert.ok(line.includes(expected), `Envoy logged: ${line}`);
      assert.ok(!line.includes('%20') && !line.includes('%5B'), `Envoy logged: ${line}`);
    });
  }

  let goAvailable = true;
  try {
    pilotAgentBin();
    istioBootstrapTemplate();
  } catch {
    goAvailable = false;
  }
  void it('shows the same text as through the Go pilot-agent', { skip: goAvailable ? false : 'Go pilot-agent not installed (bash scripts/peers.sh all)' }, async () => {
    const ours = await envoyCloseLine('DELTA_GRPC');
    // pilot-agent races itself here: when forwarding Envoy's first request fails before it reads istiod's
    // status (the refusing istiod ends the stream at once), Envoy gets that send error ("2, send error for
    // type url ...: EOF") instead of istiod's refusal. That run says nothing about the text: run it again.
    let go = await goAgentCloseLine();
    for (let i = 0; i < 4 && /closed: 2, send error for type url [^:]*: EOF/.test(go); i++) go = await goAgentCloseLine();
    assert.match(go, /^DeltaAggregatedResources /);
    assert.equal(closedText(ours), closedText(go), `through us: ${ours}\nthrough pilot-agent: ${go}`);
  });
});
