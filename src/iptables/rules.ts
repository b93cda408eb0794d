// Rule lists per IP family and the text forms derived from them: iptables-restore payloads, `-C` checks,
// `-D`/`-F`/`-X` cleanup commands, guardrails, and a parser for `iptables-save` output.

export type Family = 'v4' | 'v6';

export interface Rule {
  readonly chain: string;
  readonly table: string;
  /** Starts with `-A CHAIN` or `-I CHAIN POS`. */
  readonly params: readonly string[];
}

/** Chains and targets that are never declared with `-N` nor flushed/deleted. */
export const BUILTIN_CHAINS: ReadonlySet<string> = new Set([
  'INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING', 'ACCEPT', 'RETURN', 'DROP',
]);

/** Marks the parameter that is replaced by a per-family address in versioned rules. */
export const FAMILY_SPECIFIC = Symbol('family-specific');
export type Param = string | typeof FAMILY_SPECIFIC;

/** Ordered rules for IPv4 and IPv6; IPv6 additions are dropped when IPv6 is off. */
export class RuleSet {
  readonly v4: Rule[] = [];
  readonly v6: Rule[] = [];
  constructor(readonly ipv6: boolean) {}

  private list(f: Family): Rule[] | undefined {
    return f === 'v4' ? this.v4 : this.ipv6 ? this.v6 : undefined;
  }

  appendTo(f: Family, chain: string, table: string, ...params: string[]): this {
    this.list(f)?.push({ chain, table, params: ['-A', chain, ...params] });
    return this;
  }

  insertTo(f: Family, chain: string, table: string, pos: number, ...params: string[]): this {
    this.list(f)?.push({ chain, table, params: ['-I', chain, String(pos), ...params] });
    return this;
  }

  append(chain: string, table: string, ...params: string[]): this {
    return this.appendTo('v4', chain, table, ...params).appendTo('v6', chain, table, ...params);
  }

  insert(chain: string, table: string, pos: number, ...params: string[]): this {
    return this.insertTo('v4', chain, table, pos, ...params).insertTo('v6', chain, table, pos, ...params);
  }

  /** Appends to both families, substituting FAMILY_SPECIFIC with `v4`/`v6`. */
  appendVersioned(v4: string, v6: string, chain: string, table: string, ...params: Param[]): this {
    const sub = (x: string) => params.map((p) => (p === FAMILY_SPECIFIC ? x : p));
    return this.appendTo('v4', chain, table, ...sub(v4)).appendTo('v6', chain, table, ...sub(v6));
  }

  rules(f: Family): readonly Rule[] {
    return f === 'v4' ? this.v4 : this.v6;
  }
}

const key = (chain: string, table: string) => `${chain}:${table}`;

/** The iptables-restore payload for one family (tables in name order, `-N` lines first, no policies). */
export function renderRestore(rules: readonly Rule[]): string {
  const tables = new Map<string, string[]>([['filter', []], ['nat', []], ['mangle', []]]);
  const lines = (t: string): string[] => {
    let l = tables.get(t);
    if (!l) tables.set(t, (l = []));
    return l;
  };
  const seen = new Set<string>();
  for (const r of rules) {
    const k = key(r.chain, r.table);
    if (seen.has(k)) continue;
    seen.add(k);
    if (!BUILTIN_CHAINS.has(r.chain)) lines(r.table).push(`-N ${r.chain}`);
  }
  for (const r of rules) {
    const p = r.params;
    if (p.length >= 2 && p[p.length - 2] === '-j') {
      const target = p[p.length - 1]!;
      const k = key(target, r.table);
      if (seen.has(k)) continue;
      seen.add(k);
      if (!BUILTIN_CHAINS.has(target)) lines(r.table).push(`-N ${target}`);
    }
  }
  for (const r of rules) lines(r.table).push(r.params.join(' '));
  let out = '';
  for (const t of [...tables.keys()].sort()) {
    const l = tables.get(t)!;
    if (!l.length) continue;
    out += `* ${t}\n${l.map((x) => `${x}\n`).join('')}COMMIT\n`;
  }
  return out;
}

/**
 * The argv of a rule as iptables-restore would tokenise its line (values are printed verbatim into the
 * payload, so a value with spaces is several words there; the same split keeps `-C`/`-D` consistent).
 */
export function ruleWords(params: readonly string[]): string[] {
  return params.join(' ').split(/\s+/).filter((w) => w !== '');
}

/** Replaces `-A X`/`-I X N` with `op X` (dropping the position). */
function withOp(params: readonly string[], op: string): string[] {
  const out: string[] = [];
  let insertAt = -1;
  params.forEach((p, i) => {
    if (insertAt >= 0 && i === insertAt + 2) return;
    if (p === '-A' || p === '--append') out.push(op);
    else if (p === '-I' || p === '--insert') {
      insertAt = i;
      out.push(op);
    } else out.push(p);
  });
  return out;
}

/** `-t TABLE -C ...` for every rule: all must succeed for the state to count as applied. */
export function checkCommands(rules: readonly Rule[]): string[][] {
  return rules.map((r) => ['-t', r.table, ...withOp(r.params, '-C')]);
}

/**
 * Rules needed to undo `rules`: each becomes `-D`, except rules inside ISTIO_ chains that do not jump to
 * another ISTIO_ chain (those chains are flushed anyway).
 */
export function undoRules(rules: readonly Rule[]): Rule[] {
  const out: Rule[] = [];
  for (const r of rules) {
    let skip = false;
    const p = r.params;
    for (let i = 0; i < p.length; i++) {
      const el = p[i]!;
      const next = p[i + 1];
      if ((el === '-A' || el === '--append' || el === '-I' || el === '--insert') && next?.startsWith('ISTIO_')) skip = true;
      else if ((el === '-j' || el === '--jump') && next?.startsWith('ISTIO_')) skip = false;
    }
    if (!skip) out.push({ chain: r.chain, table: r.table, params: withOp(p, '-D') });
  }
  return out;
}

/** Cleanup commands for a planned rule list: deletes in reverse order, then `-F`/`-X` of our chains. */
export function cleanupCommands(rules: readonly Rule[]): string[][] {
  const reversed = [...rules].reverse();
  const out = undoRules(reversed).map((r) => ['-t', r.table, ...r.params]);
  const seen = new Set<string>();
  for (const r of reversed) {
    const k = key(r.chain, r.table);
    if (seen.has(k) || BUILTIN_CHAINS.has(r.chain)) continue;
    seen.add(k);
    out.push(['-t', r.table, '-F', r.chain], ['-t', r.table, '-X', r.chain]);
  }
  return out;
}

function guardrailRules(): Rule[] {
  const out: Rule[] = [];
  for (const chain of ['INPUT', 'FORWARD', 'OUTPUT'])
    for (const proto of ['tcp', 'udp']) out.push({ chain, table: 'filter', params: ['-I', chain, '1', '-p', proto, '-j', 'DROP'] });
  return out;
}

/** Drop-all rules installed while a reconcile replaces the rule set. */
export function guardrailCommands(): string[][] {
  return guardrailRules().map((r) => ['-t', r.table, ...r.params]);
}

export function guardrailCleanupCommands(): string[][] {
  return undoRules(guardrailRules()).map((r) => ['-t', r.table, ...r.params]);
}

/** table -> chain -> rule lines. Only ISTIO chains are listed when declared; other chains when they have rules. */
export type SaveState = Map<string, Map<string, string[]>>;

/** Parses iptables-save (or restore) text into the chains and rules of the four standard tables. */
export function parseSaveState(text: string): SaveState {
  const state: SaveState = new Map(['filter', 'nat', 'mangle', 'raw'].map((t) => [t, new Map<string, string[]>()]));
  let table = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      continue;
    }
    const chains = state.get(table);
    if (!chains) continue;
    if (line.startsWith(':')) {
      if (!line.startsWith(':ISTIO')) continue;
      const chain = line.split(' ')[0]!.slice(1);
      if (!chains.has(chain)) chains.set(chain, []);
      continue;
    }
    const words = line.split(' ');
    let chain = '';
    let add = false;
    words.forEach((w, i) => {
      if (i + 1 >= words.length) return;
      const next = words[i + 1]!.replace(/^['"]+|['"]+$/g, '');
      if (w === '--append' || w === '-A' || w === '--insert' || w === '-I') {
        add = true;
        chain = next;
      } else if ((w === '--new' || w === '-N') && next.startsWith('ISTIO')) {
        chain = next;
      }
    });
    if (chain === '') continue;
    if (!chains.has(chain)) chains.set(chain, []);
    if (add) chains.get(chain)!.push(line);
  }
  return state;
}

export function isEmptyState(s: SaveState): boolean {
  for (const chains of s.values()) if (chains.size) return false;
  return true;
}

/** True if the rule line jumps to an ISTIO_ chain. */
export function isIstioJump(line: string): boolean {
  const f = line.split(/\s+/).filter(Boolean);
  const i = f.findIndex((w) => w === '-j' || w === '--jump');
  return i >= 0 && i + 1 < f.length && f[i + 1]!.replace(/^['"]+|['"]+$/g, '').startsWith('ISTIO_');
}

/**
 * Commands removing every ISTIO_ trace found in a saved state: rules in other chains that jump to ISTIO_
 * chains, then flush and delete of every ISTIO_ chain (rules between ISTIO_ chains are flushed first, so
 * deleting in any order works).
 */
export function cleanupFromState(state: SaveState): string[][] {
  const out: string[][] = [];
  for (const [table, chains] of state) {
    for (const [chain, lines] of chains) {
      if (chain.startsWith('ISTIO_')) continue;
      for (const l of lines) if (isIstioJump(l)) out.push(['-t', table, ...withOp(l.split(/\s+/).filter(Boolean), '-D')]);
    }
  }
  for (const [table, chains] of state)
    for (const chain of chains.keys()) if (chain.startsWith('ISTIO_')) out.push(['-t', table, '-F', chain]);
  for (const [table, chains] of state)
    for (const chain of chains.keys()) if (chain.startsWith('ISTIO_')) out.push(['-t', table, '-X', chain]);
  return out;
}
