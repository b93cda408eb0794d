// resolv.conf, read as the Go agent's DNS library reads it (nameserver, search/domain: the last one wins),
// plus the `options timeout:N attempts:N rotate` that pilot-agent ignores and we honour. Pure.
import { isIP } from 'node:net';

export interface ResolvConf {
  /** Usable nameservers (IP literals, an IPv6 zone allowed), in file order. */
  readonly servers: readonly string[];
  /** `nameserver` values that are not IP addresses (logged at start-up, never used). */
  readonly unusable: readonly string[];
  readonly search: readonly string[];
  /** `options timeout:N` in seconds (glibc default 5), when given. */
  readonly timeoutS?: number;
  /** `options attempts:N` (glibc default 2), when given. */
  readonly attempts?: number;
  /** `options rotate` */
  readonly rotate: boolean;
}

/** A resolv.conf larger than this is not one (read at most this much). */
export const MAX_RESOLV_CONF_BYTES = 64 * 1024;

export function parseResolvConf(text: string): ResolvConf {
  const servers: string[] = [];
  const unusable: string[] = [];
  let search: string[] = [];
  let timeoutS: number | undefined;
  let attempts: number | undefined;
  let rotate = false;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    switch (f[0]) {
      case 'nameserver': {
        const s = f[1];
        if (s === undefined) break;
        const bare = s.includes('%') ? s.slice(0, s.indexOf('%')) : s;
        if (isIP(bare) !== 0 && (bare === s || isIP(bare) === 6)) servers.push(s);
        else unusable.push(s);
        break;
      }
      case 'domain':
        if (f[1] !== undefined) search = [f[1]];
        break;
      case 'search':
        search = f.slice(1).filter((s) => s !== '');
        break;
      case 'options':
        for (const o of f.slice(1)) {
          const [k, v] = o.split(':');
          const n = v === undefined ? NaN : Number(v);
          // glibc's caps: timeout 30 s, attempts 5
          if (k === 'timeout' && Number.isInteger(n) && n >= 1) timeoutS = Math.min(n, 30);
          else if (k === 'attempts' && Number.isInteger(n) && n >= 1) attempts = Math.min(n, 5);
          else if (k === 'rotate') rotate = true;
        }
        break;
      default:
        break;
    }
  }
  return { servers, unusable, search, rotate, ...(timeoutS !== undefined ? { timeoutS } : {}), ...(attempts !== undefined ? { attempts } : {}) };
}
