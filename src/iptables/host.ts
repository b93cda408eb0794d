// Inputs pilot-agent takes from the host: whether IPv6 is enabled (from the local addresses), the DNS
// servers (/etc/resolv.conf) and the proxy uid (ENVOY_USER from /etc/passwd). Parsing is pure; the small
// readers at the bottom do the I/O.

import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { addrString, is4, is6, isLinkLocalMulticast, isLinkLocalUnicast, isLoopback, parseAddr, unmap, type IpAddr } from './netip.js';

export interface LocalAddr {
  readonly ifname: string;
  readonly address: string;
}

export interface HostIPResult {
  readonly hostIP: string;
  readonly ipv6: boolean;
}

/**
 * pilot-agent's getLocalIP over the kernel's address dump order (every IPv4 address, then every IPv6
 * address, each in interface order): the first address that is not loopback/link-local decides. With
 * dual-stack, IPv6 is on if any such IPv6 address exists. Throws "no valid local IP address found".
 */
export function detectHostIP(addrs: readonly LocalAddr[], dualStack: boolean): HostIPResult {
  const ordered = [...addrs.filter((a) => !a.address.includes(':')), ...addrs.filter((a) => a.address.includes(':'))];
  const found: IpAddr[] = [];
  let ipv6 = false;
  for (const a of ordered) {
    let ip: IpAddr;
    try {
      ip = unmap(parseAddr(a.address.replace(/%.*$/, '')));
    } catch {
      continue;
    }
    if (isLoopback(ip) || isLinkLocalUnicast(ip) || isLinkLocalMulticast(ip)) continue;
    ipv6 = is6(ip);
    found.push(ip);
    if (!dualStack) return { hostIP: addrString(ip), ipv6 };
    if (ipv6) break;
  }
  if (found.length) return { hostIP: addrString(found[0]!), ipv6 };
  throw new Error('no valid local IP address found');
}

/** Nameserver entries of a resolv.conf, as written (first word after `nameserver`). */
export function parseResolvConf(text: string): string[] {
  const servers: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'nameserver' && f.length > 1) servers.push(f[1]!);
  }
  return servers;
}

/** Splits resolv.conf servers into families, re-printed canonically; unparsable entries are dropped. */
export function splitServersCanonical(servers: readonly string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const s of servers) {
    let ip: IpAddr;
    try {
      ip = parseAddr(s);
    } catch {
      continue;
    }
    (is4(ip) ? v4 : v6).push(addrString(ip));
  }
  return { v4, v6 };
}

/**
 * Splits an explicit `--dns-servers` list into families keeping each entry verbatim; empty items are
 * ignored. Throws naming the first entry that is not an IP address.
 */
export function splitServersVerbatim(list: string): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const s of list.split(',')) {
    if (s === '') continue;
    let ip: IpAddr;
    try {
      ip = parseAddr(s);
    } catch (e) {
      throw new Error(`${JSON.stringify(s)} is not an IP address (${(e as Error).message})`);
    }
    // the address goes into a rule as `-d <addr>/32|128`, where iptables takes no zone
    if (ip.zone !== '') throw new Error(`${JSON.stringify(s)}: a DNS server address cannot have a zone`);
    (is4(ip) ? v4 : v6).push(s);
  }
  return { v4, v6 };
}

/** The uid of a user name in passwd(5) text, if present. */
export function lookupUid(passwd: string, user: string): string | undefined {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && f[0] === user && /^\d+$/.test(f[2]!)) return f[2];
  }
  return undefined;
}

// ---- readers ----

/** Local addresses in interface order (os.networkInterfaces reflects the current network namespace). */
export function readLocalAddrs(): LocalAddr[] {
  return Object.entries(networkInterfaces()).flatMap(([ifname, list]) => (list ?? []).map((a) => ({ ifname, address: a.address })));
}

export function readTextFile(path: string): string {
  return readFileSync(path, 'utf8');
}
