// The DNS proxy's sockets: UDP and TCP on each listen address, every message handed to handler.ts.
// Limits: queries in flight over UDP (beyond: dropped and counted), TCP connections, bytes buffered per TCP
// connection (one message, 64 KiB), queries per TCP connection (128, as the Go agent's library), and idle
// TCP connections (closed after 8 s; 2 s before the first query).
import type { Socket } from 'node:net';
import type { Logger } from '../lib/log.js';
import { handleQuery, type HandlerDeps } from './handler.js';
import { MAX_DNS_MESSAGE } from './upstream.js';
import { bindDnsListeners, type DnsListeners, type ListenAddress } from './listen.js';

export { formatAddress, type ListenAddress } from './listen.js';

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

/**
 * Serves on sockets bound earlier (listen.ts bindDnsListeners, before Envoy is spawned), or binds them
 * first when given addresses (then rejecting, as bindDnsListeners does, on the first that fails).
 */
export async function startDnsServer(listen: DnsListeners | readonly ListenAddress[], deps: HandlerDeps, log: Logger, limits: DnsServerLimits = DEFAULT_LIMITS): Promise<DnsServer> {
  const l = 'bound' in listen ? listen : await bindDnsListeners(listen, log);
  const conns = new Set<Socket>();
  const dropped = { udp: 0, tcp: 0 };
  let inFlight = 0;
  let closed = false;

  const close = async (): Promise<void> => {
    closed = true;
    for (const c of conns) c.destroy();
    await l.close();
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

  for (const u of l.udp) {
    const sock = u.socket;
    sock.on('error', (e) => {
      if (!closed) log.error(`Local udp DNS server terminated: ${e.message}`);
    });
    u.adopt((msg, rinfo) => {
      if (inFlight >= limits.maxUdpInFlight) {
        dropped.udp++;
        return;
      }
      inFlight++;
      void handleQuery(msg, 'udp', deps).then((reply) => {
        inFlight--;
        if (reply && !closed) sock.send(reply, rinfo.port, rinfo.address, () => undefined);
      });
    });
  }
  for (const t of l.tcp) t.adopt(serveTcpConn);
  return { bound: l.bound, dropped, close };
}
