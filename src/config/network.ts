// Proxy IP discovery as pilot-agent does it (pilot-agent `initProxy` + `network.GetPrivateIPs`):
// INSTANCE_IP first (when it parses), then the addresses of every up, non-loopback interface that are
// not loopback / link-local, minus the addresses of interfaces named in the pod annotation
// `traffic.sidecar.istio.io/excludeInterfaces`, de-duplicated; `127.0.0.1, ::1` when the host has none.
import { isIPv4 } from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';

export type IpMode = 'IPv4' | 'IPv6' | 'Dual';
export type Interfaces = Readonly<Record<string, readonly NetworkInterfaceInfo[] | undefined>>;

/** Canonical text of an IP address (Go netip's String()), or undefined when it is not an IP. */
export function canonicalIp(text: string): string | undefined {
  const [addr, zone] = text.split('%', 2) as [string, string | undefined];
  if (isIPv4(addr) && zone === undefined) return addr;
  const words = ipv6Words(addr);
  if (!words) return undefined;
  let out: string;
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    out = `::ffff:${words[6]! >> 8}.${words[6]! & 255}.${words[7]! >> 8}.${words[7]! & 255}`;
  } else {
    // RFC 5952: compress the longest run (length >= 2) of zero words
    let best = -1;
    let bestLen = 0;
    for (let i = 0; i < 8; ) {
      if (words[i] !== 0) {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && words[j] === 0) j++;
      if (j - i > bestLen && j - i >= 2) {
        best = i;
        bestLen = j - i;
      }
      i = j;
    }
    const hex = words.map((w) => w.toString(16));
    out = best < 0 ? hex.join(':') : `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
  }
  return zone === undefined ? out : `${out}%${zone}`;
}

/**
 * The eight 16-bit words of an IPv6 address written without a zone, or undefined when the text is not one:
 * hexadecimal groups of one to four digits, at most one `::`, and optionally a dotted IPv4 address last
 * (inet_pton's grammar; the property test checks it against node:net isIPv6). Hand-written rather than
 * node:net's: isIPv6's first call compiles a very large regular expression (about 5 ms on the path to
 * spawning Envoy), and SocketAddress (inet_pton itself) cannot run while the start-up snapshot is built.
 */
export function ipv6Words(addr: string): number[] | undefined {
  const halves = addr.split('::');
  if (halves.length > 2) return undefined;
  const compressed = halves.length === 2;
  const head = ipv6Groups(halves[0]!, !compressed);
  const tail = compressed ? ipv6Groups(halves[1]!, true) : [];
  if (!head || !tail) return undefined;
  const n = head.length + tail.length;
  if (compressed ? n > 7 : n !== 8) return undefined;
  return [...head, ...Array<number>(8 - n).fill(0), ...tail];
}

/** The words of one side of `::` ('' has none); an IPv4 address may end it when `last`. */
function ipv6Groups(side: string, last: boolean): number[] | undefined {
  if (side === '') return [];
  const groups = side.split(':');
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
      words.push(parseInt(g, 16));
      continue;
    }
    if (!last || i !== groups.length - 1) return undefined;
    const octets = g.split('.');
    if (octets.length !== 4 || !octets.every((o) => /^(0|[1-9]\d{0,2})$/.test(o) && Number(o) <= 255)) return undefined;
    const [a, b, c, d] = octets.map(Number) as [number, number, number, number];
    words.push((a << 8) | b, (c << 8) | d);
  }
  return words;
}

const isV4 = (ip: string): boolean => isIPv4(ip) || /^::ffff:\d+\.\d+\.\d+\.\d+$/.test(ip);

function skipAddress(ip: string): boolean {
  const v4 = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  if (isIPv4(v4)) {
    const [a, b, c] = v4.split('.').map(Number) as [number, number, number];
    return a === 127 || (a === 169 && b === 254) || (a === 224 && b === 0 && c === 0) || v4 === '0.0.0.0';
  }
  const lower = ip.toLowerCase();
  return lower === '::1' || lower === '::' || /^fe[89ab]/.test(lower) || /^ff[0-9a-f]2:/.test(lower);
}

/** The addresses of up, non-loopback interfaces that pilot-agent considers private IPs, in order. */
export function interfaceAddresses(ifaces: Interfaces, only?: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(ifaces)) {
    if (only && !only.has(name)) continue;
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      const ip = canonicalIp(a.address);
      if (ip === undefined || skipAddress(ip)) continue;
      out.push(ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip);
    }
  }
  return out;
}

/** The proxy's IP list: pod IP first, then the host's addresses (see file comment). */
export function discoverProxyIps(instanceIp: string, ifaces: Interfaces, excludeInterfaces: readonly string[] = []): string[] {
  const ips: string[] = [];
  const podIp = canonicalIp(instanceIp);
  if (podIp !== undefined) ips.push(podIp);
  let host = interfaceAddresses(ifaces);
  if (host.length === 0) host = ['127.0.0.1', '::1'];
  const exclude = new Set([...interfaceAddresses(ifaces, new Set(excludeInterfaces)), ...ips]);
  for (const ip of host) {
    if (exclude.has(ip)) continue;
    exclude.add(ip);
    ips.push(ip);
  }
  return ips;
}

/** Istio's DiscoverIPMode: all IPv4 => IPv4, all IPv6 => IPv6, else Dual. Unparsable entries are skipped. */
export function ipMode(ips: readonly string[]): IpMode {
  const valid = ips.filter((ip) => canonicalIp(ip) !== undefined);
  if (valid.every(isV4)) return 'IPv4';
  if (valid.every((ip) => !isV4(ip))) return 'IPv6';
  return 'Dual';
}

/** Istio's network.AllIPv4 / AllIPv6 on a list (unparsable entries skipped). */
export const allIPv4 = (ips: readonly string[]): boolean => ips.filter((ip) => canonicalIp(ip) !== undefined).every(isV4);
export const allIPv6 = (ips: readonly string[]): boolean => ips.filter((ip) => canonicalIp(ip) !== undefined).every((ip) => !isV4(ip));
export const isIpv6Address = (ip: string): boolean => canonicalIp(ip) !== undefined && !isV4(ip);
