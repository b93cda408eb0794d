// Profiling and log levels on the status port (loopback only; the server checks the peer before calling
// these), as pilot-agent exposes Go's pprof and ControlZ:
//   GET  /debug/pprof/profile?seconds=N   a CPU profile of the agent for N seconds (default 30, 1..300),
//                                          as a .cpuprofile (Chrome DevTools, speedscope); one at a time
//   GET  /debug/pprof/heap                 a V8 heap snapshot (.heapsnapshot), streamed
//   GET  /logging                          every log scope and its level (JSON)
//   POST /logging?<scope>=<level>[&...]    sets scope levels (`level=<level>` or `all=<level>`: every scope),
//                                          the query shape of Envoy's admin /logging
//   GET  /scopej/, GET /scopej/<scope>     ControlZ's JSON shape: {name, description, output_level, ...}
//   PUT  /scopej/<scope>                   ControlZ's: a JSON body {"output_level": "debug"}
// Loaded only when one of these routes is used: node:inspector is not on the start-up path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Session } from 'node:inspector/promises';
import { LEVELS, levelControl, type Level, type Logger } from '../lib/log.js';

export const DEFAULT_PROFILE_SECONDS = 30;
export const MAX_PROFILE_SECONDS = 300;
/** Request bodies (PUT /scopej/) are read up to this size. */
const MAX_BODY_BYTES = 4096;

export type Reply = { readonly status: number; readonly body: string; readonly contentType?: string };

let profiling = false;

/** Parses `seconds` as Go's pprof handler does (an integer; default 30), bounded to 1..300. */
export function profileSeconds(query: URLSearchParams): number | { error: string } {
  const raw = query.get('seconds');
  if (raw === null || raw === '') return DEFAULT_PROFILE_SECONDS;
  if (!/^\d+$/.test(raw)) return { error: `invalid seconds ${JSON.stringify(raw.slice(0, 32))}: want a whole number of seconds` };
  const n = Number(raw);
  if (n < 1 || n > MAX_PROFILE_SECONDS) return { error: `seconds must be between 1 and ${MAX_PROFILE_SECONDS}, got ${n}` };
  return n;
}

/** Takes a CPU profile of this process for `seconds`; stops early (and answers nothing) if the client goes away. */
export async function cpuProfile(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, log: Logger): Promise<Reply | undefined> {
  const seconds = profileSeconds(query);
  if (typeof seconds !== 'number') return { status: 400, body: `${seconds.error}\n` };
  if (profiling) return { status: 409, body: 'a CPU profile is already being taken\n' };
  profiling = true;
  const session = new Session();
  session.connect();
  try {
    log.info(`taking a CPU profile for ${seconds}s (status port /debug/pprof/profile)`);
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    const gone = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        res.off('close', onClose);
        resolve(false);
      }, seconds * 1000);
      const onClose = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      res.once('close', onClose);
    });
    const { profile } = await session.post('Profiler.stop');
    if (gone) return undefined;
    res.setHeader('Content-Disposition', 'attachment; filename="agent.cpuprofile"');
    return { status: 200, body: JSON.stringify(profile), contentType: 'application/json' };
  } finally {
    session.disconnect();
    profiling = false;
    void req;
  }
}

/** Streams a V8 heap snapshot of this process. */
export async function heapSnapshot(res: ServerResponse, log: Logger): Promise<void> {
  if (profiling) {
    res.writeHead(409, { 'Content-Type': 'text/plain; charset=utf-8' }).end('a profile is already being taken\n');
    return;
  }
  profiling = true;
  const session = new Session();
  session.connect();
  try {
    log.info('taking a heap snapshot (status port /debug/pprof/heap)');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': 'attachment; filename="agent.heapsnapshot"', 'Cache-Control': 'no-store' });
    session.on('HeapProfiler.addHeapSnapshotChunk', (m) => {
      if (!res.destroyed) res.write(m.params.chunk);
    });
    await session.post('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    res.end();
  } finally {
    session.disconnect();
    profiling = false;
  }
}

function isLevel(v: string): v is Level {
  return (LEVELS as string[]).includes(v);
}

/** GET/POST /logging. */
export function logging(method: string | undefined, query: URLSearchParams, log: Logger): Reply {
  const ctl = levelControl(log);
  if (!ctl) return { status: 501, body: 'log levels cannot be changed in this process\n' };
  if (method === 'POST' || method === 'PUT') {
    const changes: Array<[string, Level]> = [];
    for (const [k, v] of query) {
      if (!isLevel(v)) return { status: 400, body: `invalid level ${JSON.stringify(v.slice(0, 32))} for ${JSON.stringify(k.slice(0, 64))} (want one of ${LEVELS.join(', ')})\n` };
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(k)) return { status: 400, body: `invalid scope name ${JSON.stringify(k.slice(0, 64))}\n` };
      changes.push([k === 'level' ? 'all' : k, v]);
    }
    if (!changes.length) return { status: 400, body: 'usage: POST /logging?<scope>=<level> (or level=<level> for every scope)\n' };
    for (const [scope, level] of changes) {
      ctl.set(scope, level);
      log.info(`log level of scope ${scope} set to ${level} (status port /logging)`);
    }
  } else if (method !== 'GET' && method !== 'HEAD') {
    return { status: 405, body: 'Method Not Allowed\n' };
  }
  return { status: 200, body: `${JSON.stringify(Object.fromEntries(ctl.list().map((s) => [s.scope, s.level])), null, 2)}\n`, contentType: 'application/json' };
}

const scopeInfo = (s: { scope: string; level: Level }) => ({ name: s.scope, description: '', output_level: s.level, stack_trace_level: 'none', log_callers: false });

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** ControlZ's /scopej/ and /scopej/<scope>. */
export async function scopej(req: IncomingMessage, path: string, log: Logger): Promise<Reply> {
  const ctl = levelControl(log);
  if (!ctl) return { status: 501, body: 'log levels cannot be changed in this process\n' };
  let name: string;
  try {
    name = decodeURIComponent(path.slice('/scopej/'.length));
  } catch {
    return { status: 400, body: 'invalid scope name encoding\n' };
  }
  const json = (v: unknown): Reply => ({ status: 200, body: `${JSON.stringify(v, null, 2)}\n`, contentType: 'application/json' });
  if (name === '') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, body: 'Method Not Allowed\n' };
    return json(ctl.list().map(scopeInfo));
  }
  const known = ctl.list().find((s) => s.scope === name);
  if (req.method === 'GET' || req.method === 'HEAD') return known ? json(scopeInfo(known)) : { status: 404, body: `unknown scope ${JSON.stringify(name.slice(0, 64))}\n` };
  if (req.method !== 'PUT') return { status: 405, body: 'Method Not Allowed\n' };
  if (!known) return { status: 404, body: `unknown scope ${JSON.stringify(name.slice(0, 64))}\n` };
  const body = await readBody(req);
  if (body === undefined) return { status: 413, body: `body larger than ${MAX_BODY_BYTES} bytes\n` };
  let level: unknown;
  try {
    level = (JSON.parse(body) as { output_level?: unknown }).output_level;
  } catch (e) {
    return { status: 400, body: `invalid JSON body: ${e instanceof Error ? e.message : String(e)}\n` };
  }
  if (typeof level !== 'string' || !isLevel(level)) return { status: 400, body: `output_level must be one of ${LEVELS.join(', ')}\n` };
  ctl.set(name, level);
  log.info(`log level of scope ${name} set to ${level} (status port /scopej/)`);
  return json(scopeInfo({ scope: name, level }));
}
