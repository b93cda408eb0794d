// Runs the test control plane as its own process (for the demo and for tests that kill and restart it):
//   node build/test/controlplane/main.js --xds-address 127.0.0.1:15010 [--tls --root-cert-out PATH]
//        [--ca-dir DIR] [--require-token TOKEN] --listener-port 18080 (--upstream-port N | --start-upstream)
//        [--listener-mtls] [--upstream-mtls [--upstream-san SPIFFE-ID] [--upstream-sni NAME]]
//        [--ca-fault MODE] [--cert-ttl-max SECONDS] [--stdin-commands]
//   node build/test/controlplane/main.js --ca-only --xds-address 127.0.0.1:15012 --tls --ca-dir DIR ...
//        (the CA alone, no ADS: to stop and restart it independently of xDS)
// Prints one JSON line {"event":"ready",...} on stdout once serving, then one JSON line per event
// (stream, request, csr). SIGTERM/SIGINT stop it (exit 0). With --stdin-commands it reads commands on
// stdin, one a line: `ca-fault MODE` (MODE as --ca-fault, or `none`) and `set-ca DIR` (sign with the CA
// saved in DIR, created if absent: root rotation without a restart); each answered by a JSON line.
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { startHttpUpstream, type HttpUpstream } from './http-upstream.js';
import { TestCa, type TestCaOptions } from './pki.js';
import { describeCaFault, parseCaFault, startControlPlane, type CaFault, type ControlPlane } from './server.js';

const USAGE = `usage: main.js --xds-address HOST:PORT [--tls] [--root-cert-out PATH] [--ca-dir DIR]
  [--require-token TOKEN] [--listener-address ADDR] --listener-port N [--listener-mtls]
  (--upstream-port N | --start-upstream [--upstream-port N] [--echo-header NAME]...) [--served-by NAME]
  [--upstream-mtls [--upstream-san SPIFFE-ID] [--upstream-sni NAME]]
  [--ca-only] [--ca-fault none|garbage|single|other-identity|other-key|expired|hang|status:CODE[:DETAILS]]
  [--cert-ttl-max SECONDS] [--stdin-commands]`;

function port(v: string | undefined, flag: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`${flag} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${flag}: invalid port "${v}"`);
  return n;
}

function seconds(v: string, flag: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n <= 0) throw new Error(`${flag}: invalid number of seconds "${v}"`);
  return n;
}

function fault(v: string, flag: string): CaFault | undefined {
  try {
    return parseCaFault(v);
  } catch (e) {
    throw new Error(`${flag}: ${(e as Error).message}`, { cause: e });
  }
}

function rootInfo(ca: TestCa): { sha256: string; serial: string } {
  return { sha256: createHash('sha256').update(ca.root.x509.raw).digest('hex'), serial: ca.root.x509.serialNumber };
}

/** A bad command line (the usage is printed with it). */
class UsageError extends Error {}

/** The command line, checked: every problem with a flag is found here, before anything starts. */
function parseFlags(args: readonly string[]) {
  const { values } = parseArgs({
    args: [...args],
    options: {
      'xds-address': { type: 'string', default: '127.0.0.1:15010' },
      tls: { type: 'boolean', default: false },
      'root-cert-out': { type: 'string' },
      'ca-dir': { type: 'string' },
      'require-token': { type: 'string' },
      'listener-address': { type: 'string', default: '127.0.0.1' },
      'listener-port': { type: 'string', default: '18080' },
      'listener-mtls': { type: 'boolean', default: false },
      'upstream-port': { type: 'string' },
      'start-upstream': { type: 'boolean', default: false },
      'echo-header': { type: 'string', multiple: true },
      'upstream-mtls': { type: 'boolean', default: false },
      'upstream-san': { type: 'string' },
      'upstream-sni': { type: 'string' },
      'served-by': { type: 'string' },
      'ca-only': { type: 'boolean', default: false },
      'ca-fault': { type: 'string' },
      'cert-ttl-max': { type: 'string' },
      'stdin-commands': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  const caOnly = values['ca-only'];
  if (caOnly) {
    const dataPath = ['start-upstream', 'upstream-port', 'listener-mtls', 'upstream-mtls', 'upstream-san', 'upstream-sni', 'echo-header'] as const;
    const given = dataPath.filter((f) => values[f] !== undefined && values[f] !== false);
    if (given.length) throw new Error(`--ca-only serves no listener or cluster: drop ${given.map((f) => `--${f}`).join(', ')}`);
  } else {
    if ((values['upstream-san'] !== undefined || values['upstream-sni'] !== undefined) && !values['upstream-mtls']) {
      throw new Error('--upstream-san and --upstream-sni need --upstream-mtls');
    }
    if (values['echo-header'] && !values['start-upstream']) throw new Error('--echo-header needs --start-upstream');
  }
  const caFault = values['ca-fault'] !== undefined ? fault(values['ca-fault'], '--ca-fault') : undefined;
  const caOpts: TestCaOptions = values['cert-ttl-max'] !== undefined ? { maxTtlSeconds: seconds(values['cert-ttl-max'], '--cert-ttl-max') } : {};
  const listenerPort = caOnly ? 0 : port(values['listener-port'], '--listener-port');
  const upstreamPortFlag = caOnly ? 0 : port(values['upstream-port'], '--upstream-port', values['start-upstream'] ? 0 : undefined);
  const upstreamMtls = values['upstream-mtls']
    ? { ...(values['upstream-san'] ? { san: values['upstream-san'] } : {}), ...(values['upstream-sni'] ? { sni: values['upstream-sni'] } : {}) }
    : undefined;
  return { values, caOnly, caFault, caOpts, listenerPort, upstreamPortFlag, upstreamMtls };
}

async function main(): Promise<number> {
  // Handlers go in first: a supervisor may signal as soon as it reads the "ready" line, or even earlier.
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  let flags: ReturnType<typeof parseFlags>;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (e) {
    throw new UsageError((e as Error).message, { cause: e });
  }
  const { values, caOnly, caFault, caOpts, listenerPort, upstreamMtls } = flags;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

  let upstream: HttpUpstream | undefined;
  let upstreamPort = flags.upstreamPortFlag;
  if (!caOnly && values['start-upstream']) {
    upstream = await startHttpUpstream({
      port: flags.upstreamPortFlag,
      name: values['served-by'] ?? 'upstream',
      ...(values['echo-header'] ? { echoHeaders: values['echo-header'] } : {}),
    });
    upstreamPort = upstream.port;
  }
  const ca = values['ca-dir'] ? await TestCa.loadOrCreate(values['ca-dir'], caOpts) : new TestCa(caOpts);
  const cp = await startControlPlane({
    address: values['xds-address'],
    tls: values.tls,
    ...(values['root-cert-out'] ? { rootCertOut: values['root-cert-out'] } : {}),
    ...(values['require-token'] !== undefined ? { requireToken: values['require-token'] } : {}),
    ca,
    ...(caFault !== undefined ? { caFault } : {}),
    caOnly,
    ...(caOnly
      ? {}
      : {
          http: {
            listenerAddress: values['listener-address'],
            listenerPort,
            upstreamPort,
            ...(values['served-by'] ? { servedBy: values['served-by'] } : {}),
            ...(values['listener-mtls'] ? { listenerMtls: true } : {}),
            ...(upstreamMtls ? { upstreamMtls } : {}),
          },
        }),
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
      out({
        event: 'csr',
        ok: c.ok,
        uris: c.uris,
        validity: c.validity,
        ...(c.serial ? { serial: c.serial } : {}),
        ...(c.notAfter ? { notAfter: new Date(c.notAfter).toISOString() } : {}),
        ...(c.fault ? { fault: c.fault } : {}),
        ...(c.error ? { error: c.error } : {}),
      });
    }
  });
  if (values['stdin-commands']) readCommands(cp, caOpts, out);
  out({
    event: 'ready',
    xdsAddress: cp.address,
    tls: values.tls,
    caOnly,
    ...(caOnly ? {} : { listenerPort, upstreamPort, listenerMtls: values['listener-mtls'], upstreamMtls: upstreamMtls ?? false }),
    root: rootInfo(cp.ca),
    ...(caFault !== undefined ? { caFault: describeCaFault(caFault) } : {}),
  });
  await stopped;
  await cp.stop();
  await upstream?.close();
  return 0;
}

/** `ca-fault MODE` and `set-ca DIR`, one a line on stdin; each answered by a JSON line. */
function readCommands(cp: ControlPlane, caOpts: TestCaOptions, out: (o: Record<string, unknown>) => void): void {
  let queue = Promise.resolve();
  createInterface({ input: process.stdin }).on('line', (line) => {
    queue = queue.then(async () => {
      const [cmd = '', ...rest] = line.trim().split(/\s+/);
      const arg = line.trim().slice(cmd.length).trim();
      try {
        if (cmd === '') return;
        if (cmd === 'ca-fault' && rest.length) {
          cp.caFault = parseCaFault(arg);
          out({ event: 'ca-fault', fault: cp.caFault === undefined ? 'none' : describeCaFault(cp.caFault) });
        } else if (cmd === 'set-ca' && rest.length) {
          cp.setCa(await TestCa.loadOrCreate(arg, caOpts));
          out({ event: 'set-ca', dir: arg, root: rootInfo(cp.ca) });
        } else {
          throw new Error('commands: ca-fault MODE | set-ca DIR');
        }
      } catch (e) {
        out({ event: 'command-error', command: line, error: (e as Error).message });
      }
    });
  });
}

// `node --test build/test` runs every .js file under a test/ directory as a test, this one included.
// Started that way (by the test runner, without arguments) it has nothing to do.
const runByTestRunner = process.env.NODE_TEST_CONTEXT !== undefined && process.argv.length <= 2;

(runByTestRunner ? Promise.resolve(0) : main()).then(
  (code) => process.exit(code),
  (e: unknown) => {
    // exit 2 either way (as before); the usage only helps with a bad command line
    process.stderr.write(`controlplane: ${e instanceof Error ? e.message : String(e)}\n${e instanceof UsageError ? `${USAGE}\n` : ''}`);
    process.exit(2);
  },
);
