// Test fixtures for the status server: local HTTP servers, an HTTP client, and a real Envoy with a small
// bootstrap (static-only, or file-based CDS/LDS so that update_success counters move without a control plane).
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import type { Http2SecureServer, Http2Server, ServerHttp2Stream } from 'node:http2';
import forge from 'node-forge';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as netServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { envoyBin } from '../helpers/peers.js';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export function get(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; localAddress?: string; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers ?? {},
        agent: false,
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let buf = Buffer.concat(chunks);
          if (res.headers['content-encoding'] === 'gzip') buf = gunzipSync(buf);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: buf.toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export interface LocalServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function localServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  host = '127.0.0.1',
): Promise<LocalServer> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port that was free a moment ago (for Envoy's admin, which must keep its port across hot restarts). */
export async function freePort(): Promise<number> {
  const s = netServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls `fn` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

const HCM = {
  name: 'envoy.filters.network.http_connection_manager',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 's',
    route_config: {
      virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'hi' } } }] }],
    },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
  },
};

export interface EnvoyHandle {
  dir: string;
  adminPort: number;
  /** Port of the listener serving `hi`. */
  listenerPort: number;
  proc: ChildProcess;
  exited: Promise<number | null>;
  log(): Promise<string>;
  /** Starts the next epoch (hot restart) with the same bootstrap; returns its process. */
  hotRestart(epoch: number): Promise<{ proc: ChildProcess; exited: Promise<number | null> }>;
  stop(): Promise<void>;
}

/**
 * Starts a real Envoy: `dynamic` uses file-based CDS and LDS (one cluster, one listener), so the CDS/LDS
 * update_success counters become 1 as with a control plane; otherwise the listener is static and no xDS
 * update ever happens.
 */
export async function startEnvoy(opts: { dynamic: boolean }): Promise<EnvoyHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'status-envoy-'));
  const adminPort = await freePort();
  const listenerPort = await freePort();
  const listener = {
    name: 'l1',
    address: { socket_address: { address: '127.0.0.1', port_value: listenerPort } },
    filter_chains: [{ filters: [HCM] }],
  };
  const bootstrap: Record<string, unknown> = {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    node: { id: 'status-test', cluster: 'status-test' },
  };
  if (opts.dynamic) {
    const cluster = {
      '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
      name: 'c1',
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: { cluster_name: 'c1', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9 } } } }] }] },
    };
    await writeFile(join(dir, 'cds.json'), JSON.stringify({ version_info: '1', resources: [cluster] }));
    await writeFile(
      join(dir, 'lds.json'),
      JSON.stringify({ version_info: '1', resources: [{ '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener', ...listener }] }),
    );
    bootstrap['dynamic_resources'] = {
      cds_config: { path_config_source: { path: join(dir, 'cds.json') }, resource_api_version: 'V3' },
      lds_config: { path_config_source: { path: join(dir, 'lds.json') }, resource_api_version: 'V3' },
    };
  } else {
    bootstrap['static_resources'] = { listeners: [listener] };
  }
  const config = join(dir, 'envoy.json');
  await writeFile(config, JSON.stringify(bootstrap));
  const logFile = join(dir, 'envoy.log');
  const procs: ChildProcess[] = [];
  const launch = (extra: string[]): { proc: ChildProcess; exited: Promise<number | null> } => {
    const proc = spawn(
      envoyBin(),
      ['-c', config, '--concurrency', '1', '-l', 'warning', '--log-path', logFile, '--drain-time-s', '1', '--drain-strategy', 'immediate', '--parent-shutdown-time-s', '2', ...extra],
      { stdio: 'ignore' },
    );
    procs.push(proc);
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    return { proc, exited };
  };
  const first = launch(['--use-dynamic-base-id', '--base-id-path', join(dir, 'base-id'), '--restart-epoch', '0']);
  const handle: EnvoyHandle = {
    dir,
    adminPort,
    listenerPort,
    proc: first.proc,
    exited: first.exited,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    hotRestart: async (epoch) => {
      const baseId = (await readFile(join(dir, 'base-id'), 'utf8')).trim();
      return launch(['--base-id', baseId, '--restart-epoch', String(epoch)]);
    },
    stop: async () => {
      for (const p of procs) {
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      }
      await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
      await rm(dir, { recursive: true, force: true });
    },
  };
  // wait for the admin API
  await eventually(
    'Envoy admin',
    async () => {
      if (first.proc.exitCode !== null) throw new Error(`envoy exited ${first.proc.exitCode}: ${await handle.log()}`);
      const r = await get(`http://127.0.0.1:${adminPort}/ready`, { timeoutMs: 1000 });
      return r.status > 0 ? true : undefined;
    },
    15_000,
  ).catch(async (e: unknown) => {
    await handle.stop();
    throw e;
  });
  return handle;
}

export function selfSigned(): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3_600_000);
  cert.setSubject([{ name: 'commonName', value: 'app.local' }]);
  cert.setIssuer([{ name: 'commonName', value: 'app.local' }]);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { key: keyPem, cert: forge.pki.certificateToPem(cert) };
}

/** An HTTP/2 server that counts its open sessions (connections). */
export async function h2Server<S extends Http2Server | Http2SecureServer>(
  server: S,
  onStream: (stream: ServerHttp2Stream, headers: Record<string, unknown>) => void,
): Promise<{ server: S; port: number; openSessions: () => number; close: () => Promise<void> }> {
  let open = 0;
  const sessions = new Set<{ destroy(): void }>();
  server.on('session', (s) => {
    open++;
    sessions.add(s);
    s.on('error', () => undefined);
    s.once('close', () => {
      open--;
      sessions.delete(s);
    });
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    onStream(stream, headers as Record<string, unknown>);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    openSessions: () => open,
    close: async () => {
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A gRPC-framed message. */
export function grpcFrame(msg: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** Open connections of a server. */
export function openConnections(server: Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((_e, n) => resolve(n)));
}
