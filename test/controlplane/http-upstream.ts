// A tiny HTTP server standing in for the application behind Envoy: answers every request with 200 and
// says who answered, and counts requests. With `echoHeaders`, the body also shows those request headers
// as received (e.g. the x-forwarded-client-cert an mTLS listener sets), one `name: value` line each.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HttpUpstream {
  readonly port: number;
  readonly name: string;
  /** Requests answered so far. */
  readonly requests: number;
  close(): Promise<void>;
}

export interface HttpUpstreamOptions {
  readonly host?: string;
  readonly port?: number;
  readonly name?: string;
  /** Request headers to echo in the body when present (names, any case). */
  readonly echoHeaders?: readonly string[];
}

export async function startHttpUpstream(opts: HttpUpstreamOptions = {}): Promise<HttpUpstream> {
  const name = opts.name ?? 'upstream';
  const echo = (opts.echoHeaders ?? []).map((h) => h.toLowerCase());
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    req.resume();
    // `?delay=<ms>` holds the response, so tests can have requests in flight
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
    req.on('end', () => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
        const echoed = echo.flatMap((h) => {
          const v = req.headers[h];
          return v === undefined ? [] : [`${h}: ${Array.isArray(v) ? v.join(', ') : v}\n`];
        });
        res.end(`hello from ${name}: ${req.method} ${req.url}\n${echoed.join('')}`);
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
