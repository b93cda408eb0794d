// Policy routing for TPROXY (`ip rule add fwmark MARK lookup TABLE`, `ip route add local default dev lo
// table TABLE`, per family) and the `::6` inbound-passthrough source address on lo for IPv6.
// Unlike pilot-agent (whose netlink rule add fails on a re-run), adding is idempotent: existing entries are
// left as they are. Removal is used by `--cleanup-only`.

import { AgentError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { isTproxy, type IptablesConfig } from './config.js';

export type IpRunner = (args: readonly string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

export function execaIpRunner(env: Readonly<Record<string, string | undefined>>): IpRunner {
  return async (args) => {
    const { execa } = await import('execa');
    const r = await execa('ip', args, { reject: false, env: { ...env }, extendEnv: false, timeout: 30_000 });
    return { code: typeof r.exitCode === 'number' ? r.exitCode : 1, stdout: String(r.stdout), stderr: String(r.stderr || r.shortMessage || '') };
  };
}

const exists = (stderr: string) => /file exists|already assigned/i.test(stderr);

async function must(ip: IpRunner, args: readonly string[], okIfExists: boolean): Promise<void> {
  const r = await ip(args);
  if (r.code !== 0 && !(okIfExists && exists(r.stderr)))
    throw new AgentError('AGENT_ERR_IPTABLES', `command failed: ip ${args.join(' ')} (exit ${r.code}): ${r.stderr.trim()}`);
}

async function ruleCount(ip: IpRunner, fam: '-4' | '-6', mark: string, table: string): Promise<number> {
  const r = await ip([fam, '-j', 'rule', 'list', 'fwmark', mark, 'table', table]);
  if (r.code !== 0) return 0;
  try {
    const rows = JSON.parse(r.stdout || '[]') as unknown[];
    return Array.isArray(rows) ? rows.length : 0;
  } catch {
    return 0;
  }
}

function families(cfg: IptablesConfig): Array<{ fam: '-4' | '-6'; dst: string }> {
  const out: Array<{ fam: '-4' | '-6'; dst: string }> = [{ fam: '-4', dst: '0.0.0.0/0' }];
  if (cfg.enableIPv6) out.push({ fam: '-6', dst: '::/0' });
  return out;
}

const wantsTproxyRoutes = (cfg: IptablesConfig) => cfg.inboundPortsInclude !== '' && isTproxy(cfg);

/** pilot-agent's ConfigureRoutes (skipped by the caller in dry-run). */
export async function configureRoutes(cfg: IptablesConfig, ip: IpRunner, log: Logger): Promise<void> {
  if (cfg.enableIPv6) {
    await must(ip, ['-6', 'addr', 'add', '::6/128', 'dev', 'lo'], true);
    log.info('Added ::6 address on the loopback iface');
  }
  if (!wantsTproxyRoutes(cfg)) return;
  const mark = cfg.inboundTProxyMark;
  const table = cfg.inboundTProxyRouteTable;
  for (const { fam, dst } of families(cfg)) {
    if ((await ruleCount(ip, fam, mark, table)) === 0) await must(ip, [fam, 'rule', 'add', 'fwmark', mark, 'lookup', table], false);
    await must(ip, [fam, 'route', 'add', 'local', dst, 'dev', 'lo', 'table', table], true);
  }
  log.info(`Configured TPROXY policy routing: fwmark ${mark} -> table ${table} (local default via lo)`);
}

/** Removes what configureRoutes added for TPROXY (the ::6 address is left in place). */
export async function removeRoutes(cfg: IptablesConfig, ip: IpRunner, log: Logger): Promise<void> {
  if (!wantsTproxyRoutes(cfg)) return;
  const mark = cfg.inboundTProxyMark;
  const table = cfg.inboundTProxyRouteTable;
  for (const { fam, dst } of families(cfg)) {
    for (let n = await ruleCount(ip, fam, mark, table); n > 0; n--) await ip([fam, 'rule', 'del', 'fwmark', mark, 'lookup', table]);
    await ip([fam, 'route', 'del', 'local', dst, 'dev', 'lo', 'table', table]);
  }
  log.info(`Removed TPROXY policy routing for fwmark ${mark} / table ${table}`);
}
