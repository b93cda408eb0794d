// Differential test: our `agent istio-iptables --dry-run` against the Go pilot-agent 1.30 on generated
// flag/env combinations. Both run in the same throw-away user+network+mount namespace (unshare -rnm)
// with known interface addresses and a bind-mounted /etc/resolv.conf, and must write identical
// DRY_RUN_FILE_PATH transcripts and exit with the same code. Combinations sharing a host setup run in
// one namespace, two namespaces at a time. Fails (does not skip) when the Go binary is missing.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AGENT_BIN, pilotAgentBin } from '../helpers/peers.js';
import { generateCombos, generateNftCombos, type Combo, type HostAddrs } from './differential-gen.js';

const SEED = 20260826;
const VALID = 220;
const NFT = 40;
/** Everything either binary reads from the environment; unset for every run, then the combo's env. */
const ENV_KEEP = ['PATH'];

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function hostSetup(addrs: HostAddrs): string {
  const lines = ['ip link set lo up', 'ip link add v0 type veth peer name v1', 'ip link set v0 up', 'ip link set v1 up'];
  if (addrs === 'v4' || addrs === 'v4v6') lines.push('ip addr add 10.4.4.4/32 dev v0');
  if (addrs === 'v6' || addrs === 'v4v6') lines.push('ip -6 addr add 2001:db8::1/128 dev v0 nodad');
  return lines.join(' && ');
}

const ENV_BASE = () => ENV_KEEP.map((k) => `${k}=${q(process.env[k] ?? '')}`).join(' ');
const envWords = (env: Readonly<Record<string, string>>) => Object.entries(env).map(([k, v]) => `${k}=${q(v)}`).join(' ');
const ours = () => `${q(AGENT_BIN)}`;

function script(dir: string, combos: readonly Combo[], lines: (c: Combo, f: (who: string, ext: string) => string) => string[]): string {
  const out = ['set -u', `${hostSetup(combos[0]!.host.addrs)} || exit 90`, `mount --bind ${q(join(dir, 'resolv.conf'))} /etc/resolv.conf || exit 91`];
  for (const c of combos) out.push(...lines(c, (who, ext) => q(join(dir, `${who}.${c.id}.${ext}`))));
  return `${out.join('\n')}\n`;
}

/** iptables mode: both in dry-run, transcripts from DRY_RUN_FILE_PATH. */
function dryRunLines(go: string) {
  return (c: Combo, f: (who: string, ext: string) => string): string[] =>
    ([['go', q(go)], ['ts', ours()]] as const).map(
      ([who, cmd]) => `env -i ${ENV_BASE()} ${envWords(c.env)} DRY_RUN_FILE_PATH=${f(who, 'dry')} ${cmd} istio-iptables ${c.args.map(q).join(' ')} >${f(who, 'out')} 2>${f(who, 'err')} </dev/null; echo $? >${f(who, 'rc')}`,
    );
}

/** nftables mode: both really apply (pilot-agent ignores --dry-run there); the kernel rule sets are compared. */
function nftLines(go: string) {
  return (c: Combo, f: (who: string, ext: string) => string): string[] => {
    const n = c as Combo & { goArgs: readonly string[]; goEnv: Readonly<Record<string, string>> };
    return [
      `env -i ${ENV_BASE()} ${envWords(n.goEnv)} ${q(go)} istio-iptables ${n.goArgs.map(q).join(' ')} >${f('go', 'out')} 2>${f('go', 'err')} </dev/null; echo $? >${f('go', 'rc')}`,
      `nft list ruleset >${f('go', 'rs')} 2>&1; nft flush ruleset`,
      `env -i ${ENV_BASE()} ${envWords(n.env)} ${ours()} istio-iptables ${n.args.map(q).join(' ')} >${f('ts', 'out')} 2>${f('ts', 'err')} </dev/null; echo $? >${f('ts', 'rc')}`,
      `nft list ruleset >${f('ts', 'rs')} 2>&1; nft flush ruleset`,
    ];
  };
}

/** The transaction pilot-agent logs after "nftables rules programmed:". */
function loggedTransaction(log: string): string {
  const i = log.indexOf('nftables rules programmed:\n');
  if (i < 0) return '<none>';
  const rest = log.slice(i + 'nftables rules programmed:\n'.length);
  const end = rest.indexOf(' \n');
  return end < 0 ? rest : rest.slice(0, end);
}

/** Runs the combos grouped by host setup, two namespaces at a time; returns the group directory of each combo. */
async function runGroups(work: string, tag: string, combos: readonly Combo[], lines: Parameters<typeof script>[2], failures: string[]): Promise<Map<number, string>> {
  const groups = new Map<string, Combo[]>();
  for (const c of combos) {
    const k = `${c.host.addrs}\0${c.host.resolv}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  const dirOf = new Map<number, string>();
  const list = [...groups.values()];
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const gi = next++;
      const cs = list[gi]!;
      const dir = join(work, `${tag}${gi}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'resolv.conf'), cs[0]!.host.resolv);
      writeFileSync(join(dir, 'run.sh'), script(dir, cs, lines));
      const r = await run('unshare', ['-rnm', 'sh', join(dir, 'run.sh')], 200_000);
      if (r.code !== 0) failures.push(`${tag} group ${gi}: namespace script failed (${r.code}): ${r.stderr}`);
      for (const c of cs) dirOf.set(c.id, dir);
    }
  };
  await Promise.all([worker(), worker()]);
  return dirOf;
}

function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stderr });
    });
  });
}

const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '<no file>');

void describe('istio-iptables dry-run: differential against the Go pilot-agent', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'matest-diff-'));
  });
  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  void it(`produces identical transcripts on ${VALID} generated combinations (seed ${SEED}) and fails on the same invalid ones`, { timeout: 240_000 }, async () => {
    const go = pilotAgentBin(); // throws "PILOT_AGENT_BIN is not installed ..." when missing: the test fails
    const combos = generateCombos(SEED, VALID);
    assert.ok(combos.filter((c) => !c.invalid).length >= 200);

    const failures: string[] = [];
    const dirOf = await runGroups(work, 'dry', combos, dryRunLines(go), failures);
    for (const c of combos) {
      const dir = dirOf.get(c.id)!;
      const f = (who: string, ext: string) => join(dir, `${who}.${c.id}.${ext}`);
      const goRc = read(f('go', 'rc')).trim();
      const tsRc = read(f('ts', 'rc')).trim();
      const what = `combo ${c.id} [${c.host.addrs}] env=${JSON.stringify(c.env)} args=${JSON.stringify(c.args)}`;
      if (goRc !== tsRc) {
        failures.push(`${what}: exit code go=${goRc} ours=${tsRc}\n  go: ${read(f('go', 'out')).slice(-400)}${read(f('go', 'err')).slice(-400)}\n  ours: ${read(f('ts', 'err')).slice(-400)}`);
        continue;
      }
      if (c.invalid) {
        if (goRc === '0') failures.push(`${what}: expected both to fail`);
        continue;
      }
      const goDry = read(f('go', 'dry'));
      const tsDry = read(f('ts', 'dry'));
      if (goDry !== tsDry) failures.push(`${what}: transcripts differ\n--- go\n${goDry}--- ours\n${tsDry}`);
      else if (tsDry !== '<no file>' && read(f('ts', 'out')) !== tsDry) failures.push(`${what}: our stdout differs from our DRY_RUN_FILE_PATH`);
    }
    assert.equal(failures.length, 0, `${failures.length} mismatches:\n${failures.slice(0, 8).join('\n\n')}`);
  });

  void it(`applies identical nftables rule sets with --native-nftables on ${NFT} generated combinations`, { timeout: 240_000 }, async () => {
    const go = pilotAgentBin();
    const combos = generateNftCombos(SEED + 1, NFT);
    const failures: string[] = [];
    const dirOf = await runGroups(work, 'nft', combos, nftLines(go), failures);
    let nonEmpty = 0;
    for (const c of combos) {
      const dir = dirOf.get(c.id)!;
      const f = (who: string, ext: string) => join(dir, `${who}.${c.id}.${ext}`);
      const what = `nft combo ${c.id} [${c.host.addrs}] env=${JSON.stringify(c.env)} args=${JSON.stringify(c.args)}`;
      const goRc = read(f('go', 'rc')).trim();
      const tsRc = read(f('ts', 'rc')).trim();
      if (goRc !== tsRc) {
        failures.push(`${what}: exit code go=${goRc} ours=${tsRc}\n  go: ${read(f('go', 'out')).slice(-600)}\n  ours: ${read(f('ts', 'err')).slice(-600)}`);
        continue;
      }
      // packet counters move with the validation probes; everything else must be identical
      const goRs = read(f('go', 'rs')).replace(/packets \d+ bytes \d+/g, 'packets - bytes -');
      const tsRs = read(f('ts', 'rs')).replace(/packets \d+ bytes \d+/g, 'packets - bytes -');
      if (goRs !== tsRs) failures.push(`${what}: kernel rule sets differ\n--- go\n${goRs}--- ours\n${tsRs}`);
      const goTx = loggedTransaction(read(f('go', 'out')));
      const tsTx = loggedTransaction(read(f('ts', 'out')));
      if (goTx !== tsTx) failures.push(`${what}: transactions differ\n--- go\n${goTx}--- ours\n${tsTx}`);
      if (goRs.includes('istio-proxy-nat')) nonEmpty++;
    }
    assert.equal(failures.length, 0, `${failures.length} mismatches:\n${failures.slice(0, 6).join('\n\n')}`);
    assert.ok(nonEmpty >= NFT / 2, `only ${nonEmpty} combinations produced rules`);
  });
});
