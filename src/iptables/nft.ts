// Native nftables mode (`--native-nftables`, pilot-agent 1.27+): the same capture semantics as inet-family
// tables istio-proxy-nat / -mangle / -raw, rendered as one nft transaction in pilot-agent's text form
// (`add table`, `flush table`, base and regular chains that have rules, then `add`/`insert rule`) and
// applied atomically with `nft -f -`. A re-run replaces the tables' rules (flush + add), so it is
// idempotent; `--cleanup-only` deletes the three tables.
// Unlike pilot-agent, `--dry-run` is honoured: the transaction is printed instead of applied.

import { closeSync, openSync, writeSync, constants as fsc } from 'node:fs';
import { AgentError, errorMessage } from '../lib/errors.js';
import {
  DNS_AGENT_PORT,
  TPROXY_OUTBOUND_MARK,
  isTproxy,
  ownerGroupsFilter,
  separateV4V6,
  splitList,
  type IptablesConfig,
} from './config.js';
import type { CommandIO } from './command.js';
import { configureRoutes, execaIpRunner, removeRoutes } from './routes.js';

export const NFT_TABLES = { nat: 'istio-proxy-nat', mangle: 'istio-proxy-mangle', raw: 'istio-proxy-raw' } as const;
type TableKey = keyof typeof NFT_TABLES;

const C = {
  prerouting: 'prerouting',
  output: 'output',
  inbound: 'istio-inbound',
  outputChain: 'istio-output',
  outputDns: 'istio-output-dns',
  redirect: 'istio-redirect',
  inRedirect: 'istio-in-redirect',
  divert: 'istio-divert',
  tproxy: 'istio-tproxy',
  drop: 'istio-drop',
} as const;

export interface NftRule {
  readonly chain: string;
  readonly rule: string;
  /** Insert position (0-based); undefined = append. */
  readonly index?: number;
}

export interface NftPlan {
  readonly tables: Readonly<Record<TableKey, readonly NftRule[]>>;
  readonly warnings: readonly string[];
}

interface ChainDef {
  readonly name: string;
  /** `type X hook Y priority N` for base chains. */
  readonly base?: string;
}

const CHAINS: Readonly<Record<TableKey, readonly ChainDef[]>> = {
  nat: [
    { name: C.prerouting, base: 'type nat hook prerouting priority -100' },
    { name: C.output, base: 'type nat hook output priority -100' },
    { name: C.inbound }, { name: C.redirect }, { name: C.inRedirect }, { name: C.outputChain }, { name: C.outputDns },
  ],
  mangle: [
    { name: C.prerouting, base: 'type filter hook prerouting priority -150' },
    { name: C.output, base: 'type route hook output priority -150' },
    { name: C.divert }, { name: C.tproxy }, { name: C.inbound }, { name: C.drop },
  ],
  raw: [
    { name: C.prerouting, base: 'type filter hook prerouting priority -300' },
    { name: C.output, base: 'type filter hook output priority -300' },
    { name: C.inbound }, { name: C.outputDns },
  ],
};

class NftRuleSet {
  readonly tables: Record<TableKey, NftRule[]> = { nat: [], mangle: [], raw: [] };
  constructor(private readonly ipv6: boolean) {}
  add(t: TableKey, chain: string, ...words: string[]): void {
    this.tables[t].push({ chain, rule: words.join(' ') });
  }
  add6(t: TableKey, chain: string, ...words: string[]): void {
    if (this.ipv6) this.add(t, chain, ...words);
  }
  insert(t: TableKey, chain: string, index: number, ...words: string[]): void {
    this.tables[t].push({ chain, rule: words.join(' '), index });
  }
  insert6(t: TableKey, chain: string, index: number, ...words: string[]): void {
    if (this.ipv6) this.insert(t, chain, index, ...words);
  }
}

/** The nftables rule plan, in pilot-agent's generation order. Throws on a bad CIDR list. */
export function planNftRules(cfg: IptablesConfig): NftPlan {
  const warnings: string[] = [];
  const exclude = separateV4V6(cfg.outboundIPRangesExclude);
  if (exclude.v4.isWildcard) throw new Error('invalid value for OUTBOUND_IP_RANGES_EXCLUDE');
  const include = separateV4V6(cfg.outboundIPRangesInclude);
  let dns = cfg.redirectDNS;
  if (dns && !cfg.captureAllDNS && cfg.dnsServersV4.length === 0 && cfg.dnsServersV6.length === 0) {
    warnings.push('REDIRECT_DNS is set, but CAPTURE_ALL_DNS is false, and no DNS servers provided. DNS capture disabled.');
    dns = false;
  }
  const rs = new NftRuleSet(cfg.enableIPv6);
  const tproxy = isTproxy(cfg);
  const lo4 = cfg.hostIPv4LoopbackCidr;
  const lo6 = '::1/128';
  const mark = cfg.inboundTProxyMark;
  const tunnel = cfg.inboundTunnelPort;
  const virt = splitList(cfg.rerouteVirtualInterfaces);
  const uids = splitList(cfg.proxyUID);
  const gids = splitList(cfg.proxyGID);
  const tcp = 'meta l4proto tcp';

  const excluded = splitList(cfg.excludeInterfaces);
  for (const nic of excluded) {
    rs.add('nat', C.prerouting, 'iifname', nic, 'counter return');
    rs.add('nat', C.output, 'oifname', nic, 'counter return');
  }
  if (tproxy)
    for (const nic of excluded) {
      rs.add('mangle', C.prerouting, 'iifname', nic, 'counter return');
      rs.add('mangle', C.output, 'oifname', nic, 'counter return');
    }
  for (const nic of virt) rs.insert('nat', C.prerouting, 0, 'iifname', nic, 'counter return');
  if (cfg.dropInvalid) {
    rs.add('mangle', C.prerouting, tcp, 'ct state invalid counter jump', C.drop);
    rs.add('mangle', C.drop, 'counter drop');
  }
  rs.add('nat', C.inbound, tcp, 'tcp dport', tunnel, 'counter return');
  rs.add('nat', C.redirect, tcp, 'counter redirect to', `:${cfg.proxyPort}`);
  rs.add('nat', C.inRedirect, tcp, 'counter redirect to', `:${cfg.inboundCapturePort}`);

  if (cfg.inboundPortsInclude !== '') {
    const all = cfg.inboundPortsInclude === '*';
    if (tproxy) {
      rs.add('mangle', C.divert, 'counter meta mark set', mark);
      rs.add('mangle', C.divert, 'counter accept');
      rs.add('mangle', C.tproxy, tcp, 'ip daddr !=', lo4, 'tproxy ip to', `:${cfg.inboundCapturePort}`, 'meta mark set', mark, 'counter accept');
      rs.add6('mangle', C.tproxy, tcp, 'ip6 daddr !=', lo6, 'tproxy ip6 to', `:${cfg.inboundCapturePort}`, 'meta mark set', mark, 'counter accept');
      rs.add('mangle', C.prerouting, tcp, 'counter jump', C.inbound);
      if (all) {
        for (const p of splitList(cfg.inboundPortsExclude)) rs.add('mangle', C.inbound, tcp, 'tcp dport', p, 'counter return');
        rs.add('mangle', C.inbound, tcp, 'ct state related,established counter jump', C.divert);
        rs.add('mangle', C.inbound, tcp, 'counter jump', C.tproxy);
      } else {
        for (const p of splitList(cfg.inboundPortsInclude)) {
          rs.add('mangle', C.inbound, tcp, 'ct state related,established tcp dport', p, 'counter jump', C.divert);
          rs.add('mangle', C.inbound, tcp, 'tcp dport', p, 'counter jump', C.tproxy);
        }
      }
    } else {
      rs.add('nat', C.prerouting, tcp, 'counter jump', C.inbound);
      if (all) {
        for (const p of splitList(cfg.inboundPortsExclude)) rs.add('nat', C.inbound, tcp, 'tcp dport', p, 'counter return');
        rs.add('nat', C.inbound, tcp, 'counter jump', C.inRedirect);
      } else {
        for (const p of splitList(cfg.inboundPortsInclude)) rs.add('nat', C.inbound, tcp, 'tcp dport', p, 'counter jump', C.inRedirect);
      }
    }
  }

  rs.add('nat', C.output, 'counter jump', C.outputChain);
  for (const p of splitList(cfg.outboundPortsExclude)) {
    rs.add('nat', C.outputChain, 'tcp dport', p, 'counter return');
    rs.add('nat', C.outputChain, 'udp dport', p, 'counter return');
  }
  rs.add('nat', C.outputChain, 'oifname lo ip saddr 127.0.0.6/32 counter return');
  rs.add6('nat', C.outputChain, 'oifname lo ip6 saddr ::6/128 counter return');

  const loopbackIncluded = include.v4.hasLoopback || include.v6.hasLoopback;
  for (const [ids, key] of [[uids, 'skuid'], [gids, 'skgid']] as const) {
    for (const id of ids) {
      const ports = dns && key === 'skuid' ? `{ 53, ${tunnel} }` : tunnel;
      rs.add('nat', C.outputChain, 'oifname lo', tcp, 'ip daddr !=', lo4, 'tcp dport !=', ports, key, id, 'counter jump', C.inRedirect);
      rs.add6('nat', C.outputChain, 'oifname lo', tcp, 'ip6 daddr !=', lo6, 'tcp dport !=', ports, key, id, 'counter jump', C.inRedirect);
      if (!loopbackIncluded) {
        if (dns) rs.add('nat', C.outputChain, 'oifname lo', tcp, 'tcp dport != 53', key, '!=', id, 'counter return');
        else rs.add('nat', C.outputChain, 'oifname lo', key, '!=', id, 'counter return');
      }
      rs.add('nat', C.outputChain, key, id, 'counter return');
    }
  }

  const groups = ownerGroupsFilter(cfg.ownerGroupsInclude, cfg.ownerGroupsExclude);
  if (groups.except) for (const g of groups.values) rs.add('nat', C.outputChain, 'skgid', g, 'counter return');
  else rs.add('nat', C.outputChain, ...groups.values.flatMap((g) => ['skgid', '!=', g]), 'counter return');

  if (dns) planNftDNS(rs, cfg, uids, gids);

  rs.add('nat', C.outputChain, 'ip daddr', lo4, 'counter return');
  rs.add6('nat', C.outputChain, 'ip6 daddr', lo6, 'counter return');
  for (const c of exclude.v4.cidrs) rs.add('nat', C.outputChain, 'ip daddr', c, 'counter return');
  for (const c of exclude.v6.cidrs) rs.add6('nat', C.outputChain, 'ip6 daddr', c, 'counter return');
  for (const p of splitList(cfg.outboundPortsInclude)) rs.add('nat', C.outputChain, 'tcp dport', p, 'counter jump', C.redirect);

  if (include.v4.isWildcard || include.v6.isWildcard) {
    rs.add('nat', C.outputChain, 'counter jump', C.redirect);
    for (const nic of virt) rs.insert('nat', C.prerouting, 0, 'iifname', nic, 'counter jump', C.redirect);
  } else {
    for (const c of include.v4.cidrs) {
      for (const nic of virt) rs.insert('nat', C.prerouting, 0, 'iifname', nic, 'ip daddr', c, 'counter jump', C.redirect);
      rs.add('nat', C.outputChain, 'ip daddr', c, 'counter jump', C.redirect);
    }
    for (const c of include.v6.cidrs) {
      for (const nic of virt) rs.insert6('nat', C.prerouting, 0, 'iifname', nic, 'ip6 daddr', c, 'counter jump', C.redirect);
      rs.add6('nat', C.outputChain, 'ip6 daddr', c, 'counter jump', C.redirect);
    }
  }

  if (tproxy) {
    rs.add('mangle', C.prerouting, tcp, 'mark', mark, 'counter ct mark set mark');
    rs.add('mangle', C.output, 'oifname lo', tcp, 'mark', mark, 'counter return');
    for (const [ids, key] of [[uids, 'skuid'], [gids, 'skgid']] as const)
      for (const id of ids) {
        rs.add('mangle', C.output, 'oifname lo', tcp, 'ip daddr !=', lo4, key, id, 'counter meta mark set', TPROXY_OUTBOUND_MARK);
        rs.add6('mangle', C.output, 'oifname lo', tcp, 'ip6 daddr !=', lo6, key, id, 'counter meta mark set', TPROXY_OUTBOUND_MARK);
      }
    rs.add('mangle', C.output, tcp, 'ct mark', mark, 'counter meta mark set ct mark');
    rs.insert('mangle', C.inbound, 0, tcp, 'mark', mark, 'counter return');
    rs.insert('mangle', C.inbound, 1, 'iifname lo', tcp, 'ip saddr 127.0.0.6/32 counter return');
    rs.insert6('mangle', C.inbound, 1, 'iifname lo', tcp, 'ip6 saddr ::6/128 counter return');
    rs.insert('mangle', C.inbound, 2, 'iifname lo', tcp, 'mark !=', TPROXY_OUTBOUND_MARK, 'counter return');
  }
  return { tables: rs.tables, warnings };
}

function planNftDNS(rs: NftRuleSet, cfg: IptablesConfig, uids: readonly string[], gids: readonly string[]): void {
  const all = cfg.captureAllDNS;
  const v4 = cfg.dnsServersV4;
  const v6 = cfg.dnsServersV6;
  const to = `:${DNS_AGENT_PORT}`;
  rs.add('raw', C.output, 'counter jump', C.outputDns);
  if (all || v4.length || v6.length) rs.add('nat', C.outputChain, 'counter jump', C.outputDns);
  if (all) rs.add('nat', C.outputDns, 'meta l4proto tcp tcp dport 53 counter redirect to', to);
  else {
    for (const s of v4) rs.add('nat', C.outputDns, 'ip daddr', `${s}/32`, 'tcp dport 53 counter redirect to', to);
    for (const s of v6) rs.add6('nat', C.outputDns, 'ip6 daddr', `${s}/128`, 'tcp dport 53 counter redirect to', to);
  }
  if (all) rs.add('nat', C.outputDns, 'udp dport 53 counter redirect to', to);
  else {
    for (const s of v4) rs.add('nat', C.outputDns, 'ip daddr', `${s}/32`, 'udp dport 53 counter redirect to', to);
    for (const s of v6) rs.add6('nat', C.outputDns, 'ip6 daddr', `${s}/128`, 'udp dport 53 counter redirect to', to);
  }
  for (const [ids, key] of [[uids, 'skuid'], [gids, 'skgid']] as const)
    for (const id of ids) {
      rs.add('raw', C.outputDns, 'udp dport 53 meta', key, id, 'counter ct zone set 1');
      rs.add('raw', C.outputDns, `udp sport ${DNS_AGENT_PORT} meta`, key, id, 'counter ct zone set 2');
    }
  if (all) {
    rs.add('raw', C.prerouting, 'counter jump', C.inbound);
    rs.add('raw', C.outputDns, 'udp dport 53 counter ct zone set 2');
    rs.add('raw', C.inbound, 'udp sport 53 counter ct zone set 1');
    return;
  }
  if (v4.length || v6.length) rs.add('raw', C.prerouting, 'counter jump', C.inbound);
  for (const s of v4) {
    rs.add('raw', C.outputDns, 'udp dport 53 ip daddr', `${s}/32`, 'counter ct zone set 2');
    rs.add('raw', C.inbound, 'udp sport 53 ip saddr', `${s}/32`, 'counter ct zone set 1');
  }
  for (const s of v6) {
    rs.add6('raw', C.outputDns, 'udp dport 53 ip6 daddr', `${s}/128`, 'counter ct zone set 2');
    rs.add6('raw', C.inbound, 'udp sport 53 ip6 saddr', `${s}/128`, 'counter ct zone set 1');
  }
}

/** The nft transaction text (`nft -f` input), as pilot-agent's knftables transaction prints it. */
export function renderNftTransaction(plan: NftPlan, cleanupOnly: boolean): string {
  let out = '';
  for (const key of ['nat', 'mangle', 'raw'] as const) {
    const table = NFT_TABLES[key];
    if (cleanupOnly) {
      out += `add table inet ${table}\ndelete table inet ${table}\n`;
      continue;
    }
    const rules = plan.tables[key];
    if (!rules.length) continue;
    const used = new Set(rules.map((r) => r.chain));
    const chains = CHAINS[key].filter((c) => used.has(c.name));
    if (!chains.length) continue;
    out += `add table inet ${table}\nflush table inet ${table}\n`;
    for (const c of chains) out += `add chain inet ${table} ${c.name}${c.base ? ` { ${c.base} ; }` : ''}\n`;
    const count = new Map<string, number>();
    for (const r of rules) {
      const n = count.get(r.chain) ?? 0;
      // nft cannot insert into an empty chain or past its end: those inserts become appends
      if (r.index !== undefined && n > 0 && r.index < n) out += `insert rule inet ${table} ${r.chain} index ${r.index} ${r.rule}\n`;
      else out += `add rule inet ${table} ${r.chain} ${r.rule}\n`;
      count.set(r.chain, n + 1);
    }
  }
  return out;
}

/** `--native-nftables`: plan, print (dry-run) or apply with `nft -f -`, then TPROXY routing. */
export async function runNftables(cfg: IptablesConfig, io: CommandIO): Promise<number> {
  const log = io.log;
  log.info('native nftables enabled, using nft rules for traffic redirection.');
  try {
    const plan = planNftRules(cfg);
    for (const w of plan.warnings) log.warn(w);
    const tx = renderNftTransaction(plan, cfg.cleanupOnly);
    if (cfg.dryRun) {
      io.stdout.write(tx);
      const path = io.env['DRY_RUN_FILE_PATH'];
      if (path) {
        const fd = openSync(path, fsc.O_CREAT | fsc.O_WRONLY, 0o644);
        try {
          writeSync(fd, tx, 0);
        } finally {
          closeSync(fd);
        }
      }
      log.info('skipping configuring routes due to dry run mode');
    } else {
      const { execa } = await import('execa'); // loaded only when applying (keeps dry-run start-up fast)
      const r = await execa('nft', ['-f', '-'], { input: tx, reject: false, env: { ...io.env }, extendEnv: false, timeout: 60_000 });
      if (r.failed) throw new AgentError('AGENT_ERR_IPTABLES', `nftables run failed: command failed: nft -f - (exit ${String(r.exitCode ?? '?')}): ${String(r.stderr || r.shortMessage).trim()}`);
      const ip = io.ip ?? execaIpRunner(io.env);
      if (cfg.cleanupOnly) await removeRoutes(cfg, ip, log);
      else await configureRoutes(cfg, ip, log);
    }
    log.info(`nftables rules programmed:\n${tx} \n`);
    return 0;
  } catch (e) {
    io.stderr.write(`Error: ${errorMessage(e)}\n`);
    return 1;
  }
}
