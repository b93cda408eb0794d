// Runs the test control plane as its own process (for the demo and for tests that kill and restart it):
//   node build/test/controlplane/main.js --xds-address 127.0.0.1:15010 [--tls --root-cert-out PATH]
//        [--ca-dir DIR] [--require-token TOKEN] --listener-port 18080 (--upstream-port N | --start-upstream)
// Prints one JSON line {"event":"ready",...} on stdout once serving, then one JSON line per event
// (stream, request, csr). SIGTERM/SIGINT stop it (exit 0).
import { parseArgs } from 'node:util';
import { startHttpUpstream, type HttpUpstream } from './http-upstream.js';
import { TestCa } from './pki.js';
import { startControlPlane } from './server.js';

const USAGE = `usage: main.js --xds-address HOST:PORT [--tls] [--root-cert-out PATH] [--ca-dir DIR]
  [--require-token TOKEN] [--listener-address ADDR] --listener-port N
  (--upstream-port N | --start-upstream [--upstream-port N]) [--served-by NAME]`;

function port(v: string | undefined, flag: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`${flag} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${flag}: invalid port "${v}"`);
  return n;
}

async function main(): Promise<number> {
  // Handlers go in first: a supervisor may signal as soon as it reads the "ready" line, or even earlier.
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  const { values } = parseArgs({
    options: {
      'xds-address': { type: 'string', default: '127.0.0.1:15010' },
      tls: { type: 'boolean', default: false },
      'root-cert-out': { type: 'string' },
      'ca-dir': { type: 'string' },
      'require-token': { type: 'string' },
      'listener-address': { type: 'string', default: '127.0.0.1' },
      'listener-port': { type: 'string', default: '18080' },
      'upstream-port': { type: 'string' },
      'start-upstream': { type: 'boolean', default: false },
      'served-by': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  let upstream: HttpUpstream | undefined;
  let upstreamPort: number;
  if (values['start-upstream']) {
    upstream = await startHttpUpstream({ port: port(values['upstream-port'], '--upstream-port', 0), name: values['served-by'] ?? 'upstream' });
    upstreamPort = upstream.port;
  } else {
    upstreamPort = port(values['upstream-port'], '--upstream-port');
  }
  let ca: TestCa | undefined;
  if (values['ca-dir']) {
    ca = (await TestCa.load(values['ca-dir'])) ?? new TestCa();
    await ca.save(values['ca-dir']);
  }
  const cp = await startControlPlane({
    address: values['xds-address'],
    tls: values.tls,
    ...(values['root-cert-out'] ? { rootCertOut: values['root-cert-out'] } : {}),
    ...(values['require-token'] !== undefined ? { requireToken: values['require-token'] } : {}),
    ...(ca ? { ca } : {}),
    http: {
      listenerAddress: values['listener-address'],
      listenerPort: port(values['listener-port'], '--listener-port'),
      upstreamPort,
      ...(values['served-by'] ? { servedBy: values['served-by'] } : {}),
    },
  });
  let seenStreams = 0;
  let seenRequests = 0;
  let seenCsrs = 0;
  cp.on('event', () => {
    for (; seenStreams < cp.streams.length; seenStreams++) {
      const s = cp.streams[seenStreams]!;
      out({ event: 'stream', id: s.id, flavour: s.flavour, clusterId: s.metadata.clusterid, authorization: s.metadata.authorization ? 'present' : 'absent' });
    }
    for (; seenRequests < cp.requests.length; seenRequests++) {
      const r = cp.requests[seenRequests]!;
      out({ event: 'request', stream: r.stream, type: r.typeUrl, kind: r.kind, nonce: r.nonce, ...(r.error ? { error: r.error } : {}) });
    }
    for (; seenCsrs < cp.csrs.length; seenCsrs++) {
      const c = cp.csrs[seenCsrs]!;
      out({ event: 'csr', ok: c.ok, uris: c.uris, ...(c.error ? { error: c.error } : {}) });
    }
  });
  out({ event: 'ready', xdsAddress: cp.address, tls: values.tls, listenerPort: Number(values['listener-port']), upstreamPort });
  await stopped;
  await cp.stop();
  await upstream?.close();
  return 0;
}

// `node --test build/test` runs every .js file under a test/ directory as a test, this one included.
// Started that way (by the test runner, without arguments) it has nothing to do.
const runByTestRunner = process.env.NODE_TEST_CONTEXT !== undefined && process.argv.length <= 2;

(runByTestRunner ? Promise.resolve(0) : main()).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`controlplane: ${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    process.exit(2);
  },
);
