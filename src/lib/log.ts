// Scoped logger in Istio's formats.
// Text: `2006-01-02T15:04:05.000000Z<TAB>level<TAB>scope<TAB>message[<TAB>k=v k=v]`; the scope column is
// left out for the `default` scope, as pilot-agent does. JSON (`--log_as_json`): {"time","level","scope","msg",...fields}.
// Levels per scope come from `--log_output_level` ("default:info,xdsproxy:debug"; a bare level applies to all).

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'none';
const LEVEL_RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3, fatal: 4, none: 5 };
export const LEVELS = Object.keys(LEVEL_RANK) as Level[];

export type Fields = Readonly<Record<string, unknown>>;

export interface Logger {
  readonly scopeName: string;
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  enabled(level: Level): boolean;
  /** A logger for another scope, sharing sink and levels. */
  scope(name: string): Logger;
}

export interface LogSink {
  write(line: string): void;
}

export interface LogOptions {
  /** `--log_output_level` value. */
  outputLevels?: string;
  asJson?: boolean;
  sink?: LogSink;
  now?: () => Date;
}

export const DEFAULT_OUTPUT_LEVELS = 'default:info,grpc:none';

/** Parses `scope:level,...`; returns the per-scope map plus a global override when a bare level is given. */
export function parseOutputLevels(spec: string): { scopes: Map<string, Level>; all?: Level } {
  const scopes = new Map<string, Level>();
  let all: Level | undefined;
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (!item) continue;
    const idx = item.lastIndexOf(':');
    const scope = idx < 0 ? '' : item.slice(0, idx);
    const level = (idx < 0 ? item : item.slice(idx + 1)) as Level;
    if (!(level in LEVEL_RANK)) throw new Error(`invalid output level '${level}' in '${item}' (want one of ${LEVELS.join(', ')})`);
    if (scope === '' || scope === 'all') all = level;
    else scopes.set(scope, level);
  }
  return all === undefined ? { scopes } : { scopes, all };
}

export function formatTime(d: Date): string {
  const iso = d.toISOString(); // 2026-01-02T03:04:05.678Z
  return `${iso.slice(0, 23)}000Z`;
}

function fieldText(v: unknown): string {
  if (v instanceof Error) return v.message;
  if (typeof v === 'string') return v;
  if (v === undefined) return '<nil>';
  if (typeof v === 'object' && v !== null) {
    try {
      return JSON.stringify(v);
    } catch {
      return String(v);
    }
  }
  return String(v);
}

class State {
  levels: Map<string, Level>;
  all: Level | undefined;
  /** Scopes loggers were made for (names come from code, so the set stays small). */
  readonly seen = new Set<string>(['default']);
  constructor(
    spec: string,
    readonly asJson: boolean,
    readonly sink: LogSink,
    readonly now: () => Date,
  ) {
    const merged = parseOutputLevels(DEFAULT_OUTPUT_LEVELS);
    const given = parseOutputLevels(spec);
    for (const [k, v] of given.scopes) merged.scopes.set(k, v);
    this.levels = merged.scopes;
    this.all = given.all;
  }
  levelOf(scope: string): Level {
    if (this.all !== undefined) return this.all;
    return this.levels.get(scope) ?? this.levels.get('default') ?? 'info';
  }
}

/** At most this many scope names are remembered for the level listing. */
const MAX_SCOPES = 256;

/** Runtime control of per-scope output levels (the status port's /logging and ControlZ-like /scopej/). */
export interface LevelControl {
  /** Every scope known (configured or used) with its effective level, sorted by name. */
  list(): Array<{ scope: string; level: Level }>;
  /** Sets one scope's level; `all` (or '') sets every scope and the default for new ones. */
  set(scope: string, level: Level): void;
}

/** The level control of a logger made by createLogger (undefined for other Logger implementations). */
export function levelControl(log: Logger): LevelControl | undefined {
  if (!(log instanceof ScopedLogger)) return undefined;
  const st = log.levelState;
  return {
    list() {
      const names = new Set([...st.seen, ...st.levels.keys()]);
      return [...names].sort().map((scope) => ({ scope, level: st.levelOf(scope) }));
    },
    set(scope, level) {
      if (!(level in LEVEL_RANK)) throw new Error(`invalid output level '${level}' (want one of ${LEVELS.join(', ')})`);
      if (scope === '' || scope === 'all') {
        st.all = undefined;
        for (const n of new Set([...st.seen, ...st.levels.keys()])) st.levels.set(n, level);
        st.levels.set('default', level);
        return;
      }
      if (st.all !== undefined) {
        // a bare level applied to every scope: make it per scope, then change this one
        for (const n of new Set([...st.seen, ...st.levels.keys()])) st.levels.set(n, st.all);
        st.all = undefined;
      }
      st.levels.set(scope, level);
    },
  };
}

class ScopedLogger implements Logger {
  constructor(
    private readonly state: State,
    readonly scopeName: string,
  ) {}
  enabled(level: Level): boolean {
    return LEVEL_RANK[level] >= LEVEL_RANK[this.state.levelOf(this.scopeName)] && level !== 'none';
  }
  scope(name: string): Logger {
    if (this.state.seen.size < MAX_SCOPES) this.state.seen.add(name);
    return new ScopedLogger(this.state, name);
  }
  /** The shared level state (levelControl). */
  get levelState(): State {
    return this.state;
  }
  debug(msg: string, fields?: Fields): void {
    this.emit('debug', msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.emit('info', msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.emit('warn', msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.emit('error', msg, fields);
  }
  private emit(level: Level, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    const time = formatTime(this.state.now());
    if (this.state.asJson) {
      const rec: Record<string, unknown> = { time, level, scope: this.scopeName, msg };
      if (fields) for (const [k, v] of Object.entries(fields)) rec[k] = v instanceof Error ? v.message : v;
      this.state.sink.write(`${JSON.stringify(rec)}\n`);
      return;
    }
    let text = msg;
    if (fields) {
      const parts = Object.entries(fields).map(([k, v]) => `${k}=${fieldText(v)}`);
      if (parts.length) text += `\t${parts.join(' ')}`;
    }
    const scopeCol = this.scopeName === 'default' ? '' : `${this.scopeName}\t`;
    this.state.sink.write(`${time}\t${level}\t${scopeCol}${text}\n`);
  }
}

export function createLogger(opts: LogOptions = {}): Logger {
  const sink = opts.sink ?? { write: (l: string) => void process.stdout.write(l) };
  const state = new State(opts.outputLevels ?? DEFAULT_OUTPUT_LEVELS, opts.asJson ?? false, sink, opts.now ?? (() => new Date()));
  return new ScopedLogger(state, 'default');
}

/** A logger that records lines, for tests. */
export function memoryLogger(outputLevels = 'default:debug'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ outputLevels, sink: { write: (l) => void lines.push(l) } });
  return { log, lines };
}
