import assert from 'node:assert/strict';
import { it } from 'node:test';
import { memoryLogger } from '../lib/log.js';
import { runCapture } from './capture.js';
import { DEFAULT_CONFIG, type IptablesConfig } from './config.js';
import { planRules } from './planner.js';
import { renderRestore } from './rules.js';
import { DryRunXtables, XtablesError, type XtBinaries, type XtCmd, type Xtables } from './xtables.js';

const cfg = (over: Partial<IptablesConfig> = {}): IptablesConfig => ({
  ...DEFAULT_CONFIG, proxyUID: '1337', proxyGID: '1337', inboundPortsInclude: '*', outboundIPRangesInclude: '*', ...over,
});

/** A fake backend with a scripted save output per family and failing commands on demand. */
class FakeXt implements Xtables {
  calls: string[] = [];
  constructor(private readonly opts: { save?: Record<string, string>; fail?: (line: string) => boolean } = {}) {}
  detect(ipv6: boolean): Promise<XtBinaries> {
    const b = ipv6 ? 'ip6tables-nft' : 'iptables-nft';
    return Promise.resolve({ iptables: b, save: `${b}-save`, restore: `${b}-restore`, version: [1, 8, 9], legacy: false, existingRules: false });
  }
  run(cmd: XtCmd, bins: XtBinaries, args: readonly string[], o: { stdin?: string } = {}): Promise<string> {
    const bin = cmd === 'iptables' ? bins.iptables : cmd === 'save' ? bins.save : bins.restore;
    const line = [bin, ...args].join(' ');
    this.calls.push(o.stdin ? `${line} <<${o.stdin.split('\n').length}` : line);
    if (this.opts.fail?.(line)) return Promise.reject(new XtablesError(line, 1, 'boom'));
    return Promise.resolve(cmd === 'save' ? (this.opts.save?.[bin] ?? '') : '');
  }
}

void it('records the same call sequence as pilot-agent in dry-run', async () => {
  const c = cfg({ enableIPv6: true });
  const xt = new DryRunXtables();
  const r = await runCapture(c, planRules(c), { xt, log: memoryLogger().log, sweep: false });
  assert.equal(r.applied, true);
  const restore = renderRestore(planRules(c).rules.v4).trimEnd().split('\n');
  assert.deepEqual(xt.records.slice(0, 2), ['iptables-save', 'ip6tables-save']);
  assert.deepEqual(xt.records.slice(2, 2 + restore.length), restore);
  assert.deepEqual(xt.records.slice(-2), ['iptables-save', 'ip6tables-save']);
});

void it('skips the apply when the existing rules already match (idempotent re-run)', async () => {
  const c = cfg();
  const applied = renderRestore(planRules(c).rules.v4).replace(/^-N (\S+)$/gm, ':$1 - [0:0]');
  const xt = new FakeXt({ save: { 'iptables-nft-save': applied } });
  const r = await runCapture(c, planRules(c), { xt, log: memoryLogger().log, sweep: true });
  assert.deepEqual([r.residueFound, r.deltaFound, r.applied], [true, false, false]);
  assert.ok(xt.calls.some((l) => l.startsWith('iptables-nft -t nat -C ISTIO_OUTPUT')));
  assert.ok(!xt.calls.some((l) => l.includes('restore')));
});

void it('reconciles differing residue behind guardrails, and removes the guardrails afterwards', async () => {
  const c = cfg({ reconcile: true });
  const old = '*nat\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_OLD - [0:0]\n-A OUTPUT -j ISTIO_OUTPUT\n-A ISTIO_OUTPUT -j ISTIO_OLD\nCOMMIT\n';
  const xt = new FakeXt({ save: { 'iptables-nft-save': old } });
  await runCapture(c, planRules(c), { xt, log: memoryLogger().log, sweep: true });
  const idx = (re: RegExp) => xt.calls.findIndex((l) => re.test(l));
  const guard = idx(/-I INPUT 1 -p tcp -j DROP/);
  const cleanup = idx(/-t nat -D OUTPUT -j ISTIO_OUTPUT/);
  const sweepOld = idx(/-X ISTIO_OLD/);
  const restore = idx(/iptables-nft-restore --noflush/);
  const unguard = idx(/-D INPUT -p tcp -j DROP/);
  assert.ok(guard >= 0 && guard < cleanup && cleanup < sweepOld && sweepOld < restore && restore < xt.calls.lastIndexOf(xt.calls[unguard]!), xt.calls.join('\n'));
  assert.ok(xt.calls.slice(restore).some((l) => /-D OUTPUT -p udp -j DROP/.test(l)), 'guardrails removed after the apply');
});

void it('rolls back a half-applied rule set and names the failing command', async () => {
  const c = cfg({ enableIPv6: true });
  const xt = new FakeXt({
    fail: (l) => l.startsWith('ip6tables-nft-restore'),
    save: { 'iptables-nft-save': '*nat\n:ISTIO_OUTPUT - [0:0]\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n' },
  });
  // state check sees nothing yet (first save), later saves see the half-applied IPv4 rules
  let first = true;
  const orig = xt.run.bind(xt);
  xt.run = (cmd, b, a, o) => (cmd === 'save' && first && b.save.startsWith('iptables') ? ((first = false), Promise.resolve('')) : orig(cmd, b, a, o));
  await assert.rejects(runCapture(c, planRules(c), { xt, log: memoryLogger().log, sweep: true }), /command failed: ip6tables-nft-restore --noflush \(exit 1\)/);
  const after = xt.calls.slice(xt.calls.findIndex((l) => l.startsWith('ip6tables-nft-restore')));
  assert.ok(after.includes('iptables-nft -t nat -D OUTPUT -j ISTIO_OUTPUT'));
  assert.ok(after.includes('iptables-nft -t nat -X ISTIO_OUTPUT'));
  assert.ok(after.includes('ip6tables-nft -t nat -X ISTIO_OUTPUT'));
});

void it('cleanup-only deletes the planned rules and applies nothing', async () => {
  const c = cfg({ cleanupOnly: true });
  const xt = new DryRunXtables();
  await runCapture(c, planRules(c), { xt, log: memoryLogger().log, sweep: false });
  assert.equal(xt.records[2], 'iptables -t nat -D ISTIO_OUTPUT -j ISTIO_REDIRECT', 'last planned rule is undone first');
  assert.ok(xt.records.includes('iptables -t nat -D OUTPUT -j ISTIO_OUTPUT'));
  assert.ok(!xt.records.some((r) => r.startsWith('* nat')));
  assert.equal(xt.records.at(-1), 'iptables-save');
});
