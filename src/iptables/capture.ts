// Applies a rule plan through an Xtables implementation, with pilot-agent's sequence of calls (so a dry
// run records the same transcript): state check, optional guarded reconcile/cleanup, iptables-restore per
// family, final state log. Additions over pilot-agent, active for real runs only (`sweep`): a cleanup or
// reconcile also removes ISTIO_ leftovers of other configurations, and a failed apply is rolled back so
// no partial ISTIO_ chains remain.

import type { Logger } from '../lib/log.js';
import type { IptablesConfig } from './config.js';
import type { Plan } from './planner.js';
import {
  checkCommands,
  cleanupCommands,
  cleanupFromState,
  guardrailCleanupCommands,
  guardrailCommands,
  isEmptyState,
  parseSaveState,
  renderRestore,
  type Family,
  type Rule,
} from './rules.js';
import { XtablesError, type XtBinaries, type Xtables } from './xtables.js';

export interface CaptureOptions {
  readonly xt: Xtables;
  readonly log: Logger;
  /** Real runs: sweep ISTIO_ leftovers on cleanup/reconcile and roll back a failed apply. */
  readonly sweep: boolean;
}

export interface CaptureResult {
  /** Whether an iptables-restore was run. */
  readonly applied: boolean;
  readonly residueFound: boolean;
  readonly deltaFound: boolean;
}

interface FamilyCtx {
  readonly family: Family;
  readonly name: 'IPv4' | 'IPv6';
  /** undefined: no usable binary (IPv6 off and detection failed). */
  readonly bins: XtBinaries | undefined;
  readonly rules: readonly Rule[];
}

export async function runCapture(cfg: IptablesConfig, plan: Plan, opts: CaptureOptions): Promise<CaptureResult> {
  const { xt, log } = opts;
  const bins4 = await xt.detect(false);
  let bins6: XtBinaries | undefined;
  try {
    bins6 = await xt.detect(true);
  } catch (e) {
    if (cfg.enableIPv6) throw e;
    log.warn(`Failed to detect a working ip6tables binary; continuing because IPv6 support is disabled (ENABLE_INBOUND_IPV6=false): ${(e as Error).message}`);
  }
  const fams: FamilyCtx[] = [
    { family: 'v4', name: 'IPv4', bins: bins4, rules: plan.rules.rules('v4') },
    { family: 'v6', name: 'IPv6', bins: bins6, rules: plan.rules.rules('v6') },
  ];
  const enabled = cfg.enableIPv6 ? fams : fams.slice(0, 1);
  try {
    return await execute(cfg, fams, enabled, opts);
  } finally {
    for (const f of enabled) {
      if (!f.bins) continue;
      try {
        const state = await xt.run('save', f.bins, [], { quiet: true });
        log.info(`Final iptables state (${f.name}):\n${state}`);
      } catch {
        // best effort
      }
    }
  }
}

async function tryAll(xt: Xtables, bins: XtBinaries | undefined, cmds: readonly string[][], log: Logger): Promise<void> {
  if (!bins) return;
  for (const c of cmds) {
    try {
      await xt.run('iptables', bins, c, { quiet: true });
    } catch (e) {
      log.debug(`Ignoring iptables command error: ${(e as Error).message}`);
    }
  }
}

async function runAll(xt: Xtables, bins: XtBinaries, cmds: readonly string[][]): Promise<void> {
  for (const c of cmds) await xt.run('iptables', bins, c);
}

interface StateResult {
  residue: boolean;
  delta: boolean;
}

/** pilot-agent's VerifyIptablesState: is there ISTIO residue, and does it differ from the plan? */
export async function verifyState(xt: Xtables, fams: readonly FamilyCtx[], log: Logger): Promise<StateResult> {
  let residue = false;
  let delta = false;
  for (const f of fams) {
    const expectedText = renderRestore(f.rules);
    const expected = parseSaveState(expectedText);
    const planned = !isEmptyState(expected);
    let famResidue = false;
    let famDelta = false;
    let saved: string | undefined;
    if (f.bins) {
      try {
        saved = await xt.run('save', f.bins, [], { quiet: true });
      } catch (e) {
        log.warn(`[${f.name}] iptables-save failed. Assuming clean state: ${(e as Error).message}`);
      }
    } else {
      log.warn(`[${f.name}] no iptables binary. Assuming clean state.`);
    }
    if (saved === undefined) {
      famDelta = planned;
    } else {
      const current = parseSaveState(saved);
      famResidue = !isEmptyState(current);
      if (!famResidue) famDelta = planned;
      else {
        famDelta = stateDiffers(expected, current);
        if (!famDelta && f.bins) {
          for (const c of checkCommands(f.rules)) {
            try {
              await xt.run('iptables', f.bins, c, { quiet: true });
            } catch {
              famDelta = true;
              log.debug(`[${f.name}] iptables check rules failed`);
              break;
            }
          }
        }
      }
    }
    delta ||= famDelta;
    if (famResidue && planned) residue = true;
    else if (famResidue) log.info(`Ignoring residues because no rules are planned for ${f.name}`);
  }
  if (!residue) {
    log.info('Clean-state detected, new iptables are needed');
    return { residue: false, delta: true };
  }
  log.info(delta ? 'Found residues of old iptables rules/chains, reconciliation is recommended' : 'Found compatible residues of old iptables rules/chains, reconciliation not needed');
  return { residue, delta };
}

function stateDiffers(expected: ReturnType<typeof parseSaveState>, current: ReturnType<typeof parseSaveState>): boolean {
  for (const [table, chains] of expected) {
    const cur = current.get(table);
    if (!cur) return true;
    for (const [chain, rules] of chains) {
      const curRules = cur.get(chain);
      if (!curRules || (chain.startsWith('ISTIO_') && curRules.length !== rules.length)) return true;
    }
  }
  for (const [table, chains] of current)
    for (const chain of chains.keys()) if (chain.startsWith('ISTIO_') && !expected.get(table)?.has(chain)) return true;
  return false;
}

/** Re-reads the state and removes every remaining ISTIO_ chain and jump. */
async function sweep(xt: Xtables, f: FamilyCtx, log: Logger): Promise<void> {
  if (!f.bins) return;
  let saved: string;
  try {
    saved = await xt.run('save', f.bins, [], { quiet: true });
  } catch (e) {
    log.warn(`[${f.name}] cannot read state for cleanup: ${(e as Error).message}`);
    return;
  }
  const cmds = cleanupFromState(parseSaveState(saved));
  if (cmds.length) {
    log.info(`[${f.name}] removing ${cmds.length} leftover ISTIO_ chain/rule operations`);
    await tryAll(xt, f.bins, cmds, log);
  }
}

async function execute(cfg: IptablesConfig, fams: readonly FamilyCtx[], enabled: readonly FamilyCtx[], opts: CaptureOptions): Promise<CaptureResult> {
  const { xt, log } = opts;
  let guarded: FamilyCtx[] = [];
  try {
    const { residue, delta } = await verifyState(xt, fams, log);
    if (residue && delta && !cfg.reconcile)
      log.info('reconcile is recommended but no-reconcile flag is set. Unexpected behavior may occur due to preexisting iptables rules');

    if ((residue && delta && cfg.reconcile) || cfg.cleanupOnly) {
      if (!cfg.cleanupOnly) {
        log.info('Setting up guardrails');
        for (const f of enabled) {
          if (!f.bins) continue;
          await tryAll(xt, f.bins, guardrailCleanupCommands(), log);
          await runAll(xt, f.bins, guardrailCommands());
          guarded.push(f);
        }
      }
      log.info('Performing cleanup of existing iptables');
      for (const f of enabled) await tryAll(xt, f.bins, cleanupCommands(f.rules), log);
      if (opts.sweep && residue) for (const f of enabled) await sweep(xt, f, log);
    }

    let applied = false;
    if ((delta || cfg.forceApply) && !cfg.cleanupOnly) {
      log.info('Applying iptables chains and rules');
      for (const f of enabled) {
        if (!f.bins) continue;
        const payload = renderRestore(f.rules);
        log.info(`Running iptables restore with: ${f.bins.restore} and the following input:\n${payload.trim()}`);
        try {
          await xt.run('restore', f.bins, ['--noflush'], { stdin: payload });
        } catch (e) {
          if (opts.sweep) await rollback(xt, enabled, log);
          throw e instanceof XtablesError ? e : new XtablesError(`${f.bins.restore} --noflush`, undefined, (e as Error).message);
        }
        applied = true;
      }
    }
    if (!delta && cfg.forceApply)
      log.warn('The forced apply of iptables changes succeeded despite the presence of conflicting rules or chains. If you encounter this message, please consider reporting it as an issue.');
    return { applied, residueFound: residue, deltaFound: delta };
  } finally {
    if (guarded.length) {
      log.info('Removing guardrails');
      for (const f of guarded) await tryAll(xt, f.bins, guardrailCleanupCommands(), log);
      guarded = [];
    }
  }
}

/** Undo a partial apply: planned deletes, then every ISTIO_ trace left. */
async function rollback(xt: Xtables, enabled: readonly FamilyCtx[], log: Logger): Promise<void> {
  log.warn('Applying iptables rules failed; removing the ISTIO_ chains and rules added so far');
  for (const f of enabled) {
    await tryAll(xt, f.bins, cleanupCommands(f.rules), log);
    await sweep(xt, f, log);
  }
}
