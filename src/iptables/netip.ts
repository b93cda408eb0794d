// IP address and prefix parsing/printing with the exact rules of Go's net/netip, because pilot-agent prints
// CIDRs and DNS servers through it: IPv4 without leading zeros, IPv6 in RFC 5952 form, IPv4-mapped IPv6
// kept as `::ffff:a.b.c.d`, zones kept on addresses but refused in prefixes, host bits never masked.

export interface IpAddr {
  /** 4 bytes for IPv4, 16 for IPv6 (including IPv4-mapped). */
  readonly bytes: Uint8Array;
  readonly zone: string;
}

export interface IpPrefix {
  readonly addr: IpAddr;
  readonly bits: number;
}

export class IpParseError extends Error {
  constructor(input: string, reason: string) {
    super(`ParseAddr(${JSON.stringify(input)}): ${reason}`);
    this.name = 'IpParseError';
  }
}

function parseV4Fields(input: string, s: string, out: Uint8Array, at: number): void {
  let val = 0;
  let digits = 0;
  let pos = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && val === 0) throw new IpParseError(input, 'IPv4 field has octet with leading zero');
      val = val * 10 + (c - 48);
      digits++;
      if (val > 255) throw new IpParseError(input, 'IPv4 field has value >255');
    } else if (s[i] === '.') {
      if (i === 0 || i === s.length - 1 || s[i - 1] === '.') throw new IpParseError(input, 'IPv4 field must have at least one digit');
      if (pos === 3) throw new IpParseError(input, 'IPv4 address too long');
      out[at + pos++] = val;
      val = 0;
      digits = 0;
    } else {
      throw new IpParseError(input, 'unexpected character');
    }
  }
  if (pos < 3) throw new IpParseError(input, 'IPv4 address too short');
  out[at + 3] = val;
}

function parseV6(input: string): IpAddr {
  let s = input;
  let zone = '';
  const pct = s.indexOf('%');
  if (pct >= 0) {
    zone = s.slice(pct + 1);
    s = s.slice(0, pct);
    if (zone === '') throw new IpParseError(input, 'zone must be a non-empty string');
  }
  const ip = new Uint8Array(16);
  let ellipsis = -1;
  if (s.startsWith('::')) {
    ellipsis = 0;
    s = s.slice(2);
    if (s === '') return { bytes: ip, zone };
  }
  let i = 0;
  while (i < 16) {
    let off = 0;
    let acc = 0;
    for (; off < s.length; off++) {
      const h = parseInt(s[off]!, 16);
      if (Number.isNaN(h) || !/[0-9a-fA-F]/.test(s[off]!)) break;
      acc = acc * 16 + h;
      if (off > 3) throw new IpParseError(input, 'each group must have 4 or less digits');
    }
    if (off === 0) throw new IpParseError(input, 'each colon-separated field must have at least one digit');
    if (off < s.length && s[off] === '.') {
      if (ellipsis < 0 && i !== 12) throw new IpParseError(input, 'embedded IPv4 address must replace the final 2 fields of the address');
      if (i + 4 > 16) throw new IpParseError(input, 'too many hex fields to fit an embedded IPv4 at the end of the address');
      parseV4Fields(input, s, ip, i);
      s = '';
      i += 4;
      break;
    }
    ip[i] = acc >> 8;
    ip[i + 1] = acc & 0xff;
    i += 2;
    s = s.slice(off);
    if (s === '') break;
    if (s[0] !== ':') throw new IpParseError(input, 'unexpected character, want colon');
    if (s.length === 1) throw new IpParseError(input, 'colon must be followed by more characters');
    s = s.slice(1);
    if (s[0] === ':') {
      if (ellipsis >= 0) throw new IpParseError(input, 'multiple :: in address');
      ellipsis = i;
      s = s.slice(1);
      if (s === '') break;
    }
  }
  if (s !== '') throw new IpParseError(input, 'trailing garbage after address');
  if (i < 16) {
    if (ellipsis < 0) throw new IpParseError(input, 'address string too short');
    const n = 16 - i;
    for (let j = i - 1; j >= ellipsis; j--) ip[j + n] = ip[j]!;
    ip.fill(0, ellipsis, ellipsis + n);
  } else if (ellipsis >= 0) {
    throw new IpParseError(input, 'the :: must expand to at least one field of zeros');
  }
  return { bytes: ip, zone };
}

/** Go's netip.ParseAddr. Throws IpParseError. */
export function parseAddr(s: string): IpAddr {
  for (const c of s) {
    if (c === '.') {
      const b = new Uint8Array(4);
      parseV4Fields(s, s, b, 0);
      return { bytes: b, zone: '' };
    }
    if (c === ':') return parseV6(s);
    if (c === '%') throw new IpParseError(s, 'missing IPv6 address');
  }
  throw new IpParseError(s, 'unable to parse IP');
}

/** Go's netip.ParsePrefix. Throws an Error naming the input. */
export function parsePrefix(s: string): IpPrefix {
  const fail = (msg: string): never => {
    throw new Error(`netip.ParsePrefix(${JSON.stringify(s)}): ${msg}`);
  };
  const slash = s.lastIndexOf('/');
  if (slash < 0) fail("no '/'");
  let addr: IpAddr;
  try {
    addr = parseAddr(s.slice(0, slash));
  } catch (e) {
    return fail((e as Error).message);
  }
  if (is6(addr) && addr.zone !== '') fail('IPv6 zones cannot be present in a prefix');
  const bitsStr = s.slice(slash + 1);
  if (bitsStr.length > 1 && (bitsStr[0]! < '1' || bitsStr[0]! > '9')) fail(`bad bits after slash: ${JSON.stringify(bitsStr)}`);
  if (!/^\d+$/.test(bitsStr)) fail(`bad bits after slash: ${JSON.stringify(bitsStr)}`);
  const bits = Number(bitsStr);
  if (bits > (is6(addr) ? 128 : 32)) fail('prefix length out of range');
  return { addr, bits };
}

export const is4 = (a: IpAddr): boolean => a.bytes.length === 4;
export const is6 = (a: IpAddr): boolean => a.bytes.length === 16;

export function is4In6(a: IpAddr): boolean {
  if (!is6(a)) return false;
  for (let i = 0; i < 10; i++) if (a.bytes[i] !== 0) return false;
  return a.bytes[10] === 0xff && a.bytes[11] === 0xff;
}

/** Go's Addr.Unmap: IPv4-mapped IPv6 becomes IPv4. */
export function unmap(a: IpAddr): IpAddr {
  return is4In6(a) ? { bytes: a.bytes.slice(12), zone: '' } : a;
}

export function isLoopback(a: IpAddr): boolean {
  const u = unmap(a);
  if (is4(u)) return u.bytes[0] === 127;
  return u.bytes.every((b, i) => b === (i === 15 ? 1 : 0));
}

export function isLinkLocalUnicast(a: IpAddr): boolean {
  const u = unmap(a);
  if (is4(u)) return u.bytes[0] === 169 && u.bytes[1] === 254;
  return u.bytes[0] === 0xfe && (u.bytes[1]! & 0xc0) === 0x80;
}

export function isLinkLocalMulticast(a: IpAddr): boolean {
  const u = unmap(a);
  if (is4(u)) return u.bytes[0] === 224 && u.bytes[1] === 0 && u.bytes[2] === 0;
  return u.bytes[0] === 0xff && (u.bytes[1]! & 0x0f) === 0x02;
}

function v4String(b: Uint8Array, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** Go's Addr.String. */
export function addrString(a: IpAddr): string {
  if (is4(a)) return v4String(a.bytes);
  const zone = a.zone ? `%${a.zone}` : '';
  if (is4In6(a)) return `::ffff:${v4String(a.bytes, 12)}${zone}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((a.bytes[2 * i]! << 8) | a.bytes[2 * i + 1]!);
  // longest run of >= 2 zero words, first one on ties
  let zs = -1;
  let ze = -1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i >= 2 && j - i > ze - zs) {
      zs = i;
      ze = j;
    }
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === zs) {
      out += '::';
      i = ze;
      if (i >= 8) break;
    } else if (i > 0) {
      out += ':';
    }
    out += words[i]!.toString(16);
  }
  return out + zone;
}

/** Go's Prefix.String: canonical address, host bits kept. */
export function prefixString(p: IpPrefix): string {
  return `${addrString(p.addr)}/${p.bits}`;
}
