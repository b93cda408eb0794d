// A tiny HTTP server standing in for the application behind Envoy: answers every request with 200 and
// says who answered, and counts requests.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HttpUpstream {
  readonly port: number;
  readonly name: string;
  /** Requests answered so far. */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startHttpUpstream(opts: { host?: string; port?: number; name?: string } = {}): Promise<HttpUpstream> {
  const name = opts.name ?? 'upstream';
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    req.resume();
    // `?delay=<ms>` holds the response, so tests can have requests in flight
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
    req.on('end', () => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
        res.end(`hello from ${name}: ${req.method} ${req.url}\n`);
      };
      if (delay > 0) setTimeout(answer, Math.min(delay, 60_000));
      else answer();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    name,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
