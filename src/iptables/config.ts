// The resolved istio-iptables configuration (what pilot-agent calls config.Config), its defaults, and the
// list/CIDR helpers the planner shares with validation.

import { is4, isLoopback, parsePrefix, prefixString } from './netip.js';

export type InterceptionMode = 'REDIRECT' | 'TPROXY';

export interface IptablesConfig {
  /** Port values are kept as the strings given, as pilot-agent prints them verbatim into the rules. */
  readonly proxyPort: string;
  readonly inboundCapturePort: string;
  readonly inboundTunnelPort: string;
  /** Comma lists, as given. */
  readonly proxyUID: string;
  readonly proxyGID: string;
  /** '' and 'REDIRECT' both mean REDIRECT. */
  readonly inboundInterceptionMode: string;
  readonly inboundTProxyMark: string;
  readonly inboundTProxyRouteTable: string;
  readonly inboundPortsInclude: string;
  readonly inboundPortsExclude: string;
  readonly ownerGroupsInclude: string;
  readonly ownerGroupsExclude: string;
  readonly outboundPortsInclude: string;
  readonly outboundPortsExclude: string;
  readonly outboundIPRangesInclude: string;
  readonly outboundIPRangesExclude: string;
  readonly rerouteVirtualInterfaces: string;
  readonly excludeInterfaces: string;
  readonly iptablesProbePort: number;
  /** Milliseconds. */
  readonly probeTimeoutMs: number;
  readonly dryRun: boolean;
  readonly skipRuleApply: boolean;
  readonly runValidation: boolean;
  readonly redirectDNS: boolean;
  readonly dropInvalid: boolean;
  readonly captureAllDNS: boolean;
  readonly enableIPv6: boolean;
  /** DNS servers, printed into rules exactly as stored. */
  readonly dnsServersV4: readonly string[];
  readonly dnsServersV6: readonly string[];
  readonly networkNamespace: string;
  /** `--cni-mode`: pod-scoped xtables lock. */
  readonly cniMode: boolean;
  readonly dualStack: boolean;
  /** The local address the IPv6 decision was based on ('' when given explicitly). */
  readonly hostIP: string;
  readonly hostIPv4LoopbackCidr: string;
  readonly reconcile: boolean;
  readonly cleanupOnly: boolean;
  readonly forceApply: boolean;
  readonly nativeNftables: boolean;
  readonly forceIptablesBinary: '' | 'legacy' | 'nft';
}

/** pilot-agent's config.DefaultConfig plus the env-only defaults. */
export const DEFAULT_CONFIG: IptablesConfig = {
  proxyPort: '15001',
  inboundCapturePort: '15006',
  inboundTunnelPort: '15008',
  proxyUID: '',
  proxyGID: '',
  inboundInterceptionMode: '',
  inboundTProxyMark: '1337',
  inboundTProxyRouteTable: '133',
  inboundPortsInclude: '',
  inboundPortsExclude: '',
  ownerGroupsInclude: '*',
  ownerGroupsExclude: '',
  outboundPortsInclude: '',
  outboundPortsExclude: '',
  outboundIPRangesInclude: '',
  outboundIPRangesExclude: '',
  rerouteVirtualInterfaces: '',
  excludeInterfaces: '',
  iptablesProbePort: 15002,
  probeTimeoutMs: 5000,
  dryRun: false,
  skipRuleApply: false,
  runValidation: false,
  redirectDNS: false,
  dropInvalid: false,
  captureAllDNS: false,
  enableIPv6: false,
  dnsServersV4: [],
  dnsServersV6: [],
  networkNamespace: '',
  cniMode: false,
  dualStack: false,
  hostIP: '',
  hostIPv4LoopbackCidr: '127.0.0.1/32',
  reconcile: false,
  cleanupOnly: false,
  forceApply: false,
  nativeNftables: false,
  forceIptablesBinary: '',
};

export const DEFAULT_PROXY_UID = '1337';
export const TPROXY_OUTBOUND_MARK = '1338';
export const DNS_AGENT_PORT = '15053';
export const MAX_OWNER_GROUPS_INCLUDE = 64;
export const VALIDATION_ERROR_CODE = 126;

export function isTproxy(cfg: Pick<IptablesConfig, 'inboundInterceptionMode'>): boolean {
  return cfg.inboundInterceptionMode === 'TPROXY';
}

/** Splits a comma list, dropping empty items (pilot-agent's config.Split). */
export function splitList(s: string): string[] {
  return s === '' ? [] : s.split(',').filter((x) => x !== '');
}

export interface NetworkRange {
  readonly isWildcard: boolean;
  /** Canonical `netip.Prefix` strings. */
  readonly cidrs: readonly string[];
  readonly hasLoopback: boolean;
}

/** Splits a CIDR list into IPv4 and IPv6 ranges; `*` is a wildcard for both. Throws on a bad CIDR. */
export function separateV4V6(list: string): { v4: NetworkRange; v6: NetworkRange } {
  if (list === '*') {
    const w = { isWildcard: true, cidrs: [], hasLoopback: false };
    return { v4: w, v6: w };
  }
  const v4: string[] = [];
  const v6: string[] = [];
  let lo4 = false;
  let lo6 = false;
  for (const item of splitList(list)) {
    const p = parsePrefix(item);
    if (is4(p.addr)) {
      v4.push(prefixString(p));
      lo4 ||= isLoopback(p.addr);
    } else {
      v6.push(prefixString(p));
      lo6 ||= isLoopback(p.addr);
    }
  }
  return {
    v4: { isWildcard: false, cidrs: v4, hasLoopback: lo4 },
    v6: { isWildcard: false, cidrs: v6, hasLoopback: lo6 },
  };
}

export interface InterceptFilter {
  readonly values: readonly string[];
  /** true: capture everything except `values`; false: capture only `values`. */
  readonly except: boolean;
}

export function ownerGroupsFilter(include: string, exclude: string): InterceptFilter {
  if (include === '*') return { values: splitList(exclude), except: true };
  return { values: splitList(include), except: false };
}
