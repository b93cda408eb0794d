// Pure planner: resolved configuration -> ordered rule lists for IPv4 and IPv6, in exactly the order
// pilot-agent 1.30 generates them (the order is observable: it is the iptables-restore payload, and `-I`
// positions and first-match semantics depend on it).

import {
  DNS_AGENT_PORT,
  TPROXY_OUTBOUND_MARK,
  isTproxy,
  ownerGroupsFilter,
  separateV4V6,
  splitList,
  type IptablesConfig,
  type NetworkRange,
} from './config.js';
import { FAMILY_SPECIFIC as X, RuleSet, type Family } from './rules.js';

export const CHAIN = {
  OUTPUT: 'ISTIO_OUTPUT',
  OUTPUT_DNS: 'ISTIO_OUTPUT_DNS',
  INBOUND: 'ISTIO_INBOUND',
  DIVERT: 'ISTIO_DIVERT',
  TPROXY: 'ISTIO_TPROXY',
  REDIRECT: 'ISTIO_REDIRECT',
  IN_REDIRECT: 'ISTIO_IN_REDIRECT',
  DROP: 'ISTIO_DROP',
} as const;

const V6_LOOPBACK = '::1/128';
const V4_PASSTHROUGH_SRC = '127.0.0.6/32';
const V6_PASSTHROUGH_SRC = '::6/128';

export interface Plan {
  readonly rules: RuleSet;
  /** DNS capture after the "no servers known" check. */
  readonly redirectDNS: boolean;
  readonly warnings: readonly string[];
}

/** Builds the rule plan. Throws on an invalid CIDR list (validation normally catches these first). */
export function planRules(cfg: IptablesConfig): Plan {
  const warnings: string[] = [];
  const exclude = separateV4V6(cfg.outboundIPRangesExclude);
  if (exclude.v4.isWildcard) throw new Error('invalid value for OUTBOUND_IP_RANGES_EXCLUDE');
  const include = separateV4V6(cfg.outboundIPRangesInclude);

  let redirectDNS = cfg.redirectDNS;
  if (redirectDNS && !cfg.captureAllDNS && cfg.dnsServersV4.length === 0 && cfg.dnsServersV6.length === 0) {
    warnings.push('REDIRECT_DNS is set, but CAPTURE_ALL_DNS is false, and no DNS servers provided. DNS capture disabled.');
    redirectDNS = false;
  }

  const rs = new RuleSet(cfg.enableIPv6);
  const tproxy = isTproxy(cfg);
  const lo4 = cfg.hostIPv4LoopbackCidr;
  const virt = splitList(cfg.rerouteVirtualInterfaces);
  const uids = splitList(cfg.proxyUID);
  const gids = splitList(cfg.proxyGID);
  const tunnel = cfg.inboundTunnelPort;
  const mark = cfg.inboundTProxyMark;

  // Excluded interfaces bypass everything.
  const excluded = splitList(cfg.excludeInterfaces);
  for (const nic of excluded) rs.append('PREROUTING', 'nat', '-i', nic, '-j', 'RETURN').append('OUTPUT', 'nat', '-o', nic, '-j', 'RETURN');
  if (tproxy)
    for (const nic of excluded) rs.append('PREROUTING', 'mangle', '-i', nic, '-j', 'RETURN').append('OUTPUT', 'mangle', '-o', nic, '-j', 'RETURN');

  // Inbound traffic from kube-virt interfaces is not inbound capture.
  for (const nic of virt) rs.insert('PREROUTING', 'nat', 1, '-i', nic, '-j', 'RETURN');

  if (cfg.dropInvalid) {
    rs.append('PREROUTING', 'mangle', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', CHAIN.DROP);
    rs.append(CHAIN.DROP, 'mangle', '-j', 'DROP');
  }

  rs.append(CHAIN.INBOUND, 'nat', '-p', 'tcp', '--dport', tunnel, '-j', 'RETURN');
  rs.append(CHAIN.REDIRECT, 'nat', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', cfg.proxyPort);
  rs.append(CHAIN.IN_REDIRECT, 'nat', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', cfg.inboundCapturePort);

  planInbound(rs, cfg, tproxy);

  rs.append('OUTPUT', 'nat', '-j', CHAIN.OUTPUT);
  for (const port of splitList(cfg.outboundPortsExclude)) {
    rs.append(CHAIN.OUTPUT, 'nat', '-p', 'tcp', '--dport', port, '-j', 'RETURN');
    rs.append(CHAIN.OUTPUT, 'nat', '-p', 'udp', '--dport', port, '-j', 'RETURN');
  }
  // 127.0.0.6 / ::6 is the source of the inbound passthrough cluster.
  rs.appendVersioned(V4_PASSTHROUGH_SRC, V6_PASSTHROUGH_SRC, CHAIN.OUTPUT, 'nat', '-o', 'lo', '-s', X, '-j', 'RETURN');

  const loopbackIncluded = include.v4.hasLoopback || include.v6.hasLoopback;
  for (const [ids, opt] of [[uids, '--uid-owner'], [gids, '--gid-owner']] as const) {
    for (const id of ids) {
      // app -> own service VIP -> Envoy outbound -> Envoy inbound -> app
      if (redirectDNS && opt === '--uid-owner')
        rs.appendVersioned(lo4, V6_LOOPBACK, CHAIN.OUTPUT, 'nat', '-o', 'lo', '!', '-d', X, '-p', 'tcp', '-m', 'multiport', '!', '--dports', `53,${tunnel}`, '-m', 'owner', opt, id, '-j', CHAIN.IN_REDIRECT);
      else
        rs.appendVersioned(lo4, V6_LOOPBACK, CHAIN.OUTPUT, 'nat', '-o', 'lo', '!', '-d', X, '-p', 'tcp', '!', '--dport', tunnel, '-m', 'owner', opt, id, '-j', CHAIN.IN_REDIRECT);
      // app -> itself over lo is left alone, unless loopback ranges are explicitly captured
      if (!loopbackIncluded) {
        if (redirectDNS) rs.append(CHAIN.OUTPUT, 'nat', '-o', 'lo', '-p', 'tcp', '!', '--dport', '53', '-m', 'owner', '!', opt, id, '-j', 'RETURN');
        else rs.append(CHAIN.OUTPUT, 'nat', '-o', 'lo', '-m', 'owner', '!', opt, id, '-j', 'RETURN');
      }
      // the proxy's own traffic is never captured
      rs.append(CHAIN.OUTPUT, 'nat', '-m', 'owner', opt, id, '-j', 'RETURN');
    }
  }

  const groups = ownerGroupsFilter(cfg.ownerGroupsInclude, cfg.ownerGroupsExclude);
  if (groups.except) {
    for (const g of groups.values) rs.append(CHAIN.OUTPUT, 'nat', '-m', 'owner', '--gid-owner', g, '-j', 'RETURN');
  } else {
    rs.append(CHAIN.OUTPUT, 'nat', ...groups.values.flatMap((g) => ['-m', 'owner', '!', '--gid-owner', g]), '-j', 'RETURN');
  }

  if (redirectDNS) planDNS(rs, cfg, uids, gids);

  rs.appendVersioned(lo4, V6_LOOPBACK, CHAIN.OUTPUT, 'nat', '-d', X, '-j', 'RETURN');
  for (const cidr of exclude.v4.cidrs) rs.appendTo('v4', CHAIN.OUTPUT, 'nat', '-d', cidr, '-j', 'RETURN');
  for (const cidr of exclude.v6.cidrs) rs.appendTo('v6', CHAIN.OUTPUT, 'nat', '-d', cidr, '-j', 'RETURN');

  for (const port of splitList(cfg.outboundPortsInclude)) rs.append(CHAIN.OUTPUT, 'nat', '-p', 'tcp', '--dport', port, '-j', CHAIN.REDIRECT);

  planOutboundInclude(rs, 'v4', include.v4, virt);
  planOutboundInclude(rs, 'v6', include.v6, virt);

  if (tproxy) {
    // keep the mark set by Envoy's original_src filter on the connection
    rs.append('PREROUTING', 'mangle', '-p', 'tcp', '-m', 'mark', '--mark', mark, '-j', 'CONNMARK', '--save-mark');
    rs.append('OUTPUT', 'mangle', '-p', 'tcp', '-o', 'lo', '-m', 'mark', '--mark', mark, '-j', 'RETURN');
    for (const [ids, opt] of [[uids, '--uid-owner'], [gids, '--gid-owner']] as const)
      for (const id of ids)
        rs.appendVersioned(lo4, V6_LOOPBACK, 'OUTPUT', 'mangle', '!', '-d', X, '-p', 'tcp', '-o', 'lo', '-m', 'owner', opt, id, '-j', 'MARK', '--set-mark', TPROXY_OUTBOUND_MARK);
    rs.append('OUTPUT', 'mangle', '-p', 'tcp', '-m', 'connmark', '--mark', mark, '-j', 'CONNMARK', '--restore-mark');
    rs.insert(CHAIN.INBOUND, 'mangle', 1, '-p', 'tcp', '-m', 'mark', '--mark', mark, '-j', 'RETURN');
    rs.insertTo('v4', CHAIN.INBOUND, 'mangle', 2, '-p', 'tcp', '-s', V4_PASSTHROUGH_SRC, '-i', 'lo', '-j', 'RETURN');
    rs.insertTo('v6', CHAIN.INBOUND, 'mangle', 2, '-p', 'tcp', '-s', V6_PASSTHROUGH_SRC, '-i', 'lo', '-j', 'RETURN');
    rs.insert(CHAIN.INBOUND, 'mangle', 3, '-p', 'tcp', '-i', 'lo', '-m', 'mark', '!', '--mark', TPROXY_OUTBOUND_MARK, '-j', 'RETURN');
  }
  return { rules: rs, redirectDNS, warnings };
}

function planInbound(rs: RuleSet, cfg: IptablesConfig, tproxy: boolean): void {
  if (cfg.inboundPortsInclude === '') return;
  const table = tproxy ? 'mangle' : 'nat';
  if (tproxy) {
    rs.append(CHAIN.DIVERT, 'mangle', '-j', 'MARK', '--set-mark', cfg.inboundTProxyMark);
    rs.append(CHAIN.DIVERT, 'mangle', '-j', 'ACCEPT');
    rs.appendVersioned(cfg.hostIPv4LoopbackCidr, V6_LOOPBACK, CHAIN.TPROXY, 'mangle', '!', '-d', X, '-p', 'tcp', '-j', 'TPROXY', '--tproxy-mark', `${cfg.inboundTProxyMark}/0xffffffff`, '--on-port', cfg.inboundCapturePort);
  }
  rs.append('PREROUTING', table, '-p', 'tcp', '-j', CHAIN.INBOUND);
  if (cfg.inboundPortsInclude === '*') {
    for (const port of splitList(cfg.inboundPortsExclude)) rs.append(CHAIN.INBOUND, table, '-p', 'tcp', '--dport', port, '-j', 'RETURN');
    if (tproxy) {
      rs.append(CHAIN.INBOUND, 'mangle', '-p', 'tcp', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', CHAIN.DIVERT);
      rs.append(CHAIN.INBOUND, 'mangle', '-p', 'tcp', '-j', CHAIN.TPROXY);
    } else {
      rs.append(CHAIN.INBOUND, 'nat', '-p', 'tcp', '-j', CHAIN.IN_REDIRECT);
    }
    return;
  }
  for (const port of splitList(cfg.inboundPortsInclude)) {
    if (tproxy) {
      rs.append(CHAIN.INBOUND, 'mangle', '-p', 'tcp', '--dport', port, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', CHAIN.DIVERT);
      rs.append(CHAIN.INBOUND, 'mangle', '-p', 'tcp', '--dport', port, '-j', CHAIN.TPROXY);
    } else {
      rs.append(CHAIN.INBOUND, 'nat', '-p', 'tcp', '--dport', port, '-j', CHAIN.IN_REDIRECT);
    }
  }
}

function planOutboundInclude(rs: RuleSet, f: Family, range: NetworkRange, virt: readonly string[]): void {
  if (range.isWildcard) {
    rs.appendTo(f, CHAIN.OUTPUT, 'nat', '-j', CHAIN.REDIRECT);
    for (const nic of virt) rs.insertTo(f, 'PREROUTING', 'nat', 1, '-i', nic, '-j', CHAIN.REDIRECT);
    return;
  }
  for (const cidr of range.cidrs) {
    for (const nic of virt) rs.insertTo(f, 'PREROUTING', 'nat', 1, '-i', nic, '-d', cidr, '-j', CHAIN.REDIRECT);
    rs.appendTo(f, CHAIN.OUTPUT, 'nat', '-d', cidr, '-j', CHAIN.REDIRECT);
  }
}

function planDNS(rs: RuleSet, cfg: IptablesConfig, uids: readonly string[], gids: readonly string[]): void {
  const all = cfg.captureAllDNS;
  const v4 = cfg.dnsServersV4;
  const v6 = cfg.dnsServersV6;
  rs.append('OUTPUT', 'raw', '-j', CHAIN.OUTPUT_DNS);
  if (all || v4.length) rs.appendTo('v4', CHAIN.OUTPUT, 'nat', '-j', CHAIN.OUTPUT_DNS);
  if (all || v6.length) rs.appendTo('v6', CHAIN.OUTPUT, 'nat', '-j', CHAIN.OUTPUT_DNS);

  for (const [proto, toOpt] of [['tcp', '--to-ports'], ['udp', '--to-port']] as const) {
    if (all) {
      rs.append(CHAIN.OUTPUT_DNS, 'nat', '-p', proto, '--dport', '53', '-j', 'REDIRECT', toOpt, DNS_AGENT_PORT);
    } else {
      for (const s of v4) rs.appendTo('v4', CHAIN.OUTPUT_DNS, 'nat', '-p', proto, '--dport', '53', '-d', `${s}/32`, '-j', 'REDIRECT', toOpt, DNS_AGENT_PORT);
      for (const s of v6) rs.appendTo('v6', CHAIN.OUTPUT_DNS, 'nat', '-p', proto, '--dport', '53', '-d', `${s}/128`, '-j', 'REDIRECT', toOpt, DNS_AGENT_PORT);
    }
  }

  // Separate conntrack zones: zone 1 = agent <-> upstream resolvers, zone 2 = apps <-> agent.
  for (const [ids, opt] of [[uids, '--uid-owner'], [gids, '--gid-owner']] as const) {
    for (const id of ids) {
      rs.append(CHAIN.OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-m', 'owner', opt, id, '-j', 'CT', '--zone', '1');
      rs.append(CHAIN.OUTPUT_DNS, 'raw', '-p', 'udp', '--sport', DNS_AGENT_PORT, '-m', 'owner', opt, id, '-j', 'CT', '--zone', '2');
    }
  }
  if (all) {
    rs.append('PREROUTING', 'raw', '-j', CHAIN.INBOUND);
    rs.append(CHAIN.OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-j', 'CT', '--zone', '2');
    rs.append(CHAIN.INBOUND, 'raw', '-p', 'udp', '--sport', '53', '-j', 'CT', '--zone', '1');
    return;
  }
  for (const [f, servers, bits] of [['v4', v4, 32], ['v6', v6, 128]] as const) {
    if (servers.length) rs.appendTo(f, 'PREROUTING', 'raw', '-j', CHAIN.INBOUND);
    for (const s of servers) {
      rs.appendTo(f, CHAIN.OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-d', `${s}/${bits}`, '-j', 'CT', '--zone', '2');
      rs.appendTo(f, CHAIN.INBOUND, 'raw', '-p', 'udp', '--sport', '53', '-s', `${s}/${bits}`, '-j', 'CT', '--zone', '1');
    }
  }
}
