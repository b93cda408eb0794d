// The DNS proxy's lookup table: istiod's NameTable indexed under every spelling a pod uses, and the
// answer rules, as pilot-agent 1.30 has them. Pure (no I/O); built once per NDS update and swapped whole.
//
// Indexing (per entry): Kubernetes entries inside the proxy's cluster domain also answer as `name.ns.`,
// `name.ns.svc.`, `name.` (same namespace only) and their deprecated alt hosts; every name also answers as
// itself with the first search domain appended, as a CNAME to the name (what a resolver that applies the
// search list asks first). Wildcard entries (`*.example.com`) answer for any name below them, most
// specific first. Only A and AAAA are answered; a known name without addresses of the asked family gets
// NOERROR with no answer (never NXDOMAIN); anything else is forwarded upstream.
import { isIPv4, isIPv6, SocketAddress } from 'node:net';
import type { Answer } from 'dns-packet';
import type { NameTable, NameInfo } from './nds.js';

export const TTL_SECONDS = 30;

export interface TableContext {
  /** POD_NAMESPACE */
  readonly proxyNamespace: string;
  /** `--domain` (`<ns>.svc.cluster.local`) */
  readonly proxyDomain: string;
  /** resolv.conf search list (only the first is used, as pilot-agent does) */
  readonly search: readonly string[];
}

export interface LookupTable {
  /** Names the table answers for (lowercase, with the trailing dot). */
  readonly allHosts: ReadonlySet<string>;
  readonly name4: ReadonlyMap<string, readonly string[]>;
  readonly name6: ReadonlyMap<string, readonly string[]>;
  /** search-expanded name -> the name it is a CNAME for */
  readonly cname: ReadonlyMap<string, string>;
  /** Entries of the NameTable (for status). */
  readonly entries: number;
  /** Entries skipped because none of their addresses parsed. */
  readonly skipped: number;
}

export interface LookupResult {
  /** false: not the table's to answer (forward upstream). */
  readonly found: boolean;
  readonly answers: Answer[];
}

function withDot(s: string): string {
  return s.endsWith('.') ? s : `${s}.`;
}

/** The names a Kubernetes entry answers for (pilot-agent's generateAltHosts). */
export function kubernetesAltHosts(hostname: string, ni: NameInfo, proxyNamespace: string, proxyDomain: string, proxyDomainParts: readonly string[]): Set<string> {
  const out = new Set<string>();
  // a Kubernetes key already ending in a dot is ignored altogether (as pilot-agent does)
  if (hostname.endsWith('.')) return out;
  out.add(`${hostname}.`);
  // a plain suffix test, not label-aware, as pilot-agent's
  if (proxyDomain === '' || !hostname.endsWith(proxyDomain)) return out;
  out.add(`${ni.shortname}.${ni.namespace}.`);
  if (proxyNamespace === ni.namespace) out.add(`${ni.shortname}.`);
  out.add(`${ni.shortname}.${ni.namespace}.${proxyDomainParts[0] ?? ''}.`);
  for (const h of ni.altHosts) out.add(`${h}.`);
  return out;
}

/** pilot-agent's domain normalisation: `ns1.svc.cluster.local` in namespace ns1 becomes `svc.cluster.local`. */
export function normaliseProxyDomain(proxyDomain: string, proxyNamespace: string): { domain: string; parts: string[] } {
  const parts = proxyDomain.split('.');
  if (parts[0] === proxyNamespace) parts.shift();
  return { domain: parts.join('.'), parts };
}

/** An entry's addresses as pilot-agent splits them: IPv4, and IPv6 without a zone; the rest ignored. */
function splitAddresses(ips: readonly string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const ip of ips) {
    if (isIPv4(ip)) v4.push(ip);
    else if (isIPv6(ip) && !ip.includes('%')) v6.push(ip);
  }
  return { v4, v6 };
}

/** The names an entry answers for: Kubernetes spellings, or the name itself with the trailing dot. */
function entryHosts(hostname: string, ni: NameInfo, ctx: TableContext): Set<string> {
  const { domain, parts } = normaliseProxyDomain(ctx.proxyDomain, ctx.proxyNamespace);
  return ni.registry === 'Kubernetes' ? kubernetesAltHosts(hostname, ni, ctx.proxyNamespace, domain, parts) : new Set([withDot(hostname)]);
}

/**
 * An IPv6 address as Go's netip prints it (RFC 5952: lower case, longest zero run as `::`), with an IPv4
 * tail only for IPv4-mapped addresses (`::ffff:1.2.3.4`; the URL parser would print `::ffff:102:304`, and
 * libuv prints other `::/96` addresses with one too).
 */
function netipString(a: string): string {
  const s = new URL(`http://[${a}]`).hostname.slice(1, -1);
  return /^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(s) ? new SocketAddress({ address: a, family: 'ipv6' }).address : s;
}

/** One entry of /debug/ndsz: protobuf JSON field names, empty fields left out. */
export interface NameInfoJson {
  readonly ips?: readonly string[];
  readonly registry?: string;
  readonly shortname?: string;
  readonly namespace?: string;
  readonly altHosts?: readonly string[];
}

/**
 * The table as the status port's `/debug/ndsz` shows it, as pilot-agent does: istiod's NameTable as
 * protobuf JSON (keys sorted), plus every name the agent generated for an entry (`name.ns.`, ...) that is
 * not already a key, as a `Kubernetes` entry with that entry's addresses, IPv4 first (IPv6 normalised).
 * Entries without a usable address generate no names. Search-domain CNAMEs are not shown.
 */
export function nameTableJson(nt: NameTable, ctx: TableContext): { table?: Record<string, NameInfoJson> } {
  const out = new Map<string, NameInfoJson>();
  for (const [hostname, ni] of nt) {
    out.set(hostname, {
      ...(ni.ips.length ? { ips: ni.ips } : {}),
      ...(ni.registry ? { registry: ni.registry } : {}),
      ...(ni.shortname ? { shortname: ni.shortname } : {}),
      ...(ni.namespace ? { namespace: ni.namespace } : {}),
      ...(ni.altHosts.length ? { altHosts: ni.altHosts } : {}),
    });
  }
  for (const [hostname, ni] of nt) {
    const { v4, v6 } = splitAddresses(ni.ips);
    if (v4.length === 0 && v6.length === 0) continue;
    const ips = [...v4, ...v6.map(netipString)];
    for (const h of entryHosts(hostname, ni, ctx)) if (!out.has(h)) out.set(h, { ips, registry: 'Kubernetes' });
  }
  if (out.size === 0) return {};
  return { table: Object.fromEntries([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
}

/** Builds the lookup table for one NameTable. */
export function buildLookupTable(nt: NameTable, ctx: TableContext): LookupTable {
  const allHosts = new Set<string>();
  const name4 = new Map<string, string[]>();
  const name6 = new Map<string, string[]>();
  const cname = new Map<string, string>();
  const first = ctx.search[0];
  let skipped = 0;
  for (const [hostname, ni] of nt) {
    const altHosts = entryHosts(hostname, ni, ctx);
    const { v4, v6 } = splitAddresses(ni.ips);
    if (v4.length === 0 && v6.length === 0) {
      skipped++;
      continue;
    }
    for (const alt of altHosts) {
      const h = alt.toLowerCase();
      allHosts.add(h);
      if (v4.length) name4.set(h, v4);
      if (v6.length) name6.set(h, v6);
      if (first !== undefined && first !== '' && !h.endsWith(`${first}.`)) {
        const exp = withDot((h + first).toLowerCase());
        if (!altHosts.has(exp)) {
          cname.set(exp, h);
          allHosts.add(exp);
        }
      }
    }
  }
  return { allHosts, name4, name6, cname, entries: nt.size, skipped };
}

function records(owner: string, type: 'A' | 'AAAA', ips: readonly string[]): Answer[] {
  return ips.map((data) => ({ name: owner, type, class: 'IN', ttl: TTL_SECONDS, data }) as Answer);
}

/**
 * The table's answer for `qname` (any case, with or without the trailing dot) and `qtype`. Owners are
 * lowercase; the caller shuffles the address records.
 */
export function lookup(t: LookupTable, qtype: string, qname: string): LookupResult {
  const question = withDot(qname.toLowerCase());
  let hostname = question;
  let wildcard = false;
  if (!t.allHosts.has(hostname)) {
    const labels = hostname.split('.').filter((l) => l !== '');
    let hit: string | undefined;
    for (let i = 1; i < labels.length && hit === undefined; i++) {
      const q = `*.${labels.slice(i).join('.')}.`;
      if (t.allHosts.has(q)) hit = q;
    }
    if (hit === undefined) return { found: false, answers: [] };
    wildcard = true;
    hostname = hit;
  }
  const out: Answer[] = [];
  const target = t.cname.get(hostname);
  if (target !== undefined) {
    out.push({ name: question, type: 'CNAME', class: 'IN', ttl: TTL_SECONDS, data: target } as Answer);
    hostname = target;
  }
  let ips: readonly string[] | undefined;
  if (qtype === 'A') ips = t.name4.get(hostname);
  else if (qtype === 'AAAA') ips = t.name6.get(hostname);
  else return { found: false, answers: [] };
  if (!ips || ips.length === 0) return { found: true, answers: [] };
  const owner = wildcard && target === undefined ? question : hostname;
  out.push(...records(owner, qtype, ips));
  return { found: true, answers: out };
}

/** Shuffles the address records in place (they come after the CNAME, if any): load spreading, as pilot-agent. */
export function shuffleAddresses(answers: Answer[]): void {
  const start = answers.findIndex((a) => a.type === 'A' || a.type === 'AAAA');
  if (start < 0) return;
  for (let i = answers.length - 1; i > start; i--) {
    const j = start + Math.floor(Math.random() * (i - start + 1));
    const tmp = answers[i]!;
    answers[i] = answers[j]!;
    answers[j] = tmp;
  }
}
