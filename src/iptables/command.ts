// The istio-iptables command flow after flag parsing: resolve + validate (nothing touched on failure),
// plan, apply (dry-run recorder or real binaries), TPROXY routing, optional validation probe.

import type { Writable } from 'node:stream';
import { errorMessage, formatIssues } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { runCapture } from './capture.js';
import { VALIDATION_ERROR_CODE, type IptablesConfig } from './config.js';
import { readLocalAddrs, readTextFile } from './host.js';
import { runNftables } from './nft.js';
import { planRules } from './planner.js';
import { describeConfig, resolveConfig, type HostProbe, type RawIptablesInputs } from './resolve.js';
import { configureRoutes, execaIpRunner, removeRoutes, type IpRunner } from './routes.js';
import { runValidation, VALIDATION_FAILED_MESSAGE } from './validation.js';
import { DryRunXtables, RealXtables, type Xtables } from './xtables.js';

export interface CommandIO {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly log: Logger;
  /** Overrides for tests. */
  readonly host?: HostProbe;
  readonly xtables?: Xtables;
  readonly ip?: IpRunner;
}

export const REAL_HOST: HostProbe = { localAddrs: readLocalAddrs, readFile: readTextFile };

const ENV_DUMP = [
  'ENVOY_PORT', 'INBOUND_CAPTURE_PORT', 'ISTIO_INBOUND_INTERCEPTION_MODE', 'ISTIO_INBOUND_TPROXY_ROUTE_TABLE', 'ISTIO_INBOUND_PORTS',
  'ISTIO_OUTBOUND_PORTS', 'ISTIO_LOCAL_EXCLUDE_PORTS', 'ISTIO_EXCLUDE_INTERFACES', 'ISTIO_SERVICE_CIDR', 'ISTIO_SERVICE_EXCLUDE_CIDR',
  'ISTIO_META_DNS_CAPTURE', 'INVALID_DROP',
];

export async function runIptablesCommand(raw: RawIptablesInputs, io: CommandIO): Promise<number> {
  const log = io.log;
  const resolved = resolveConfig(raw, io.env, io.host ?? REAL_HOST);
  if (!resolved.config) {
    io.stderr.write(`Error: ${formatIssues(resolved.issues)}\n`);
    return 1;
  }
  const cfg = resolved.config;
  for (const n of resolved.notes) log.info(n);

  if (cfg.dryRun) log.info('running iptables in dry-run mode, no rule changes will be made');
  if (!cfg.skipRuleApply) {
    const code = cfg.nativeNftables ? await runNftables(cfg, io) : await programIptables(cfg, io);
    if (code !== 0) return code;
  }
  if (cfg.runValidation) {
    const ok = await runValidation({
      proxyPort: Number(cfg.proxyPort),
      inboundCapturePort: Number(cfg.inboundCapturePort),
      probePort: cfg.iptablesProbePort,
      timeoutMs: cfg.probeTimeoutMs,
      ipv6: cfg.hostIP !== '' ? cfg.hostIP.includes(':') : cfg.enableIPv6,
      log,
    });
    if (!ok) {
      io.stderr.write(`Error: ${VALIDATION_FAILED_MESSAGE}`);
      return VALIDATION_ERROR_CODE;
    }
  }
  return 0;
}

async function programIptables(cfg: IptablesConfig, io: CommandIO): Promise<number> {
  const log = io.log;
  const plan = planRules(cfg);
  for (const w of plan.warnings) log.warn(w);
  log.info(`Istio iptables environment:\n${ENV_DUMP.map((n) => `${n}=${io.env[n] ?? ''}`).join('\n')}\n`);
  log.info(`Istio config:\n${describeConfig(cfg)}`);

  const recorder = cfg.dryRun ? new DryRunXtables(io.env['DRY_RUN_FILE_PATH'] ?? '') : undefined;
  const xt: Xtables =
    io.xtables ??
    recorder ??
    new RealXtables({
      forceBinary: cfg.forceIptablesBinary,
      ...(cfg.cniMode && cfg.networkNamespace ? { podScopedLockFile: cfg.networkNamespace } : {}),
      env: io.env,
      debug: (m) => log.debug(m),
    });
  try {
    await runCapture(cfg, plan, { xt, log, sweep: !cfg.dryRun });
    if (!cfg.dryRun) {
      const ip = io.ip ?? execaIpRunner(io.env);
      if (cfg.cleanupOnly) await removeRoutes(cfg, ip, log);
      else await configureRoutes(cfg, ip, log);
    } else {
      log.info('skipping configuring routes due to dry run mode');
    }
  } catch (e) {
    io.stderr.write(`Error: ${errorMessage(e)}\n`);
    return 1;
  } finally {
    if (recorder) io.stdout.write(recorder.transcript());
  }
  return 0;
}
