// The boundary to the iptables binaries: an interface for running iptables / -save / -restore of one
// family, a dry-run recorder (pilot-agent's recording stub, same transcript), and the real executor.

import { closeSync, openSync, writeSync, constants as fsc } from 'node:fs';
import { AgentError } from '../lib/errors.js';
import { ruleWords } from './rules.js';

export type XtCmd = 'iptables' | 'save' | 'restore';

/** The binaries chosen for one IP family. */
export interface XtBinaries {
  readonly iptables: string;
  readonly save: string;
  readonly restore: string;
  /** [major, minor, patch]; [0,0,0] when unknown. */
  readonly version: readonly [number, number, number];
  readonly legacy: boolean;
  /** Rules of this variant already exist in the network namespace. */
  readonly existingRules: boolean;
}

export interface RunOptions {
  readonly stdin?: string;
  /** Failures are expected (logged at debug level only). */
  readonly quiet?: boolean;
}

export interface Xtables {
  /** Picks the binaries for a family; throws when none works. */
  detect(ipv6: boolean): Promise<XtBinaries>;
  /** Runs a command; resolves with stdout, rejects with XtablesError. */
  run(cmd: XtCmd, bins: XtBinaries, args: readonly string[], opts?: RunOptions): Promise<string>;
}

export class XtablesError extends AgentError {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    super('AGENT_ERR_IPTABLES', `command failed: ${command}${exitCode === undefined ? '' : ` (exit ${exitCode})`}${stderr.trim() ? `: ${describeXtablesError(exitCode, stderr)}` : ''}`);
    this.name = 'XtablesError';
  }
}

const EXIT_TYPES: Record<number, string> = {
  1: 'xtables other problem',
  2: 'xtables parameter problem',
  3: 'xtables version problem',
  4: 'xtables resource problem',
};

/** Adds the xtables exit-type hint pilot-agent prints ("xtables parameter problem: ..."). */
export function describeXtablesError(exitCode: number | undefined, stderr: string): string {
  const text = stderr.trim();
  const type = exitCode === undefined ? undefined : EXIT_TYPES[exitCode];
  if (!type) return text;
  const colon = text.indexOf(':');
  return `${type}: ${(colon >= 0 ? text.slice(colon + 1) : text).trim()}`;
}

export function binaryFor(cmd: XtCmd, b: XtBinaries): string {
  return cmd === 'iptables' ? b.iptables : cmd === 'save' ? b.save : b.restore;
}

/** Records every call the way pilot-agent's dry-run stub does; all calls succeed with empty output. */
export class DryRunXtables implements Xtables {
  readonly records: string[] = [];
  constructor(private readonly dryRunFilePath = '') {}

  detect(ipv6: boolean): Promise<XtBinaries> {
    const base = ipv6 ? 'ip6tables' : 'iptables';
    return Promise.resolve({ iptables: base, save: `${base}-save`, restore: `${base}-restore`, version: [0, 0, 0], legacy: false, existingRules: false });
  }

  run(cmd: XtCmd, bins: XtBinaries, args: readonly string[], opts: RunOptions = {}): Promise<string> {
    if (opts.stdin !== undefined) {
      // a restore is recorded as its input lines; the command line itself is not
      const lines = opts.stdin.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      this.records.push(...lines);
    } else {
      this.records.push([binaryFor(cmd, bins), ...args].join(' '));
    }
    this.writeFile();
    return Promise.resolve('');
  }

  /** The transcript: one record per line. */
  transcript(): string {
    return this.records.map((r) => `${r}\n`).join('');
  }

  /** Rewrites the file from the start after each call, without truncating (as pilot-agent does). */
  private writeFile(): void {
    if (!this.dryRunFilePath) return;
    let fd: number | undefined;
    try {
      fd = openSync(this.dryRunFilePath, fsc.O_CREAT | fsc.O_WRONLY, 0o644);
      writeSync(fd, this.transcript(), 0);
    } catch {
      // pilot-agent ignores write errors of the dry-run file
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

export interface RealXtablesOptions {
  /** `--force-iptables-binary`. */
  readonly forceBinary?: '' | 'legacy' | 'nft';
  /** `--cni-mode` with `--network-namespace`: use the namespace file as the xtables lock. */
  readonly podScopedLockFile?: string;
  /** Environment for the child processes (PATH decides which binaries are found). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly debug?: (msg: string) => void;
}

const NOOP_RULE = ['-t', 'nat', '-A', 'INPUT', '-p', '255', '-j', 'RETURN'];

function parseVersion(text: string): [number, number, number] | undefined {
  const m = /v(\d+)((?:\.\d+)+)/.exec(text);
  if (!m) return undefined;
  const parts = [m[1]!, ...m[2]!.slice(1).split('.')].map(Number);
  return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0];
}

function versionLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  return false;
}

/**
 * Whether a save dump holds rules. pilot-agent counts lines (>= 3), but its own probe (add + delete of a
 * no-op rule) leaves an empty legacy `nat` table that already prints 8 lines, so a second run in the same
 * namespace would switch to the legacy backend and apply everything again there. Counting only rules and
 * user-defined chains keeps the intent (prefer the variant that already has rules) without that flip.
 */
export function hasRealRules(dump: string): boolean {
  return dump.split('\n').some((l) => l.startsWith('-A ') || (l.startsWith(':') && !/^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) /.test(l)));
}

/** Legacy iptables >= 1.6.2 takes the xtables lock: write commands get `--wait=30`. */
export function needsLock(b: XtBinaries): boolean {
  return b.legacy && !versionLess(b.version, [1, 6, 2]);
}

/** Runs the real binaries (execa, no shell). */
export class RealXtables implements Xtables {
  constructor(private readonly opts: RealXtablesOptions) {}

  private async exec(bin: string, args: readonly string[], stdin?: string, extraEnv: Record<string, string> = {}) {
    const { execa } = await import('execa'); // loaded on first use: dry runs never need it
    return execa(bin, args, {
      input: stdin,
      reject: false,
      env: { ...this.opts.env, ...extraEnv },
      extendEnv: false,
      stripFinalNewline: false,
      timeout: 120_000,
    });
  }

  /** Tries one binary set (`iptables-nft`, `iptables-legacy`, `iptables`, ...). */
  async probe(bin: string): Promise<XtBinaries> {
    const save = `${bin}-save`;
    const dump = await this.exec(save, []);
    if (dump.failed) throw new Error(`failed to execute ${save}: ${dump.shortMessage ?? dump.stderr}`);
    const ver = await this.exec(save, ['--version']);
    let version: [number, number, number] = [0, 0, 0];
    let legacy = true;
    if (!ver.failed && !String(ver.stderr).includes('unrecognized option')) {
      const v = parseVersion(String(ver.stdout));
      if (!v) throw new Error(`no iptables version found for: ${JSON.stringify(String(ver.stdout))}`);
      version = v;
      legacy = !String(ver.stdout).includes('nf_tables');
    }
    const probeBins: XtBinaries = { iptables: bin, save, restore: `${bin}-restore`, version, legacy, existingRules: false };
    const add = [...NOOP_RULE, ...(needsLock(probeBins) ? ['--wait=30'] : [])];
    const res = await this.exec(bin, add);
    if (res.failed || String(res.stderr).includes('does not exist'))
      throw new Error(`iptables binary ${bin} has no loaded kernel support and cannot be used: ${String(res.stderr).trim() || res.shortMessage}`);
    const del = [...add];
    del[2] = '-D';
    await this.exec(bin, del);
    return { ...probeBins, existingRules: hasRealRules(String(dump.stdout)) };
  }

  /** pilot-agent's choice: legacy if it already has rules, else nft if usable, else the plain name. */
  async detect(ipv6: boolean): Promise<XtBinaries> {
    const base = ipv6 ? 'ip6tables' : 'iptables';
    const force = this.opts.forceBinary ?? '';
    if (force) return this.probe(`${base}-${force}`);
    try {
      const legacy = await this.probe(`${base}-legacy`);
      if (legacy.existingRules) return legacy;
    } catch (e) {
      this.opts.debug?.(`did not find (or cannot use) ${base}-legacy: ${(e as Error).message}`);
    }
    try {
      return await this.probe(`${base}-nft`);
    } catch (e) {
      this.opts.debug?.(`did not find (or cannot use) ${base}-nft: ${(e as Error).message}`);
    }
    return this.probe(base);
  }

  async run(cmd: XtCmd, bins: XtBinaries, args: readonly string[], opts: RunOptions = {}): Promise<string> {
    const bin = binaryFor(cmd, bins);
    const write = cmd !== 'save';
    // values are printed verbatim into restore payloads, where iptables-restore splits them on blanks;
    // split single commands the same way so `-C`/`-D` match what the restore created
    const words = cmd === 'iptables' ? ruleWords(args) : [...args];
    const full = write && needsLock(bins) ? [...words, '--wait=30'] : words;
    const extraEnv: Record<string, string> = {};
    if (write && needsLock(bins) && this.opts.podScopedLockFile && !versionLess(bins.version, [1, 8, 6]))
      extraEnv['XTABLES_LOCKFILE'] = this.opts.podScopedLockFile;
    const line = [bin, ...full].join(' ');
    this.opts.debug?.(`Running command: ${line}`);
    const res = await this.exec(bin, full, opts.stdin, extraEnv);
    if (res.failed) {
      const code = typeof res.exitCode === 'number' ? res.exitCode : undefined;
      const stderr = String(res.stderr || res.shortMessage || '');
      throw new XtablesError(line, code, stderr);
    }
    return String(res.stdout);
  }
}
