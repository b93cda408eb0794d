// Forwarding to the resolv.conf nameservers. The query goes out as the client sent it (same ID, flags,
// EDNS), from a fresh socket per query (a new random source port, as the Go agent). The reply comes back
// as the upstream sent it. Beyond pilot-agent:
// - a UDP query without a reply is sent again (every `retransmitMs`) until the per-server timeout;
// - a truncated UDP reply is fetched again over TCP (within the same timeout; the truncated reply is
//   returned if TCP fails);
// - replies are read up to 64 KiB, so an over-size reply from a non-compliant upstream is not an error;
// - zero servers fail at once (pilot-agent's parallel mode waits forever).
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { isIPv6 } from 'node:net';

/** Largest DNS message (TCP length prefix). */
export const MAX_DNS_MESSAGE = 65535;

export interface ForwarderOptions {
  readonly servers: readonly string[];
  /** Upstream port (53). */
  readonly port: number;
  /** Per server: DNS_FORWARD_TIMEOUT. */
  readonly timeoutMs: number;
  /** UDP resend interval within the timeout (>= timeoutMs: no resend). */
  readonly retransmitMs: number;
  /** DNS_FORWARD_PARALLEL */
  readonly parallel: boolean;
  /** resolv.conf `options rotate`: start with the next server on each query. */
  readonly rotate: boolean;
}

export type ForwardResult =
  | { readonly ok: true; readonly reply: Buffer; readonly server: string; readonly viaTcp: boolean; readonly retransmits: number }
  | { readonly ok: false; readonly errors: readonly string[] };

const TC = 0x02; // in the third header byte

function hostPort(server: string, port: number): string {
  return isIPv6(server.split('%')[0] ?? '') ? `[${server}]:${port}` : `${server}:${port}`;
}

function abortError(): Error {
  return new Error('cancelled');
}

/** One UDP exchange with resends; resolves with the first reply carrying the query's ID. */
export function udpExchange(server: string, port: number, query: Buffer, timeoutMs: number, retransmitMs: number, signal?: AbortSignal): Promise<{ reply: Buffer; retransmits: number }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: isIPv6(server.split('%')[0] ?? '') ? 'udp6' : 'udp4', recvBufferSize: 256 * 1024 });
    const id = query.readUInt16BE(0);
    let done = false;
    let retransmits = 0;
    const finish = (err: Error | undefined, reply?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearInterval(resend);
      signal?.removeEventListener('abort', onAbort);
      sock.close();
      if (err) reject(err);
      else resolve({ reply: reply!, retransmits });
    };
    const onAbort = (): void => finish(abortError());
    const send = (): void => {
      sock.send(query, port, server, (err) => {
        if (err) finish(new Error(`write udp ${hostPort(server, port)}: ${err.message}`));
      });
    };
    const deadline = setTimeout(() => finish(new Error(`read udp ${hostPort(server, port)}: i/o timeout`)), timeoutMs);
    const resend = setInterval(() => {
      retransmits++;
      send();
    }, Math.max(1, retransmitMs));
    if (retransmitMs >= timeoutMs) clearInterval(resend);
    sock.on('error', (e) => finish(new Error(`udp ${hostPort(server, port)}: ${e.message}`)));
    sock.on('message', (msg) => {
      // replies from elsewhere, or to another query, are ignored until the deadline (as the Go agent)
      if (msg.length < 12 || msg.readUInt16BE(0) !== id || (msg[2]! & 0x80) === 0) return;
      finish(undefined, msg);
    });
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort);
    send();
  });
}

/** One TCP exchange (RFC 1035 length prefix); the reply must carry the query's ID. */
export function tcpExchange(server: string, port: number, query: Buffer, timeoutMs: number, signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server, port });
    const id = query.readUInt16BE(0);
    let done = false;
    let buf: Buffer = Buffer.alloc(0);
    const finish = (err: Error | undefined, reply?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const onAbort = (): void => finish(abortError());
    const deadline = setTimeout(() => finish(new Error(`read tcp ${hostPort(server, port)}: i/o timeout`)), timeoutMs);
    sock.on('error', (e) => finish(new Error(`tcp ${hostPort(server, port)}: ${e.message}`)));
    sock.on('close', () => finish(new Error(`tcp ${hostPort(server, port)}: connection closed before the reply`)));
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (buf.length > MAX_DNS_MESSAGE + 2) return finish(new Error(`tcp ${hostPort(server, port)}: reply longer than ${MAX_DNS_MESSAGE} bytes`));
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const reply = buf.subarray(2, 2 + len);
      if (reply.length < 12 || reply.readUInt16BE(0) !== id) return finish(new Error(`tcp ${hostPort(server, port)}: reply id mismatch`));
      finish(undefined, Buffer.from(reply));
    });
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort);
    const frame = Buffer.allocUnsafe(2 + query.length);
    frame.writeUInt16BE(query.length, 0);
    query.copy(frame, 2);
    sock.write(frame);
  });
}

export interface Forwarder {
  forward(query: Buffer, transport: 'udp' | 'tcp'): Promise<ForwardResult>;
}

export function createForwarder(o: ForwarderOptions): Forwarder {
  let next = 0;

  async function one(server: string, query: Buffer, transport: 'udp' | 'tcp', signal?: AbortSignal): Promise<ForwardResult & { ok: true }> {
    const started = Date.now();
    if (transport === 'tcp') return { ok: true, reply: await tcpExchange(server, o.port, query, o.timeoutMs, signal), server, viaTcp: true, retransmits: 0 };
    const { reply, retransmits } = await udpExchange(server, o.port, query, o.timeoutMs, o.retransmitMs, signal);
    if ((reply[2]! & TC) === 0) return { ok: true, reply, server, viaTcp: false, retransmits };
    const left = o.timeoutMs - (Date.now() - started);
    if (left <= 0) return { ok: true, reply, server, viaTcp: false, retransmits };
    try {
      return { ok: true, reply: await tcpExchange(server, o.port, query, left, signal), server, viaTcp: true, retransmits };
    } catch {
      return { ok: true, reply, server, viaTcp: false, retransmits };
    }
  }

  return {
    async forward(query, transport) {
      const servers = o.servers;
      if (servers.length === 0) return { ok: false, errors: ['no upstream nameservers in resolv.conf'] };
      if (o.parallel) {
        const ac = new AbortController();
        const errors: string[] = [];
        try {
          const r = await Promise.any(
            servers.map((s) =>
              one(s, query, transport, ac.signal).catch((e: unknown) => {
                errors.push(e instanceof Error ? e.message : String(e));
                throw e;
              }),
            ),
          );
          return r;
        } catch {
          return { ok: false, errors };
        } finally {
          ac.abort();
        }
      }
      const errors: string[] = [];
      const start = o.rotate ? next++ % servers.length : 0;
      for (let i = 0; i < servers.length; i++) {
        const s = servers[(start + i) % servers.length]!;
        try {
          return await one(s, query, transport);
        } catch (e) {
          errors.push(e instanceof Error ? e.message : String(e));
        }
      }
      return { ok: false, errors };
    },
  };
}
