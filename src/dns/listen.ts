// The DNS proxy's sockets, bound before Envoy is spawned, as pilot-agent binds them before anything else:
// a port clash stops start-up with nothing started. This module does not load the DNS codec, so binding
// costs start-up only the sockets. Until the server (server.ts) adopts them, UDP queries are kept (bounded)
// and TCP connections wait, paused and unread: a query sent in the meantime is answered, not lost (a lost
// UDP query would cost the application its resolver's time-out, 5 s by default).
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { open } from 'node:fs/promises';
import { createServer, isIPv4, isIPv6, type Server as TcpServer, type Socket } from 'node:net';
import type { Logger } from '../lib/log.js';
import { AgentError, errorMessage } from '../lib/errors.js';
import { splitHostPort, type DnsSettings } from './options.js';
import { MAX_RESOLV_CONF_BYTES, parseResolvConf, type ResolvConf } from './resolvconf.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** UDP queries kept before the server adopts the sockets (each at most 64 KiB; the rest dropped). */
export const MAX_EARLY_UDP_QUERIES = 64;
/** TCP connections held, paused, before the server adopts the sockets (the rest closed). */
export const MAX_EARLY_TCP_CONNECTIONS = 64;

export function formatAddress(a: ListenAddress): string {
  return isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Reads the first existing resolv.conf of `paths` (bounded). */
export async function readResolvConf(paths: readonly string[]): Promise<{ path: string; conf: ResolvConf }> {
  let lastErr: unknown;
  for (const path of paths) {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      lastErr = e;
      continue;
    }
    try {
      const buf = Buffer.alloc(MAX_RESOLV_CONF_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return { path, conf: parseResolvConf(buf.toString('utf8', 0, bytesRead)) };
    } finally {
      await fh.close();
    }
  }
  throw new AgentError('AGENT_ERR_CONFIG', `failed to start local DNS server: failed to load ${paths.at(-1)}: ${errorMessage(lastErr)}`);
}

/**
 * Where to listen, as pilot-agent chooses: `localhost:<port>` means 127.0.0.1 when the nameservers have an
 * IPv4 one and [::1] when they have an IPv6 one (both, IPv4 first, when they have both; 127.0.0.1 when there
 * is none); an empty host means every address; anything else is used as it is.
 */
export function listenAddresses(addr: string, servers: readonly string[]): ListenAddress[] {
  let hp: { host: string; port: number };
  try {
    hp = splitHostPort(addr);
  } catch (e) {
    throw new AgentError('AGENT_ERR_CONFIG', `failed to start local DNS server: ${errorMessage(e)}`);
  }
  const bare = (x: string): string => x.split('%')[0] ?? x;
  if (hp.host === 'localhost' && servers.length > 0) {
    const out: ListenAddress[] = [];
    if (servers.some((x) => isIPv4(x))) out.push({ host: '127.0.0.1', port: hp.port });
    if (servers.some((x) => isIPv6(bare(x)))) out.push({ host: '::1', port: hp.port });
    return out;
  }
  if (hp.host === 'localhost') return [{ host: '127.0.0.1', port: hp.port }];
  if (hp.host === '') return [{ host: '::', port: hp.port }];
  return [{ host: hp.host, port: hp.port }];
}

export interface UdpListener {
  readonly address: ListenAddress;
  readonly socket: UdpSocket;
  /** From now on every query goes to `onMessage`, starting with those kept since the bind. */
  adopt(onMessage: (msg: Buffer, rinfo: RemoteInfo) => void): void;
}

export interface TcpListener {
  readonly address: ListenAddress;
  readonly server: TcpServer;
  /** From now on every connection goes to `onConnection` (paused: it resumes it), the waiting ones first. */
  adopt(onConnection: (sock: Socket) => void): void;
}

export interface DnsListeners {
  /** `udp 127.0.0.1:15053`, `tcp 127.0.0.1:15053`, ... in the order bound. */
  readonly bound: readonly string[];
  readonly udp: readonly UdpListener[];
  readonly tcp: readonly TcpListener[];
  /** Closes every socket (and the connections still waiting). Idempotent. */
  close(): Promise<void>;
}

function bindUdp(a: ListenAddress): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: isIPv6(a.host) ? 'udp6' : 'udp4', reuseAddr: false });
    const onError = (e: Error): void => {
      sock.close();
      reject(e);
    };
    sock.once('error', onError);
    sock.bind({ address: a.host, port: a.port, exclusive: true }, () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}

function listenTcp(srv: TcpServer, a: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    srv.once('error', onError);
    srv.listen({ host: a.host, port: a.port, exclusive: true }, () => {
      srv.off('error', onError);
      resolve();
    });
  });
}

function udpListener(address: ListenAddress, socket: UdpSocket): UdpListener {
  let early: { msg: Buffer; rinfo: RemoteInfo }[] | undefined = [];
  let handler: ((msg: Buffer, rinfo: RemoteInfo) => void) | undefined;
  socket.on('error', () => undefined); // the server logs them once it serves; never an unhandled 'error'
  socket.on('message', (msg, rinfo) => {
    if (handler) return handler(msg, rinfo);
    if (early && early.length < MAX_EARLY_UDP_QUERIES) early.push({ msg, rinfo });
  });
  return {
    address,
    socket,
    adopt(onMessage) {
      handler = onMessage;
      const kept = early ?? [];
      early = undefined;
      for (const q of kept) onMessage(q.msg, q.rinfo);
    },
  };
}

function tcpListener(address: ListenAddress, server: TcpServer, waiting: Set<Socket>): TcpListener {
  return {
    address,
    server,
    adopt(onConnection) {
      const serve = (sock: Socket): void => {
        onConnection(sock);
        sock.resume();
      };
      server.removeAllListeners('connection');
      server.on('connection', serve);
      for (const sock of waiting) if (!sock.destroyed) serve(sock);
      waiting.clear();
    },
  };
}

/**
 * Binds UDP then TCP on each address, in order (pilot-agent's order); rejects on the first that fails,
 * after closing what was bound, with an Error naming the protocol and address.
 */
export async function bindDnsListeners(addresses: readonly ListenAddress[], log: Logger): Promise<DnsListeners> {
  const udp: UdpListener[] = [];
  const tcp: TcpListener[] = [];
  const waiting = new Set<Socket>();
  const bound: string[] = [];
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    for (const u of udp) {
      try {
        u.socket.close();
      } catch {
        // already closed
      }
    }
    for (const s of waiting) s.destroy();
    await Promise.all(tcp.map((t) => new Promise<void>((r) => t.server.close(() => r()))));
  };
  try {
    for (const a of addresses) {
      const addr = formatAddress(a);
      log.info(`Starting local udp DNS server on ${addr}`);
      try {
        udp.push(udpListener(a, await bindUdp(a)));
      } catch (e) {
        throw new Error(`Failed to listen on udp port ${addr}: ${errorMessage(e)}`, { cause: e });
      }
      bound.push(`udp ${addr}`);
      log.info(`Starting local tcp DNS server on ${addr}`);
      const srv = createServer({ noDelay: true, pauseOnConnect: true }, (sock) => {
        if (waiting.size >= MAX_EARLY_TCP_CONNECTIONS) return void sock.destroy();
        sock.on('error', () => undefined);
        sock.once('close', () => waiting.delete(sock));
        waiting.add(sock);
      });
      try {
        await listenTcp(srv, a);
      } catch (e) {
        throw new Error(`Failed to listen on tcp port ${addr}: ${errorMessage(e)}`, { cause: e });
      }
      srv.on('error', () => undefined); // accept errors (e.g. EMFILE) are retried by libuv
      tcp.push(tcpListener(a, srv, waiting));
      bound.push(`tcp ${addr}`);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { bound, udp, tcp, close };
}

/** What the DNS proxy needs before it serves: the resolv.conf it forwards to, and its bound sockets. */
export interface PreparedDns {
  readonly resolv: { readonly path: string; readonly conf: ResolvConf };
  readonly listeners: DnsListeners;
}

/**
 * Start-up, before Envoy is spawned: reports the settings' warnings and errors, reads resolv.conf, binds
 * the sockets. Rejects with an AgentError (`failed to start local DNS server: ...`) naming what failed.
 */
export async function prepareDns(s: DnsSettings, log: Logger): Promise<PreparedDns> {
  for (const w of s.warnings) log.warn(w);
  for (const e of s.errors) log.error(e);
  const resolv = await readResolvConf(s.resolvConfPaths);
  const conf = resolv.conf;
  if (conf.unusable.length) log.warn(`ignoring nameserver entries of ${resolv.path} that are not IP addresses: ${conf.unusable.join(', ')}`);
  if (conf.servers.length === 0) log.error(`${resolv.path} has no usable nameserver: names outside the mesh get SERVFAIL`);
  const addresses = listenAddresses(s.addr, conf.servers);
  try {
    return { resolv, listeners: await bindDnsListeners(addresses, log) };
  } catch (e) {
    const msg = errorMessage(e);
    log.error(msg);
    throw new AgentError('AGENT_ERR_IO', `failed to start local DNS server: ${msg}`, { cause: e });
  }
}
