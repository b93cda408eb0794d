// Property tests for `agent istio-iptables` as a whole, in process and in dry-run (nothing on the host
// is changed; host facts are only read): generated argv (every flag, any spelling, valid or hostile
// values) and environment (every bound variable and the env-only settings).
//   - the command never throws; it exits 0 (dry-run transcript on stdout), 1 (the configuration or the
//     plan was refused) or 255 (a flag did not parse), and a failure is one "Error: ..." on stderr whose
//     problems each name a flag, variable or host file that was given;
//   - pilot-agent's env semantics hold for every bound variable: a value that does not parse is ignored
//     with a warning, never fatal, never NaN or Infinity.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, goDurationText } from '../../test/helpers/config-arbitraries.js';
import { IPTABLES_FLAGS, runIptables } from './iptables.js';

const cwd = await mkdtemp(join(tmpdir(), 'iptables-prop-'));

const capture = (): { stream: Writable; text: () => string } => {
  let out = '';
  return {
    stream: new Writable({
      write: (c: Buffer, _e, cb) => {
        out += c.toString();
        cb();
      },
    }),
    text: () => out,
  };
};

/** Flags that would make a run touch the host or the file system: the generator never sets them. */
const FORCED = ['--dry-run', '--run-validation=false', '--log_target=stderr'];
const unsafe = (w: string) => /^(--dry-run|-n|--run-validation|--log_target|--log_rotate|--help|-h)/.test(w);

const VALUES = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('15001', '0', '65535', '65536', '-1', ' 80', '80\n', '*', '80,443', '1,,2', '10.0.0.0/8', '::/0', '10.0.0.0/33', 'fe80::1%eth0', '1.2.3.4', 'eth0', 'veth+', 'a-very-long-interface-name', 'REDIRECT', 'TPROXY', 'NONE', '1337', '4294967296', '253', 'true', 'false', 'maybe', 'legacy', 'nft', '5s', '-1s', `${'9'.repeat(400)}h`, '0x10', '') },
  { weight: 1, arbitrary: anyString(8) },
  { weight: 1, arbitrary: goDurationText },
);
const specs = IPTABLES_FLAGS.filter((s) => !unsafe(`--${s.name}`) && !(s.short && unsafe(`-${s.short}`)));
const word = fc.oneof(
  fc.tuple(fc.constantFrom(...specs), VALUES).map(([s, v]) => (s.type === 'bool' ? [`--${s.name}=${v}`] : [`--${s.name}`, v])),
  fc.tuple(fc.constantFrom(...specs.filter((s) => s.short)), VALUES).map(([s, v]) => [`-${s.short}${v}`]),
  fc.constantFrom(['--ipv6=false'], ['--ipv6=true'], ['--dns-servers=10.96.0.10,fd00::a'], ['--unknown-flag'], ['--'], ['positional']),
);
const ENV_NAMES = [...new Set(IPTABLES_FLAGS.flatMap((s) => s.env ?? []))].filter((n) => !['DRY_RUN', 'RUN_VALIDATION'].includes(n));
const env = fc.dictionary(fc.constantFrom(...ENV_NAMES, 'ISTIO_OUTBOUND_OWNER_GROUPS', 'ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', 'ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', 'ENVOY_USER'), VALUES, { maxKeys: 5 });

/** The problem sources in an "Error: invalid configuration ..." message. */
function sourcesOf(stderr: string): string[] {
  const one = /^Error: invalid configuration: (flag --\S+|flag -\S \(--\S+\)|env \S+|default of --\S+|host addresses|file \/etc\/resolv\.conf): /.exec(stderr);
  if (one) return [one[1]!];
  const many = /^Error: invalid configuration \(\d+ problems\):\n/.exec(stderr);
  assert.ok(many, `unexpected error text: ${stderr.slice(0, 300)}`);
  return stderr
    .slice(many[0].length)
    .split('\n')
    .filter((l) => l.startsWith('  - '))
    .map((l) => /^ {2}- (flag --\S+|flag -\S \(--\S+\)|env \S+|default of --\S+|host addresses|file \/etc\/resolv\.conf): /.exec(l)?.[1] ?? `unparsed: ${l}`);
}

void describe('agent istio-iptables on generated argv and environment (dry-run)', () => {
  after(async () => {
    await rm(cwd, { recursive: true, force: true });
  });

  void it('exits 0, 1 or 255; a failure names the flags and variables at fault', async () => {
    const codes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(word, { maxLength: 6 }), env, async (ipv6, words, e) => {
        // --ipv6 first (the words may override it): most runs do not depend on the host's addresses
        const args = [...FORCED, `--ipv6=${ipv6}`, ...words.flat().filter((w) => !unsafe(w))];
        const out = capture();
        const err = capture();
        const code = await runIptables(args, { env: { PATH: process.env['PATH'] ?? '', ...e }, cwd, stdout: out.stream, stderr: err.stream, signals: new EventEmitter() });
        codes.set(code, (codes.get(code) ?? 0) + 1);
        assert.ok([0, 1, 255].includes(code), `exit ${code}`);
        const stderr = err.text();
        const problems = stderr.split('\n').filter((l) => l.startsWith('Error: '));
        if (code === 0) {
          assert.deepEqual(problems, []);
          return;
        }
        assert.equal(problems.length, 1, stderr);
        // log lines (warnings) may come first
        const error = stderr.slice(stderr.indexOf('Error: '));
        if (/^Error: unknown flag: /.test(error)) return assert.equal(code, 255);
        if (!error.startsWith('Error: invalid configuration')) return assert.equal(code, 1, error); // the planner refused
        for (const src of sourcesOf(error)) {
          let m: RegExpExecArray | null;
          if ((m = /^env (\S+)$/.exec(src))) assert.ok(m[1]! in e, `${src} was not given`);
          else if ((m = /^flag --(\S+)$/.exec(src)) || (m = /^flag -\S \(--(\S+)\)$/.exec(src))) assert.ok(IPTABLES_FLAGS.some((s) => s.name === m![1]), src);
          else assert.ok(['host addresses', 'file /etc/resolv.conf'].includes(src), src);
        }
      }),
      { numRuns: 300 },
    );
    assert.ok((codes.get(0) ?? 0) > 10 && (codes.get(1) ?? 0) + (codes.get(255) ?? 0) > 10, `exit codes ${JSON.stringify([...codes])}`);
  });

  void it('a log file that cannot be opened is a flag problem (exit 255), not an unhandled stream error', async () => {
    const err = capture();
    const code = await runIptables(['--dry-run', '--ipv6=false', '--log_target', 'no/such/dir/iptables.log'], { env: {}, cwd, stdout: capture().stream, stderr: err.stream, signals: new EventEmitter() });
    assert.equal(code, 255);
    assert.match(err.text(), /^Error: invalid configuration: flag --log_target: cannot open log file "no\/such\/dir\/iptables.log": ENOENT/);
  });

  void it('a bound variable that does not parse is ignored with a warning (pilot-agent), never fatal', async () => {
    const bound = IPTABLES_FLAGS.filter((s) => s.env?.length && ['bool', 'int', 'duration'].includes(s.type) && s.name !== 'ipv6' && !s.env.some((n) => ['DRY_RUN', 'RUN_VALIDATION'].includes(n)));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...bound), fc.constantFrom('maybe', '1e400', `${'9'.repeat(400)}h`, '-', '70000', 'Infinity', 'NaN'), async (s, value) => {
        const out = capture();
        const err = capture();
        const code = await runIptables([...FORCED, '--ipv6=false', '-u', '1337', '-g', '1337'], { env: { [s.env![0]!]: value }, cwd, stdout: out.stream, stderr: err.stream, signals: new EventEmitter() });
        assert.equal(code, 0, err.text());
        assert.match(err.text(), new RegExp(`ignoring env ${s.env![0]}=`));
      }),
      { numRuns: 60 },
    );
  });
});
