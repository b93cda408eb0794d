// `--run-validation`: proves that outbound capture works. Listeners on the proxy port and the inbound
// capture port (127.0.0.1 or ::1); a client repeatedly connects from 127.0.0.1 (::1) to 127.0.0.6:PROBE
// (::6). Nothing listens there, so a connection that reaches one of our listeners was redirected.
// pilot-agent reads SO_ORIGINAL_DST to check the port; Node cannot, so the listener instead matches the
// connection's source port against the ports our own probe connections used, which identifies the
// redirected probe just as well.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../lib/log.js';

export interface ValidationOptions {
  readonly proxyPort: number;
  readonly inboundCapturePort: number;
  readonly probePort: number;
  readonly timeoutMs: number;
  readonly ipv6: boolean;
  readonly log: Logger;
  /** Delay between probe connections (pilot-agent: 1s). */
  readonly intervalMs?: number;
}

export const VALIDATION_FAILED_MESSAGE = `iptables validation failed; workload is not ready for Istio.
When using Istio CNI, this can occur if a pod is scheduled before the node is ready.

If installed with 'cni.repair.deletePods=true', this pod should automatically be deleted and retry.
Otherwise, this pod will need to be manually removed so that it is scheduled on a node with istio-cni running, allowing iptables rules to be established.
`;

/** Resolves true once a probe was redirected, false on timeout or when no listener could be opened. */
export async function runValidation(o: ValidationOptions): Promise<boolean> {
  const listenIP = o.ipv6 ? '::1' : '127.0.0.1';
  const serverIP = o.ipv6 ? '::6' : '127.0.0.6';
  o.log.info('Starting iptables validation. This check verifies that iptables rules are properly established for the network.');
  const seenAtListener = new Set<number>();
  const probePorts = new Set<number>();
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  let done!: (ok: boolean) => void;
  const result = new Promise<boolean>((r) => (done = r));
  const check = (port: number | undefined) => {
    if (port !== undefined && seenAtListener.has(port) && probePorts.has(port)) done(true);
  };

  for (const port of [o.proxyPort, o.inboundCapturePort]) {
    const srv = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      const rp = s.remotePort;
      if (rp !== undefined) seenAtListener.add(rp);
      s.end(String(o.probePort));
      check(rp);
    });
    const ok = await new Promise<boolean>((resolve) => {
      srv.once('error', (e) => {
        o.log.error(`Error on listening: ${e.message}`);
        resolve(false);
      });
      srv.listen({ host: listenIP, port, exclusive: false }, () => resolve(true));
    });
    if (ok) {
      o.log.info(`Listening on ${o.ipv6 ? `[${listenIP}]` : listenIP}:${port}`);
      servers.push(srv);
    }
  }
  if (!servers.length) {
    o.log.error(`no listener available: ${listenIP}:${o.proxyPort},${listenIP}:${o.inboundCapturePort}`);
    return false;
  }

  // Node's timers take at most 2^31-1 ms (about 24.8 days) and fire at once (1 ms) past that
  const timer = setTimeout(() => done(false), Math.min(o.timeoutMs, 2 ** 31 - 1));
  let stopped = false;
  const probe = () => {
    if (stopped) return;
    const c = connect({ host: serverIP, port: o.probePort, localAddress: listenIP });
    sockets.add(c);
    c.on('connect', () => {
      if (c.localPort !== undefined) probePorts.add(c.localPort);
      check(c.localPort);
      c.end();
    });
    c.on('error', (e) => o.log.debug(`Error connecting to ${serverIP}:${o.probePort}: ${e.message}`));
    c.on('close', () => sockets.delete(c));
  };
  probe();
  const interval = setInterval(probe, o.intervalMs ?? 1000);
  const ok = await result;
  stopped = true;
  clearTimeout(timer);
  clearInterval(interval);
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  if (ok) o.log.info('Validation passed, iptables rules established');
  else o.log.error('Validation failed: validation timeout');
  return ok;
}
