// The DNS proxy's settings, from the environment (and ProxyConfig.proxyMetadata) as pilot-agent reads
// them. Pure: the agent resolves them before anything starts.
import { goParseBool, parseGoDurationNs } from '../config/gocompat.js';

export const DEFAULT_DNS_ADDR = 'localhost:15053';
export const DEFAULT_FORWARD_TIMEOUT_MS = 5000;
export const ROOT_RESOLV_CONF = '/var/lib/istio/resolv.conf';
export const RESOLV_CONF = '/etc/resolv.conf';

export interface DnsSettings {
  /** ISTIO_META_DNS_CAPTURE on a sidecar, or ISTIO_META_ENABLE_DNS_SERVER. */
  readonly enabled: boolean;
  /** host:port to listen on (DNS_PROXY_ADDR). */
  readonly addr: string;
  readonly parallel: boolean;
  readonly timeoutMs: number;
  /** Root `:53` mode: answer (by forwarding) before the first table. */
  readonly respondBeforeSync: boolean;
  /** resolv.conf candidates, first existing one wins. */
  readonly resolvConfPaths: readonly string[];
  readonly proxyNamespace: string;
  readonly proxyDomain: string;
  /** What was ignored, for the start-up log (pilot-agent warns and uses the default). */
  readonly warnings: readonly string[];
  /** An error to log (not fatal), e.g. ':53 and not running as root'. */
  readonly errors: readonly string[];
}

export interface DnsSettingsInput {
  /** The process environment with ProxyConfig.proxyMetadata applied over it. */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly proxyType: string;
  readonly podNamespace: string;
  readonly dnsDomain: string;
  /** process.getuid() (0: root). */
  readonly uid: number;
}

export function resolveDnsSettings(i: DnsSettingsInput): DnsSettings {
  const warnings: string[] = [];
  const errors: string[] = [];
  const bool = (name: string): boolean => {
    const raw = i.env[name];
    if (raw === undefined || raw === '') return false;
    const v = goParseBool(raw);
    if (v === undefined) {
      warnings.push(`invalid value for ${name}=${JSON.stringify(raw)} (want a boolean); using false`);
      return false;
    }
    return v;
  };
  const capture = bool('ISTIO_META_DNS_CAPTURE');
  const atGateway = bool('ISTIO_META_ENABLE_DNS_SERVER');
  const parallel = bool('DNS_FORWARD_PARALLEL');
  let timeoutMs = DEFAULT_FORWARD_TIMEOUT_MS;
  const rawTimeout = i.env.DNS_FORWARD_TIMEOUT;
  if (rawTimeout !== undefined && rawTimeout !== '') {
    try {
      const ns = parseGoDurationNs(rawTimeout);
      if (ns <= 0n) throw new Error('not positive');
      timeoutMs = Math.max(1, Math.min(Number(ns / 1_000_000n), 60_000));
    } catch {
      warnings.push(`invalid value for DNS_FORWARD_TIMEOUT=${JSON.stringify(rawTimeout)} (want a positive Go duration such as 5s); using 5s`);
    }
  }
  let addr = i.env.DNS_PROXY_ADDR || DEFAULT_DNS_ADDR;
  let respondBeforeSync = false;
  const resolvConfPaths = [RESOLV_CONF];
  if (addr.endsWith(':53')) {
    if (i.uid === 0) {
      respondBeforeSync = true;
      resolvConfPaths.unshift(ROOT_RESOLV_CONF);
    } else {
      errors.push('DNS address :53 and not running as root, use default');
      addr = DEFAULT_DNS_ADDR;
    }
  }
  return {
    enabled: (capture && i.proxyType === 'sidecar') || atGateway,
    addr,
    parallel,
    timeoutMs,
    respondBeforeSync,
    resolvConfPaths,
    proxyNamespace: i.podNamespace,
    proxyDomain: i.dnsDomain,
    warnings,
    errors,
  };
}

/** Splits host:port (an IPv6 host in brackets); throws naming DNS_PROXY_ADDR when it is not one. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`dns address must be a valid host:port: DNS_PROXY_ADDR=${JSON.stringify(addr)}`);
  return { host: m[1] ?? m[2] ?? '', port };
}
