// A Go text/template engine, subset sufficient for Envoy bootstrap templates (Istio's own
// envoy_bootstrap.json and custom ones): text and actions with `{{-`/`-}}` trimming and comments;
// if / else if / else, range (over lists, maps in key order, and integers; `$i, $v :=`; break/continue),
// with, define / template / block, variables (`$x := ...`, `$x = ...`, `$`), field chains on
// data, variables and parenthesised pipelines, pipelines with `|`; Go's builtins (and, or, not, eq, ne,
// lt, le, gt, ge, len, index, slice, print, printf, println, js, html, urlquery) plus `toJSON` and a
// basic set of sprig functions (see FUNCS). Go values are modelled as: maps = plain objects, slices =
// arrays, structs = GoStruct (always true; fields by Go name, `GetX` getters), nil = null, a missing
// map key = MISSING (prints "<no value>", false in conditions).

export const MISSING: unique symbol = Symbol('no value');

/** A Go struct value: fields by Go name, how encoding/json renders it, and (optionally) its String(). */
export class GoStruct {
  constructor(
    readonly fields: Readonly<Record<string, unknown>>,
    readonly json: () => unknown,
    readonly text?: () => string,
  ) {}
}

/** A protobuf enum value: prints as its name (String()), compares and marshals as its number. */
export class GoEnum {
  constructor(
    readonly name: string,
    readonly number: number,
  ) {}
}

const scalarOf = (v: unknown): unknown => (v instanceof GoEnum ? v.number : v);

type Value = unknown;
type Fn = (...args: Value[]) => Value;

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

// ---------------- lexer ----------------

interface Tok {
  readonly t: 'text' | 'action';
  readonly v: string;
  readonly line: number;
}

function lex(src: string, name: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  let line = 1;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    let text = open < 0 ? src.slice(i) : src.slice(i, open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    trimNext = false;
    if (open < 0) {
      if (text) toks.push({ t: 'text', v: text, line });
      break;
    }
    let start = open + 2;
    if (src.startsWith('- ', start) || src.startsWith('-\t', start) || src.startsWith('-\n', start) || src.startsWith('-\r', start)) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 1;
    }
    if (text) toks.push({ t: 'text', v: text, line });
    line += countLines(src.slice(i, open));
    // find the closing }} outside string literals and comments
    let j = start;
    let body = '';
    let closed = false;
    while (j < src.length) {
      const c = src[j]!;
      if (src.startsWith('/*', j)) {
        const end = src.indexOf('*/', j + 2);
        if (end < 0) throw new TemplateError(`template: ${name}:${line}: unclosed comment`);
        body += src.slice(j, end + 2);
        j = end + 2;
        continue;
      }
      if (c === '"' || c === '`' || c === "'") {
        let k = j + 1;
        while (k < src.length && src[k] !== c) {
          if (src[k] === '\\' && c !== '`') k++;
          k++;
        }
        body += src.slice(j, k + 1);
        j = k + 1;
        continue;
      }
      if (src.startsWith(' -}}', j) || src.startsWith('\t-}}', j) || src.startsWith('\n-}}', j) || src.startsWith('\r-}}', j)) {
        trimNext = true;
        j += 4;
        closed = true;
        break;
      }
      if (src.startsWith('}}', j)) {
        j += 2;
        closed = true;
        break;
      }
      body += c;
      j++;
    }
    if (!closed) throw new TemplateError(`template: ${name}:${line}: unclosed action`);
    toks.push({ t: 'action', v: body, line });
    line += countLines(src.slice(open, j));
    i = j;
  }
  return toks;
}

const countLines = (s: string): number => {
  let n = 0;
  for (const c of s) if (c === '\n') n++;
  return n;
};

// action-level tokens
type AT =
  | { k: 'field'; v: string[] } // .a.b  ("." alone => [])
  | { k: 'var'; v: string; fields: string[] } // $x.a
  | { k: 'ident'; v: string }
  | { k: 'str'; v: string }
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'nil' }
  | { k: 'op'; v: '(' | ')' | '|' | ':=' | '=' | ',' }
  | { k: 'dotfields'; v: string[] }; // .a.b directly after ')'

function goUnquoteLit(s: string): string {
  if (s.startsWith('`')) return s.slice(1, -1);
  return JSON.parse(
    s.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1').replace(/\\([0-7]{3})/g, (_m, o: string) => `\\u${parseInt(o, 8).toString(16).padStart(4, '0')}`).replace(/\\a/g, '\\u0007').replace(/\\v/g, '\\u000b').replace(/\\'/g, "'"),
  ) as string;
}

function lexAction(src: string, where: string): AT[] {
  const out: AT[] = [];
  let i = 0;
  const ident = /^[A-Za-z_][A-Za-z0-9_]*/;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      i = end + 2;
      continue;
    }
    if (c === '(' || c === ')' || c === '|' || c === ',') {
      out.push({ k: 'op', v: c });
      i++;
      if (c === ')' && src[i] === '.') {
        const m = /^(\.[A-Za-z_][A-Za-z0-9_]*)+/.exec(src.slice(i));
        if (m) {
          out.push({ k: 'dotfields', v: m[0].slice(1).split('.') });
          i += m[0].length;
        }
      }
      continue;
    }
    if (src.startsWith(':=', i)) {
      out.push({ k: 'op', v: ':=' });
      i += 2;
      continue;
    }
    if (c === '=') {
      out.push({ k: 'op', v: '=' });
      i++;
      continue;
    }
    if (c === '"' || c === '`') {
      let k = i + 1;
      while (k < src.length && src[k] !== c) {
        if (src[k] === '\\' && c === '"') k++;
        k++;
      }
      if (k >= src.length) throw new TemplateError(`${where}: unterminated quoted string`);
      out.push({ k: 'str', v: goUnquoteLit(src.slice(i, k + 1)) });
      i = k + 1;
      continue;
    }
    if (c === "'") {
      const m = /^'(\\.|[^\\'])+'/u.exec(src.slice(i));
      if (!m) throw new TemplateError(`${where}: bad character constant`);
      const ch = m[0].length > 3 ? goUnquoteLit(`"${m[0].slice(1, -1)}"`) : m[0].slice(1, -1);
      out.push({ k: 'num', v: ch.codePointAt(0)! });
      i += m[0].length;
      continue;
    }
    if (c === '.') {
      const m = /^\.([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?/.exec(src.slice(i))!;
      out.push({ k: 'field', v: m[1] ? m[1].split('.') : [] });
      i += m[0].length;
      continue;
    }
    if (c === '$') {
      const m = /^\$([A-Za-z0-9_]*)((\.[A-Za-z_][A-Za-z0-9_]*)*)/.exec(src.slice(i))!;
      out.push({ k: 'var', v: `$${m[1]}`, fields: m[2] ? m[2].slice(1).split('.') : [] });
      i += m[0].length;
      continue;
    }
    const num = /^[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]+(?![.eE0-9])|(\d[\d_]*)?\.?\d*([eE][+-]?\d+)?)/.exec(src.slice(i));
    if (num && num[0] !== '' && /\d/.test(num[0]) && (c === '-' || c === '+' || /\d|\./.test(c))) {
      const t = num[0].replace(/_/g, '');
      let v: number;
      if (/^[+-]?0[xX]/.test(t)) v = parseInt(t, 16);
      else if (/^[+-]?0[bB]/.test(t)) v = parseInt(t.replace(/0[bB]/, ''), 2);
      else if (/^[+-]?0[oO]?[0-7]+$/.test(t) && t.replace(/^[+-]/, '').length > 1) v = parseInt(t.replace(/0[oO]?/, ''), 8) * (t.startsWith('-') ? -1 : 1);
      else v = Number(t);
      out.push({ k: 'num', v });
      i += num[0].length;
      continue;
    }
    const m = ident.exec(src.slice(i));
    if (m) {
      const w = m[0];
      if (w === 'true' || w === 'false') out.push({ k: 'bool', v: w === 'true' });
      else if (w === 'nil') out.push({ k: 'nil' });
      else out.push({ k: 'ident', v: w });
      i += w.length;
      continue;
    }
    throw new TemplateError(`${where}: unexpected ${JSON.stringify(c)} in action`);
  }
  return out;
}

// ---------------- parser ----------------

type Arg =
  | { k: 'field'; v: string[] }
  | { k: 'var'; v: string; fields: string[] }
  | { k: 'lit'; v: Value }
  | { k: 'pipe'; p: Pipe; fields: string[] }
  | { k: 'fn'; v: string };
interface Cmd {
  readonly args: Arg[];
}
interface Pipe {
  readonly decl: string[];
  readonly assign: boolean;
  readonly cmds: Cmd[];
}
type Node =
  | { k: 'text'; v: string }
  | { k: 'action'; p: Pipe; line: number }
  | { k: 'if' | 'with'; p: Pipe; body: Node[]; els: Node[]; line: number }
  | { k: 'range'; p: Pipe; body: Node[]; els: Node[]; line: number }
  | { k: 'template'; name: string; p: Pipe | undefined; line: number }
  | { k: 'break' | 'continue' };

class Parser {
  private pos = 0;
  readonly defs = new Map<string, Node[]>();
  constructor(
    private readonly toks: Tok[],
    private readonly name: string,
  ) {}

  parse(): Node[] {
    const { nodes, end } = this.list();
    if (end) throw new TemplateError(`template: ${this.name}:${end.line}: unexpected {{${end.word}}}`);
    return nodes;
  }

  private where(line: number): string {
    return `template: ${this.name}:${line}`;
  }

  /** Parses nodes until an `end`/`else` keyword (returned) or EOF. */
  private list(): { nodes: Node[]; end?: { word: string; rest: AT[]; line: number } } {
    const nodes: Node[] = [];
    while (this.pos < this.toks.length) {
      const tok = this.toks[this.pos++]!;
      if (tok.t === 'text') {
        nodes.push({ k: 'text', v: tok.v });
        continue;
      }
      const trimmed = tok.v.trim();
      if (trimmed.startsWith('/*') && trimmed.endsWith('*/')) continue;
      const at = lexAction(tok.v, this.where(tok.line));
      if (at.length === 0) throw new TemplateError(`${this.where(tok.line)}: missing value for command`);
      const head = at[0]!;
      const kw = head.k === 'ident' ? head.v : '';
      switch (kw) {
        case 'end':
        case 'else':
          return { nodes, end: { word: kw, rest: at.slice(1), line: tok.line } };
        case 'if':
        case 'with':
        case 'range':
          nodes.push(this.control(kw, at.slice(1), tok.line));
          continue;
        case 'define':
        case 'block': {
          const nameTok = at[1];
          if (!nameTok || nameTok.k !== 'str') throw new TemplateError(`${this.where(tok.line)}: ${kw} needs a quoted name`);
          const inner = this.list();
          if (!inner.end || inner.end.word !== 'end') throw new TemplateError(`${this.where(tok.line)}: unexpected EOF in ${kw}`);
          this.defs.set(nameTok.v, inner.nodes);
          if (kw === 'block') nodes.push({ k: 'template', name: nameTok.v, p: this.pipe(at.slice(2), tok.line), line: tok.line });
          continue;
        }
        case 'template': {
          const nameTok = at[1];
          if (!nameTok || nameTok.k !== 'str') throw new TemplateError(`${this.where(tok.line)}: template needs a quoted name`);
          nodes.push({ k: 'template', name: nameTok.v, p: at.length > 2 ? this.pipe(at.slice(2), tok.line) : undefined, line: tok.line });
          continue;
        }
        case 'break':
        case 'continue':
          nodes.push({ k: kw });
          continue;
      }
      nodes.push({ k: 'action', p: this.pipe(at, tok.line), line: tok.line });
    }
    return { nodes };
  }

  private control(kw: 'if' | 'with' | 'range', rest: AT[], line: number): Node {
    const p = this.pipe(rest, line);
    const body = this.list();
    if (!body.end) throw new TemplateError(`${this.where(line)}: unexpected EOF in ${kw}`);
    let els: Node[] = [];
    if (body.end.word === 'else') {
      const r = body.end.rest;
      const r0 = r[0];
      if (r0 && r0.k === 'ident' && (r0.v === 'if' || r0.v === 'with') && kw !== 'range') {
        // `else if` / `else with`: a nested control that consumes the shared {{end}}
        els = [this.control(r0.v, r.slice(1), body.end.line)];
      } else {
        const e = this.list();
        if (!e.end || e.end.word !== 'end') throw new TemplateError(`${this.where(line)}: expected end; found ${e.end ? e.end.word : 'EOF'}`);
        els = e.nodes;
      }
    }
    return { k: kw, p, body: body.nodes, els, line } as Node;
  }

  private pipe(at: AT[], line: number): Pipe {
    let i = 0;
    const decl: string[] = [];
    let assign = false;
    // `$x :=` / `$x, $y :=` / `$x =`
    const save = i;
    while (at[i]?.k === 'var' && (at[i] as { fields: string[] }).fields.length === 0) {
      decl.push((at[i] as { v: string }).v);
      i++;
      const n = at[i];
      if (n?.k === 'op' && n.v === ',') {
        i++;
        continue;
      }
      break;
    }
    const op = at[i];
    if (decl.length && op?.k === 'op' && (op.v === ':=' || op.v === '=')) {
      assign = op.v === '=';
      i++;
    } else {
      decl.length = 0;
      i = save;
    }
    const cmds: Cmd[] = [];
    let args: Arg[] = [];
    const where = this.where(line);
    const readArg = (): Arg => {
      const t = at[i++]!;
      switch (t.k) {
        case 'field':
          return { k: 'field', v: t.v };
        case 'var':
          return { k: 'var', v: t.v, fields: t.fields };
        case 'str':
        case 'num':
        case 'bool':
          return { k: 'lit', v: t.v };
        case 'nil':
          return { k: 'lit', v: null };
        case 'ident':
          return { k: 'fn', v: t.v };
        case 'op':
          if (t.v === '(') {
            let depth = 1;
            const startI = i;
            while (i < at.length && depth > 0) {
              const x = at[i]!;
              if (x.k === 'op' && x.v === '(') depth++;
              if (x.k === 'op' && x.v === ')') depth--;
              i++;
            }
            if (depth !== 0) throw new TemplateError(`${where}: unclosed left paren`);
            const inner = this.pipe(at.slice(startI, i - 1), line);
            let fields: string[] = [];
            const nx = at[i];
            if (nx?.k === 'dotfields') {
              fields = nx.v;
              i++;
            }
            return { k: 'pipe', p: inner, fields };
          }
          throw new TemplateError(`${where}: unexpected ${JSON.stringify(t.v)} in operand`);
        default:
          throw new TemplateError(`${where}: unexpected token in operand`);
      }
    };
    while (i < at.length) {
      const t = at[i]!;
      if (t.k === 'op' && t.v === '|') {
        if (!args.length) throw new TemplateError(`${where}: missing command before |`);
        cmds.push({ args });
        args = [];
        i++;
        continue;
      }
      args.push(readArg());
    }
    if (args.length) cmds.push({ args });
    if (!cmds.length) throw new TemplateError(`${where}: missing value for command`);
    return { decl, assign, cmds };
  }
}

// ---------------- values ----------------

function isTrue(v: Value): boolean {
  if (v instanceof GoEnum) return v.number !== 0;
  if (v === MISSING || v === null || v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof GoStruct) return true;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function formatNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  const s = String(n);
  return s.replace(/e([+-])(\d)$/, 'e$10$2');
}

/** Go's fmt %v for our value model. */
export function goPrint(v: Value): string {
  if (v === MISSING) return '<no value>';
  if (v === null || v === undefined) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(goPrint).join(' ')}]`;
  if (v instanceof GoEnum) return v.name;
  if (v instanceof GoStruct) return v.text ? v.text() : `{${Object.values(v.fields).map(goPrint).join(' ')}}`;
  if (typeof v === 'object') {
    return `map[${Object.keys(v)
      .sort()
      .map((k) => `${k}:${goPrint((v as Record<string, unknown>)[k])}`)
      .join(' ')}]`;
  }
  return String(v);
}

/** encoding/json of a template value. */
function toJsonValue(v: Value): unknown {
  if (v === MISSING || v === undefined) return null;
  if (v instanceof GoStruct) return v.json();
  if (v instanceof GoEnum) return v.number;
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = toJsonValue((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}
const goJsonString = (v: Value): string =>
  JSON.stringify(toJsonValue(v)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

function field(v: Value, name: string, where: string): Value {
  if (v instanceof GoStruct) {
    if (Object.hasOwn(v.fields, name)) return v.fields[name];
    if (name.startsWith('Get') && Object.hasOwn(v.fields, name.slice(3))) return v.fields[name.slice(3)];
    throw new TemplateError(`${where}: can't evaluate field ${name} in type struct`);
  }
  if (v === null || v === undefined || v === MISSING) {
    if (v === MISSING) return MISSING;
    throw new TemplateError(`${where}: nil pointer evaluating .${name}`);
  }
  if (typeof v === 'object' && !Array.isArray(v)) {
    return Object.hasOwn(v, name) ? (v as Record<string, unknown>)[name] : MISSING;
  }
  throw new TemplateError(`${where}: can't evaluate field ${name} in type ${Array.isArray(v) ? 'slice' : typeof v}`);
}

function length(v: Value): number {
  if (typeof v === 'string') return Buffer.byteLength(v, 'utf8');
  if (Array.isArray(v)) return v.length;
  if (v instanceof GoStruct) throw new TemplateError('len of type struct');
  if (v && typeof v === 'object') return Object.keys(v).length;
  throw new TemplateError(`len of type ${v === null ? 'nil' : typeof v}`);
}

function eqValues(a: Value, b: Value): boolean {
  a = scalarOf(a);
  b = scalarOf(b);
  if (a === MISSING) a = null;
  if (b === MISSING) b = null;
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (typeof a !== typeof b && a !== null && b !== null) throw new TemplateError(`incompatible types for comparison`);
  return a === b;
}

function cmp(a: Value, b: Value): number {
  a = scalarOf(a);
  b = scalarOf(b);
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  throw new TemplateError('incompatible types for comparison');
}

/** Go's JSEscapeString. */
export function jsEscape(s: string): string {
  let out = '';
  for (const ch of s) {
    switch (ch) {
      case '\\': out += '\\\\'; continue;
      case "'": out += "\\'"; continue;
      case '"': out += '\\"'; continue;
      case '<': out += '\\u003C'; continue;
      case '>': out += '\\u003E'; continue;
      case '&': out += '\\u0026'; continue;
      case '=': out += '\\u003D'; continue;
    }
    const cp = ch.codePointAt(0)!;
    if (cp < 0x20 || !/[\p{L}\p{M}\p{N}\p{P}\p{S} ]/u.test(ch)) out += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    else out += ch;
  }
  return out;
}

function htmlEscape(s: string): string {
  return s.replace(/[&'<>"\0]/g, (c) => ({ '&': '&amp;', "'": '&#39;', '<': '&lt;', '>': '&gt;', '"': '&#34;', '\0': '\uFFFD' })[c]!);
}

/** Go's fmt.Sprintf, for the common verbs. */
export function goSprintf(format: string, ...args: Value[]): string {
  let ai = 0;
  return format.replace(/%([-+# 0]*)(\d+)?(?:\.(\d+))?([vdsqtfxXegc%])/g, (_m, flags: string, width: string | undefined, prec: string | undefined, verb: string) => {
    if (verb === '%') return '%';
    if (ai >= args.length) return `%!${verb}(MISSING)`;
    const a = args[ai++];
    let s: string;
    switch (verb) {
      case 'd':
        s = typeof a === 'number' ? String(Math.trunc(a)) : `%!d(${goPrint(a)})`;
        break;
      case 'f':
        s = typeof a === 'number' ? a.toFixed(prec === undefined ? 6 : Number(prec)) : `%!f(${goPrint(a)})`;
        break;
      case 'e':
      case 'g':
        s = typeof a === 'number' ? (verb === 'e' ? a.toExponential(prec === undefined ? 6 : Number(prec)) : formatNumber(a)) : goPrint(a);
        break;
      case 'q':
        s = JSON.stringify(goPrint(a));
        break;
      case 'x':
      case 'X':
        s = typeof a === 'number' ? a.toString(16) : Buffer.from(goPrint(a)).toString('hex');
        if (verb === 'X') s = s.toUpperCase();
        break;
      case 'c':
        s = typeof a === 'number' ? String.fromCodePoint(a) : goPrint(a);
        break;
      case 't':
        s = typeof a === 'boolean' ? String(a) : `%!t(${goPrint(a)})`;
        break;
      default:
        s = goPrint(a);
        if (prec !== undefined && verb === 's') s = s.slice(0, Number(prec));
    }
    if (width !== undefined && s.length < Number(width)) s = flags.includes('-') ? s.padEnd(Number(width)) : s.padStart(Number(width), flags.includes('0') && verb !== 's' ? '0' : ' ');
    return s;
  });
}

function isEmpty(v: Value): boolean {
  return !isTrue(v);
}

const toStr = (v: Value): string => (typeof v === 'string' ? v : goPrint(v));
const toNum = (v: Value): number => {
  if (v instanceof GoEnum) return v.number;
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v);
  return 0;
};

/** Functions available to templates: Go's builtins, Istio's toJSON, and basic sprig. */
const FUNCS: Readonly<Record<string, Fn>> = {
  // Go builtins
  not: (a) => !isTrue(a),
  len: (a) => length(a),
  index: (c, ...keys) => {
    let v = c;
    for (const k of keys) {
      if (Array.isArray(v)) {
        const n = toNum(k);
        if (n < 0 || n >= v.length) throw new TemplateError(`error calling index: index out of range: ${n}`);
        v = v[n];
      } else if (v instanceof GoStruct) throw new TemplateError("error calling index: can't index item of type struct");
      else if (v && typeof v === 'object') v = Object.hasOwn(v, String(k)) ? (v as Record<string, unknown>)[String(k)] : null;
      else if (typeof v === 'string') v = Buffer.from(v, 'utf8')[toNum(k)];
      else throw new TemplateError(`error calling index: index of untyped nil`);
    }
    return v;
  },
  slice: (c, ...idx) => {
    const a = toNum(idx[0] ?? 0);
    const b = idx[1] === undefined ? undefined : toNum(idx[1]);
    if (typeof c === 'string') {
      const bytes = Buffer.from(c, 'utf8');
      return bytes.subarray(a, b ?? bytes.length).toString('utf8');
    }
    if (Array.isArray(c)) return c.slice(a, b);
    throw new TemplateError('error calling slice: cannot slice');
  },
  eq: (a, ...bs) => bs.some((b) => eqValues(a, b)),
  ne: (a, b) => !eqValues(a, b),
  lt: (a, b) => cmp(a, b) < 0,
  le: (a, b) => cmp(a, b) <= 0,
  gt: (a, b) => cmp(a, b) > 0,
  ge: (a, b) => cmp(a, b) >= 0,
  print: (...a) => a.map((x, i) => (i > 0 && typeof x !== 'string' && typeof a[i - 1] !== 'string' ? ' ' : '') + goPrint(x)).join(''),
  println: (...a) => `${a.map(goPrint).join(' ')}\n`,
  printf: (f, ...a) => goSprintf(toStr(f), ...a),
  js: (...a) => jsEscape(a.map(goPrint).join('')),
  html: (...a) => htmlEscape(a.map(goPrint).join('')),
  urlquery: (...a) => encodeURIComponent(a.map(goPrint).join('')).replace(/%20/g, '+'),
  // Istio
  toJSON: (a) => (a === null || a === undefined || a === MISSING ? '{}' : goJsonString(a)),
  // sprig (generic subset)
  toJson: (a) => goJsonString(a),
  toPrettyJson: (a) => JSON.stringify(toJsonValue(a), null, 2),
  toRawJson: (a) => JSON.stringify(toJsonValue(a)),
  default: (def, ...given) => (given.length === 0 || isEmpty(given[0]) ? def : given[0]),
  empty: (a) => isEmpty(a),
  coalesce: (...a) => a.find((x) => !isEmpty(x)) ?? null,
  ternary: (t, f, c) => (isTrue(c) ? t : f),
  required: (msg, v) => {
    if (v === null || v === MISSING || v === '') throw new TemplateError(toStr(msg));
    return v;
  },
  fail: (msg) => {
    throw new TemplateError(toStr(msg));
  },
  quote: (...a) => a.filter((x) => x !== null && x !== MISSING).map((x) => JSON.stringify(toStr(x))).join(' '),
  squote: (...a) => a.filter((x) => x !== null && x !== MISSING).map((x) => `'${toStr(x)}'`).join(' '),
  toString: (a: Value) => toStr(a),
  toStrings: (a) => (Array.isArray(a) ? a.map(toStr) : [toStr(a)]),
  upper: (a) => toStr(a).toUpperCase(),
  lower: (a) => toStr(a).toLowerCase(),
  title: (a) => toStr(a).replace(/\b\w/g, (c) => c.toUpperCase()),
  trim: (a) => toStr(a).trim(),
  trimAll: (c, s) => toStr(s).replace(new RegExp(`^[${escapeRe(toStr(c))}]+|[${escapeRe(toStr(c))}]+$`, 'g'), ''),
  trimPrefix: (p, s) => (toStr(s).startsWith(toStr(p)) ? toStr(s).slice(toStr(p).length) : toStr(s)),
  trimSuffix: (p, s) => (toStr(p) !== '' && toStr(s).endsWith(toStr(p)) ? toStr(s).slice(0, -toStr(p).length) : toStr(s)),
  hasPrefix: (p, s) => toStr(s).startsWith(toStr(p)),
  hasSuffix: (p, s) => toStr(s).endsWith(toStr(p)),
  contains: (sub, s) => toStr(s).includes(toStr(sub)),
  replace: (o, n, s) => toStr(s).replaceAll(toStr(o), toStr(n)),
  repeat: (n, s) => toStr(s).repeat(Math.max(0, toNum(n))),
  nospace: (s) => toStr(s).replace(/\s/g, ''),
  trunc: (n, s) => {
    const str = toStr(s);
    const k = toNum(n);
    return k >= 0 ? str.slice(0, k) : str.slice(Math.max(0, str.length + k));
  },
  cat: (...a) => a.filter((x) => x !== null && x !== MISSING).map(goPrint).join(' '),
  indent: (n, s) => toStr(s).split('\n').map((l) => ' '.repeat(toNum(n)) + l).join('\n'),
  nindent: (n, s) => `\n${toStr(s).split('\n').map((l) => ' '.repeat(toNum(n)) + l).join('\n')}`,
  join: (sep, l) => (Array.isArray(l) ? l.map(toStr).join(toStr(sep)) : toStr(l)),
  splitList: (sep, s) => toStr(s).split(toStr(sep)),
  split: (sep, s) => Object.fromEntries(toStr(s).split(toStr(sep)).map((p, i) => [`_${i}`, p])),
  b64enc: (s) => Buffer.from(toStr(s), 'utf8').toString('base64'),
  b64dec: (s) => Buffer.from(toStr(s), 'base64').toString('utf8'),
  list: (...a) => a,
  first: (l) => (Array.isArray(l) && l.length ? l[0] : null),
  last: (l) => (Array.isArray(l) && l.length ? l[l.length - 1] : null),
  rest: (l) => (Array.isArray(l) ? l.slice(1) : []),
  initial: (l) => (Array.isArray(l) ? l.slice(0, -1) : []),
  append: (l, v) => [...(Array.isArray(l) ? l : []), v],
  prepend: (l, v) => [v, ...(Array.isArray(l) ? l : [])],
  concat: (...ls) => ls.flatMap((l) => (Array.isArray(l) ? l : [])),
  uniq: (l) => (Array.isArray(l) ? l.filter((x, i) => l.findIndex((y) => eqValues(x, y)) === i) : []),
  has: (v, l) => Array.isArray(l) && l.some((x) => x === v),
  sortAlpha: (l) => (Array.isArray(l) ? l.map(toStr).sort() : []),
  dict: (...kv) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < kv.length; i += 2) out[toStr(kv[i])] = kv[i + 1] ?? '';
    return out;
  },
  get: (m, k) => (m && typeof m === 'object' && !Array.isArray(m) && Object.hasOwn(m, toStr(k)) ? (m as Record<string, unknown>)[toStr(k)] : ''),
  set: (m, k, v) => {
    if (m && typeof m === 'object' && !Array.isArray(m)) (m as Record<string, unknown>)[toStr(k)] = v;
    return m;
  },
  hasKey: (m, k) => !!m && typeof m === 'object' && !Array.isArray(m) && Object.hasOwn(m, toStr(k)),
  keys: (...ms) => ms.flatMap((m) => (m && typeof m === 'object' && !Array.isArray(m) ? Object.keys(m) : [])),
  values: (m) => (m && typeof m === 'object' && !Array.isArray(m) ? Object.values(m) : []),
  pluck: (k, ...ms) => ms.filter((m) => m && typeof m === 'object' && Object.hasOwn(m, toStr(k))).map((m) => (m as Record<string, unknown>)[toStr(k)]),
  merge: (dst, ...srcs) => {
    const d = (dst ?? {}) as Record<string, unknown>;
    for (const s of srcs) for (const [k, v] of Object.entries((s ?? {}) as object)) if (!(k in d)) d[k] = v;
    return d;
  },
  int: (a) => Math.trunc(toNum(a)),
  int64: (a) => Math.trunc(toNum(a)),
  float64: (a) => toNum(a),
  atoi: (a) => Math.trunc(toNum(a)),
  add: (...a) => a.reduce<number>((s, x) => s + toNum(x), 0),
  add1: (a) => toNum(a) + 1,
  sub: (a, b) => toNum(a) - toNum(b),
  mul: (...a) => a.reduce<number>((s, x) => s * toNum(x), 1),
  div: (a, b) => Math.trunc(toNum(a) / toNum(b)),
  mod: (a, b) => toNum(a) % toNum(b),
  max: (...a) => Math.max(...a.map(toNum)),
  min: (...a) => Math.min(...a.map(toNum)),
  until: (n) => Array.from({ length: Math.max(0, toNum(n)) }, (_x, i) => i),
  kindIs: (k, v) => kindOf(v) === toStr(k),
  kindOf: (v) => kindOf(v),
  typeOf: (v) => kindOf(v),
  regexMatch: (re, s) => new RegExp(toStr(re)).test(toStr(s)),
  regexReplaceAll: (re, s, r) => toStr(s).replace(new RegExp(toStr(re), 'g'), toStr(r).replace(/\$\{?(\w+)\}?/g, '$$$1')),
};

function escapeRe(s: string): string {
  return s.replace(/[\\\]^-]/g, '\\$&');
}

function kindOf(v: Value): string {
  if (v === null || v === MISSING || v === undefined) return 'invalid';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float64';
  if (Array.isArray(v)) return 'slice';
  if (v instanceof GoStruct) return 'struct';
  if (v instanceof GoEnum) return 'int32';
  return 'map';
}

// ---------------- execution ----------------

class Break {}
class Continue {}

interface Scope {
  vars: Map<string, Value>;
  readonly parent?: Scope;
}

class Exec {
  private out = '';
  constructor(
    private readonly name: string,
    private readonly defs: Map<string, Node[]>,
    private readonly funcs: Readonly<Record<string, Fn>>,
  ) {}

  run(nodes: Node[], dot: Value): string {
    this.walk(nodes, dot, { vars: new Map([['$', dot]]) });
    return this.out;
  }

  private where(line: number): string {
    return `template: ${this.name}:${line}`;
  }

  private lookupVar(scope: Scope, name: string, line: number): Value {
    for (let s: Scope | undefined = scope; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
    throw new TemplateError(`${this.where(line)}: undefined variable: ${name}`);
  }

  private setVar(scope: Scope, name: string, v: Value, line: number): void {
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      if (s.vars.has(name)) {
        s.vars.set(name, v);
        return;
      }
    }
    throw new TemplateError(`${this.where(line)}: undefined variable: ${name}`);
  }

  private walk(nodes: Node[], dot: Value, scope: Scope): void {
    for (const n of nodes) {
      switch (n.k) {
        case 'text':
          this.out += n.v;
          break;
        case 'action': {
          const v = this.pipe(n.p, dot, scope, n.line);
          if (n.p.decl.length === 0) this.out += goPrint(v);
          break;
        }
        case 'if':
        case 'with': {
          const inner: Scope = { vars: new Map(), parent: scope };
          const v = this.pipe(n.p, dot, inner, n.line);
          if (isTrue(v)) this.walk(n.body, n.k === 'with' ? v : dot, inner);
          else this.walk(n.els, dot, { vars: new Map(), parent: scope });
          break;
        }
        case 'range':
          this.range(n, dot, scope);
          break;
        case 'template': {
          const body = this.defs.get(n.name);
          if (!body) throw new TemplateError(`${this.where(n.line)}: no such template ${JSON.stringify(n.name)}`);
          const arg = n.p ? this.pipe(n.p, dot, scope, n.line) : null;
          this.walk(body, arg, { vars: new Map([['$', arg]]) });
          break;
        }
        case 'break':
          throw new Break();
        case 'continue':
          throw new Continue();
      }
    }
  }

  private range(n: Extract<Node, { k: 'range' }>, dot: Value, scope: Scope): void {
    const decl = n.p.decl;
    const valuePipe: Pipe = { decl: [], assign: false, cmds: n.p.cmds };
    const v = this.pipe(valuePipe, dot, scope, n.line);
    let entries: [Value, Value][];
    if (Array.isArray(v)) entries = v.map((x, i) => [i, x]);
    else if (typeof v === 'number' && Number.isInteger(v)) entries = Array.from({ length: Math.max(0, v) }, (_x, i) => [i, i]);
    else if (v === null || v === undefined || v === MISSING) entries = [];
    else if (v instanceof GoStruct) throw new TemplateError(`${this.where(n.line)}: range can't iterate over struct`);
    else if (typeof v === 'object') entries = Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]);
    else throw new TemplateError(`${this.where(n.line)}: range can't iterate over ${goPrint(v)}`);
    if (entries.length === 0) {
      this.walk(n.els, dot, { vars: new Map(), parent: scope });
      return;
    }
    for (const [k, x] of entries) {
      const inner: Scope = { vars: new Map(), parent: scope };
      if (decl.length === 1) inner.vars.set(decl[0]!, x);
      if (decl.length >= 2) {
        inner.vars.set(decl[0]!, k);
        inner.vars.set(decl[1]!, x);
      }
      try {
        this.walk(n.body, x, inner);
      } catch (e) {
        if (e instanceof Break) break;
        if (e instanceof Continue) continue;
        throw e;
      }
    }
  }

  private pipe(p: Pipe, dot: Value, scope: Scope, line: number): Value {
    let v: Value = MISSING;
    let first = true;
    for (const c of p.cmds) {
      v = this.cmd(c, dot, scope, line, first ? undefined : { v });
      first = false;
    }
    for (const name of p.decl) {
      if (p.assign) this.setVar(scope, name, v, line);
      else scope.vars.set(name, v);
    }
    return v;
  }

  private operand(a: Arg, dot: Value, scope: Scope, line: number): Value {
    const where = this.where(line);
    switch (a.k) {
      case 'lit':
        return a.v;
      case 'field':
        return a.v.reduce((acc, f) => field(acc, f, where), dot);
      case 'var':
        return a.fields.reduce((acc, f) => field(acc, f, where), this.lookupVar(scope, a.v, line));
      case 'pipe':
        return a.fields.reduce((acc, f) => field(acc, f, where), this.pipe(a.p, dot, { vars: new Map(), parent: scope }, line));
      case 'fn':
        return this.call(a.v, [], [], dot, scope, line, undefined);
    }
  }

  private cmd(c: Cmd, dot: Value, scope: Scope, line: number, piped: { v: Value } | undefined): Value {
    const head = c.args[0]!;
    if (head.k === 'fn') return this.call(head.v, c.args.slice(1), [], dot, scope, line, piped);
    if (c.args.length > 1 || piped) throw new TemplateError(`${this.where(line)}: can't give argument to non-function`);
    return this.operand(head, dot, scope, line);
  }

  private call(name: string, args: Arg[], _extra: Value[], dot: Value, scope: Scope, line: number, piped: { v: Value } | undefined): Value {
    const where = this.where(line);
    const ev = (a: Arg): Value => this.operand(a, dot, scope, line);
    if (name === 'and' || name === 'or') {
      const all = [...args.map((a) => () => ev(a)), ...(piped ? [() => piped.v] : [])];
      if (all.length === 0) throw new TemplateError(`${where}: wrong number of args for ${name}: want at least 1 got 0`);
      let v: Value = null;
      for (const get of all) {
        v = get();
        if (name === 'and' ? !isTrue(v) : isTrue(v)) return v;
      }
      return v;
    }
    const fn = Object.hasOwn(this.funcs, name) ? this.funcs[name] : undefined;
    if (!fn) throw new TemplateError(`${where}: function ${JSON.stringify(name)} not defined`);
    const vals = args.map(ev);
    if (piped) vals.push(piped.v);
    try {
      return fn(...vals.map((x) => (x === MISSING ? null : x)));
    } catch (e) {
      if (e instanceof TemplateError && e.message.startsWith('template:')) throw e;
      throw new TemplateError(`${where}: executing "${this.name}" at <${name}>: error calling ${name}: ${(e as Error).message}`);
    }
  }
}

/** Parses and executes a Go text/template with `data` as dot. Throws TemplateError. */
export function renderGoTemplate(source: string, data: Value, opts: { name?: string; funcs?: Readonly<Record<string, Fn>> } = {}): string {
  const name = opts.name ?? 'bootstrap';
  const parser = new Parser(lex(source, name), name);
  const nodes = parser.parse();
  return new Exec(name, parser.defs, { ...FUNCS, ...opts.funcs }).run(nodes, data);
}
