// The DNS proxy's sockets: UDP and TCP on each listen address, every message handed to handler.ts.
// Limits: queries in flight over UDP (beyond: dropped and counted), TCP connections, bytes buffered per TCP
// connection (one message, 64 KiB), queries per TCP connection (128, as the Go agent's library), and idle
// TCP connections (closed after 8 s; 2 s before the first query).
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server as TcpServer, type Socket } from 'node:net';
import { isIPv6 } from 'node:net';
import type { Logger } from '../lib/log.js';
import { handleQuery, type HandlerDeps } from './handler.js';
import { MAX_DNS_MESSAGE } from './upstream.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface DnsServerLimits {
  readonly maxUdpInFlight: number;
  readonly maxTcpConnections: number;
  readonly maxQueriesPerTcpConnection: number;
  readonly tcpIdleMs: number;
  readonly tcpFirstReadMs: number;
}

export const DEFAULT_LIMITS: DnsServerLimits = { maxUdpInFlight: 4096, maxTcpConnections: 256, maxQueriesPerTcpConnection: 128, tcpIdleMs: 8000, tcpFirstReadMs: 2000 };

export interface DnsServer {
  /** Addresses actually bound (`udp 127.0.0.1:15053`, ...). */
  readonly bound: readonly string[];
  /** Queries dropped because too many were in flight, and TCP connections refused over the limit. */
  readonly dropped: { udp: number; tcp: number };
  close(): Promise<void>;
}

export function formatAddress(a: ListenAddress): string {
  return isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
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

/**
 * Binds UDP then TCP on each address, in order (pilot-agent's order); rejects on the first that fails,
 * after closing what was bound, with an Error naming the protocol and address.
 */
export async function startDnsServer(addresses: readonly ListenAddress[], deps: HandlerDeps, log: Logger, limits: DnsServerLimits = DEFAULT_LIMITS): Promise<DnsServer> {
  const udps: UdpSocket[] = [];
  const tcps: TcpServer[] = [];
  const conns = new Set<Socket>();
  const bound: string[] = [];
  const dropped = { udp: 0, tcp: 0 };
  let inFlight = 0;
  let closed = false;

  const close = async (): Promise<void> => {
    closed = true;
    for (const u of udps) {
      try {
        u.close();
      } catch {
        // already closed
      }
    }
    for (const c of conns) c.destroy();
    await Promise.all(tcps.map((t) => new Promise<void>((r) => t.close(() => r()))));
  };

  const serveTcpConn = (sock: Socket): void => {
    if (conns.size >= limits.maxTcpConnections) {
      dropped.tcp++;
      sock.destroy();
      return;
    }
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setTimeout(limits.tcpFirstReadMs, () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let served = 0;
    let busy = false;
    const pump = (): void => {
      if (busy || sock.destroyed) return;
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const msg = Buffer.from(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
      served++;
      busy = true;
      sock.setTimeout(0);
      void handleQuery(msg, 'tcp', deps).then((reply) => {
        busy = false;
        if (sock.destroyed) return;
        if (reply) {
          const frame = Buffer.allocUnsafe(2 + reply.length);
          frame.writeUInt16BE(reply.length, 0);
          reply.copy(frame, 2);
          sock.write(frame);
        }
        if (served >= limits.maxQueriesPerTcpConnection) {
          sock.end();
          return;
        }
        sock.setTimeout(limits.tcpIdleMs, () => sock.destroy());
        pump();
      });
    };
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      // at most one message (and the next one's length) buffered: a client sending faster waits on TCP
      if (buf.length > 2 * (MAX_DNS_MESSAGE + 2)) {
        sock.destroy();
        return;
      }
      pump();
    });
  };

  try {
    for (const a of addresses) {
      const addr = formatAddress(a);
      log.info(`Starting local udp DNS server on ${addr}`);
      let u: UdpSocket;
      try {
        u = await bindUdp(a);
      } catch (e) {
        throw new Error(`Failed to listen on udp port ${addr}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      udps.push(u);
      bound.push(`udp ${addr}`);
      u.on('error', (e) => {
        if (!closed) log.error(`Local udp DNS server terminated: ${e.message}`);
      });
      u.on('message', (msg, rinfo) => {
        if (inFlight >= limits.maxUdpInFlight) {
          dropped.udp++;
          return;
        }
        inFlight++;
        void handleQuery(msg, 'udp', deps).then((reply) => {
          inFlight--;
          if (reply && !closed) u.send(reply, rinfo.port, rinfo.address, () => undefined);
        });
      });
      log.info(`Starting local tcp DNS server on ${addr}`);
      const t = createServer({ noDelay: true }, serveTcpConn);
      try {
        await listenTcp(t, a);
      } catch (e) {
        throw new Error(`Failed to listen on tcp port ${addr}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      tcps.push(t);
      bound.push(`tcp ${addr}`);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { bound, dropped, close };
}
