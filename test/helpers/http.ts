// Small HTTP client helpers for tests: one-shot GETs with a timeout, and a bounded steady load.
import { request, Agent } from 'node:http';

export interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
}

export function httpGet(url: string, opts: { timeoutMs?: number; method?: string; agent?: Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', agent: opts.agent ?? false, timeout: opts.timeoutMs ?? 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 5000}ms: ${url}`)));
    req.end();
  });
}

export async function eventually<T>(fn: () => Promise<T | undefined | false>, ms: number, what: string, everyMs = 100): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms}ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface LoadResult {
  ok: number;
  failed: number;
  errors: string[];
}

/** Sends requests with `concurrency` workers until stopped (or `maxRequests`), counting failures. */
export function steadyLoad(url: string, o: { concurrency?: number; maxRequests?: number; keepAlive?: boolean } = {}): { stop(): Promise<LoadResult>; result: LoadResult; done: Promise<LoadResult> } {
  const result: LoadResult = { ok: 0, failed: 0, errors: [] };
  let stopped = false;
  const agent = o.keepAlive ? new Agent({ keepAlive: true, maxSockets: o.concurrency ?? 4 }) : undefined;
  const worker = async () => {
    while (!stopped && (o.maxRequests === undefined || result.ok + result.failed < o.maxRequests)) {
      try {
        const r = await httpGet(url, { timeoutMs: 10_000, ...(agent ? { agent } : {}) });
        if (r.status === 200) result.ok++;
        else {
          result.failed++;
          if (result.errors.length < 10) result.errors.push(`HTTP ${r.status}: ${r.body.slice(0, 100)}`);
        }
      } catch (e) {
        result.failed++;
        if (result.errors.length < 10) result.errors.push((e as Error).message);
      }
    }
  };
  const done = Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker)).then(() => {
    agent?.destroy();
    return result;
  });
  return {
    result,
    done,
    stop: async () => {
      stopped = true;
      return done;
    },
  };
}
