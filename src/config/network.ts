// Proxy IP discovery as pilot-agent does it (pilot-agent `initProxy` + `network.GetPrivateIPs`):
// INSTANCE_IP first (when it parses), then the addresses of every up, non-loopback interface that are
// not loopback / link-local, minus the addresses of interfaces named in the pod annotation
// `traffic.sidecar.istio.io/excludeInterfaces`, de-duplicated; `127.0.0.1, ::1` when the host has none.
import { isIPv4, SocketAddress } from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';

export type IpMode = 'IPv4' | 'IPv6' | 'Dual';
export type Interfaces = Readonly<Record<string, readonly NetworkInterfaceInfo[] | undefined>>;

/** Canonical text of an IP address (Go netip's String()), or undefined when it is not an IP. */
export function canonicalIp(text: string): string | undefined {
  const [addr, zone] = text.split('%', 2) as [string, string | undefined];
  if (isIPv4(addr) && zone === undefined) return addr;
  if (!isIpv6Text(addr)) return undefined;
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

// IPv6 syntax checked by the platform's inet_pton (node:net SocketAddress) rather than node:net isIPv6: the
// latter's first call compiles a very large regular expression, about 5 ms of start-up on the path to
// spawning Envoy. Both accept the same texts (checked on 300,000 random strings of IPv6 characters).
function isIpv6Text(addr: string): boolean {
  if (!addr.includes(':')) return false;
  try {
    new SocketAddress({ address: addr, family: 'ipv6' });
    return true;
  } catch {
    return false;
  }
}

function ipv6Words(addr: string): number[] | undefined {
  const text = addr.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`);
  const parts = text.split('::');
  if (parts.length > 2) return undefined;
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const head = parse(parts[0]!);
  const rest = parts.length > 1 ? parse(parts[1]!) : [];
  const missing = 8 - head.length - rest.length;
  if (missing < 0 || (parts.length === 1 && missing !== 0)) return undefined;
  const words = [...head, ...Array<number>(parts.length > 1 ? missing : 0).fill(0), ...rest];
  return words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff) ? undefined : words;
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
