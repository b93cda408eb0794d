// `agent wait` (the postStart hook of holdApplicationUntilProxyStarts) and `agent request`
// (the native-sidecar preStop hook), with pilot-agent's flags, messages and exit codes.
import { setTimeout as sleep } from 'node:timers/promises';
import type { CliContext, ExitCode } from '../lib/context.js';
import { flagHelp, parseFlags, type FlagSpec } from './flags.js';
import { LOG_FLAGS, checkLogFlags, loggerFromFlags } from './global-flags.js';

const WAIT_FLAGS: readonly FlagSpec[] = [
  { name: 'timeoutSeconds', type: 'int', default: 60, help: 'maximum number of seconds to wait for Envoy to be ready' },
  { name: 'requestTimeoutMillis', type: 'int', default: 500, help: 'number of milliseconds to wait for response' },
  { name: 'periodMillis', type: 'int', default: 500, help: 'number of milliseconds to wait between attempts' },
  { name: 'url', type: 'string', default: 'http://localhost:15021/healthz/ready', help: 'URL to use in requests' },
  { name: 'help', short: 'h', type: 'bool', default: false, help: 'help for wait' },
  ...LOG_FLAGS,
];

const ALLOWED_PORTS = [15000, 15004, 15020, 15021];
const REQUEST_FLAGS: readonly FlagSpec[] = [
  { name: 'debug-port', type: 'int', default: 15000, help: 'Set the port to make a local request to. The default points to the Envoy admin API.' },
  { name: 'help', short: 'h', type: 'bool', default: false, help: 'help for request' },
  ...LOG_FLAGS,
];

function fail(ctx: CliContext, msg: string): ExitCode {
  ctx.stderr.write(`Error: ${msg}\n`);
  return 255;
}

/** At most this much of a not-ready body is read (it names what blocks readiness). */
export const MAX_REASON_BYTES = 16 * 1024;

/** The body of a response, cut at `max` bytes (the rest is not read). */
async function boundedText(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(Buffer.from(value));
      size += value.length;
      if (size >= max) break;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

/**
 * pilot-agent's error for a not-ready answer is `HTTP status code <n>`; ours adds what the status server
 * says blocks readiness (its 503 body, one blocker per line), so that the time-out message names the cause.
 */
export function notReadyError(status: number, body: string): string {
  const reasons = body
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('; ');
  return reasons ? `HTTP status code ${status}: ${reasons}` : `HTTP status code ${status}`;
}

/** A request error, with what it means for readiness when the port refuses connections. */
export function requestError(e: unknown, url: string): string {
  const msg = e instanceof Error ? (e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message) : String(e);
  if (/ECONNREFUSED/.test(msg)) return `${msg} (nothing listens on ${new URL(url).host}: Envoy is not started or not yet serving its readiness port)`;
  return msg;
}

async function checkReady(url: string, timeoutMs: number): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await boundedText(res, MAX_REASON_BYTES);
  if (res.status !== 200) throw new NotReady(notReadyError(res.status, body));
}

class NotReady extends Error {}

export async function runWait(args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  const p = parseFlags(args, WAIT_FLAGS);
  if (p.values.get('help')) {
    ctx.stdout.write(`Waits until the Envoy proxy is ready\n\nUsage:\n  agent wait [flags]\n\nFlags:\n${flagHelp(WAIT_FLAGS)}\n`);
    return 0;
  }
  const issues = [...p.issues];
  checkLogFlags(p, issues);
  if (issues.length) return fail(ctx, issues.map((i) => `${i.source}: ${i.message}`).join('; '));
  const log = loggerFromFlags(p, ctx);
  const timeoutS = p.values.get('timeoutSeconds') as number;
  const periodMs = p.values.get('periodMillis') as number;
  const requestMs = p.values.get('requestTimeoutMillis') as number;
  const url = p.values.get('url') as string;
  log.info(`Waiting for Envoy proxy to be ready (timeout: ${timeoutS} seconds)...`);
  const deadline = Date.now() + timeoutS * 1000;
  let last = 'none';
  for (;;) {
    await sleep(periodMs);
    if (Date.now() >= deadline) return fail(ctx, `timeout waiting for Envoy proxy to become ready. Last error: ${last}`);
    try {
      await checkReady(url, requestMs);
      log.info('Envoy is ready!');
      return 0;
    } catch (e) {
      last = e instanceof NotReady ? e.message : requestError(e, url);
      log.debug(`Not ready yet: ${last}`);
    }
  }
}

export async function runRequest(args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  const p = parseFlags(args, REQUEST_FLAGS);
  if (p.values.get('help')) {
    ctx.stdout.write(`Makes an HTTP request to the Envoy admin API\n\nUsage:\n  agent request <method> <path> [<body>] [flags]\n\nFlags:\n${flagHelp(REQUEST_FLAGS)}\n`);
    return 0;
  }
  if (p.issues.length) return fail(ctx, p.issues.map((i) => `${i.source}: ${i.message}`).join('; '));
  if (p.positionals.length < 2) return fail(ctx, `requires at least 2 arg(s), only received ${p.positionals.length}`);
  const port = p.values.get('debug-port') as number;
  if (!ALLOWED_PORTS.includes(port)) return fail(ctx, `debug port ${port} is not in allowed list [${ALLOWED_PORTS.join(' ')}]`);
  const [method, path, body = ''] = p.positionals as [string, string, string?];
  const url = `http://localhost:${port}/${path.replace(/^\//, '')}`;
  let res: Response;
  try {
    res = await fetch(url, { method: method.toUpperCase(), body: method.toUpperCase() === 'GET' || method.toUpperCase() === 'HEAD' ? undefined : body, signal: AbortSignal.timeout(60_000) });
  } catch (e) {
    const err = e as Error;
    return fail(ctx, `${method} ${url}: ${err.cause instanceof Error ? err.cause.message : err.message}`);
  }
  const text = await res.text();
  if (res.status > 399 && res.status !== 404) return fail(ctx, `received unsuccessful status code ${res.status}: ${text}`);
  ctx.stdout.write(`${text}\n`);
  return 0;
}
