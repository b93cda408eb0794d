// Malformed start-up input stops `agent proxy` before anything runs: one error on stderr that lists
// every problem with its source, exit code 255 (pilot-agent's code for a failed start), and no
// bootstrap written. Unknown flags are accepted, each named in a warning.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PEER_PATH, runProc } from '../helpers/go-agent.js';
import { AGENT_BIN } from '../helpers/peers.js';

interface BadCase {
  readonly name: string;
  readonly args?: readonly string[];
  readonly env?: Record<string, string>;
  /** Files (relative path -> content; `null` makes a directory there, which cannot be read as a file). */
  readonly files?: Record<string, string | null>;
  /** [source, message] pairs that must each appear as one `source: message` problem. */
  readonly problems: ReadonlyArray<readonly [string, RegExp]>;
}

const CASES: readonly BadCase[] = [
  { name: 'PROXY_CONFIG that is neither JSON nor YAML', env: { PROXY_CONFIG: '{"drainDuration": "5s",' }, problems: [['env PROXY_CONFIG', /invalid YAML\/JSON/]] },
  { name: 'PROXY_CONFIG that is not a mapping', env: { PROXY_CONFIG: '- a\n- b\n' }, problems: [['env PROXY_CONFIG', /cannot unmarshal array into a ProxyConfig/]] },
  { name: 'a duration like 5x', env: { PROXY_CONFIG: '{"drainDuration":"5x"}' }, problems: [['env PROXY_CONFIG', /drainDuration: bad Duration: time: unknown unit "x" in duration "5x"/]] },
  { name: 'a field of the wrong type', env: { PROXY_CONFIG: 'proxyAdminPort: abc\n' }, problems: [['env PROXY_CONFIG', /proxyAdminPort: cannot unmarshal string "abc" into int32/]] },
  { name: 'an unknown enum value', env: { PROXY_CONFIG: '{"controlPlaneAuthPolicy":"TLS"}' }, problems: [['env PROXY_CONFIG', /controlPlaneAuthPolicy: unknown value "TLS" for enum/]] },
  { name: 'a ProxyConfig port out of range', env: { PROXY_CONFIG: '{"statusPort":70000}' }, problems: [['effective ProxyConfig', /invalid status port: port number 70000 must be in the range 1\.\.65535/]] },
  { name: 'an int32 overflow', env: { PROXY_CONFIG: '{"proxyAdminPort":4294967296}' }, problems: [['env PROXY_CONFIG', /proxyAdminPort: value 4294967296 is out of range for int32/]] },
  { name: 'an environment port out of range', env: { ENVOY_STATUS_PORT: '99999' }, problems: [['env ENVOY_STATUS_PORT', /99999 is out of range \(want 1\.\.65535\)/]] },
  { name: 'an environment duration like 5x', env: { MINIMUM_DRAIN_DURATION: '5x' }, problems: [['env MINIMUM_DRAIN_DURATION', /unknown unit "x" in duration "5x"/]] },
  { name: 'an environment boolean', env: { ISTIO_DELTA_XDS: 'maybe' }, problems: [['env ISTIO_DELTA_XDS', /invalid boolean "maybe"/]] },
  { name: 'an unreadable annotations file', files: { 'etc/istio/pod/annotations': null }, problems: [['file ./etc/istio/pod/annotations', /cannot read: EISDIR/]] },
  { name: 'a garbled annotations file', files: { 'etc/istio/pod/annotations': 'a="ok"\nb=not-quoted\n' }, problems: [['file ./etc/istio/pod/annotations', /line 2: failed to unquote not-quoted: invalid syntax/]] },
  { name: 'a garbled labels file', files: { 'etc/istio/pod/labels': 'app="web\n' }, problems: [['file ./etc/istio/pod/labels', /line 1: failed to unquote "web: invalid syntax/]] },
  {
    name: 'a bad proxy.istio.io/config annotation',
    files: { 'etc/istio/pod/annotations': 'proxy.istio.io/config="concurrency: [1\\n"\n' },
    problems: [['annotation proxy.istio.io/config (./etc/istio/pod/annotations)', /invalid YAML\/JSON/]],
  },
  { name: 'a bad status-port annotation', files: { 'etc/istio/pod/annotations': 'status.sidecar.istio.io/port="15o20"\n' }, problems: [['annotation status.sidecar.istio.io/port (./etc/istio/pod/annotations)', /invalid status port "15o20"/]] },
  { name: 'an unreadable mesh config file', files: { 'etc/istio/config/mesh': null }, problems: [['file ./etc/istio/config/mesh', /failed to read mesh config file: EISDIR/]] },
  { name: 'a mesh config whose defaultConfig has a bad field', files: { 'etc/istio/config/mesh': 'defaultConfig:\n  drainDuration: soon\n' }, problems: [['file ./etc/istio/config/mesh (defaultConfig)', /drainDuration: bad Duration/]] },
  { name: 'a bad --log_output_level', args: ['--log_output_level=default:loud'], problems: [['flag --log_output_level', /invalid output level 'loud'/]] },
  { name: 'a non-numeric --concurrency', args: ['--concurrency=many'], problems: [['flag --concurrency', /invalid integer value "many"/]] },
  { name: 'a --restart-budget-window without unit', args: ['--restart-budget-window=10'], problems: [['flag --restart-budget-window', /missing unit in duration/]] },
  { name: 'a flag without its value', args: ['--domain'], problems: [['flag --domain', /flag needs an argument/]] },
  { name: 'an invalid proxy type', args: ['gateway'], problems: [['argument proxy type', /invalid proxy Type: gateway/]] },
  { name: 'malformed ISTIO_METAJSON_*', env: { ISTIO_METAJSON_EXTRA: '{"a":' }, problems: [['env ISTIO_METAJSON_EXTRA', /invalid JSON/]] },
  { name: 'node metadata of the wrong type', env: { ISTIO_META_DNS_AUTO_ALLOCATE: 'sometimes' }, problems: [['node metadata DNS_AUTO_ALLOCATE (from env ISTIO_META_DNS_AUTO_ALLOCATE)', /invalid boolean "sometimes"/]] },
  { name: 'a tracer the bootstrap cannot render', env: { PROXY_CONFIG: '{"tracing":{"stackdriver":{}}}' }, problems: [['bootstrap', /unable to process Stackdriver tracer: missing GCP Project/]] },
  {
    name: 'many problems at once, each reported',
    args: ['--concurrency=x', '--log_output_level=nope'],
    env: { PROXY_CONFIG: '{"drainDuration":"1.5s","discoveryAddress":"no-port"}', SECRET_TTL: '-1h', ISTIO_CPU_LIMIT: 'two' },
    files: { 'etc/istio/pod/labels': 'bad' + '="' },
    problems: [
      ['flag --concurrency', /invalid integer value "x"/],
      ['flag --log_output_level', /invalid output level 'nope'/],
      ['env ISTIO_CPU_LIMIT', /invalid integer "two"/],
      ['env SECRET_TTL', /must be positive/],
      ['file ./etc/istio/pod/labels', /failed to unquote/],
      ['effective ProxyConfig', /drain time only supports durations to seconds precision/],
      ['effective ProxyConfig', /invalid discovery address: unable to split "no-port"/],
    ],
  },
];

void describe('agent proxy: bad input stops start-up with one error listing every problem', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const run = async (args: readonly string[], env: Record<string, string>, files: Record<string, string | null> = {}) => {
    const cwd = await mkdtemp(join(tmpdir(), 'bad-input-'));
    dirs.push(cwd);
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(join(cwd, rel, content === null ? '' : '..'), { recursive: true });
      if (content !== null) await writeFile(join(cwd, rel), content);
    }
    const r = await runProc(AGENT_BIN, ['proxy', ...args], { cwd, env: { PATH: PEER_PATH, CLOUD_PLATFORM: 'none', ...env }, timeoutMs: 30_000 });
    return { ...r, cwd };
  };

  for (const c of CASES) {
    void it(c.name, async () => {
      const r = await run(['sidecar', '--bootstrap-only', ...(c.args ?? [])].filter((a, i, all) => !(a === 'sidecar' && all.includes('gateway'))), c.env ?? {}, c.files);
      assert.equal(r.code, 255, `exit code (stderr: ${r.stderr})`);
      const errLines = r.stderr.trim().split('\n');
      assert.match(errLines[0]!, /^Error: failed to get proxy config: invalid configuration/);
      const problems = errLines.length === 1 ? [errLines[0]!.replace(/^Error: failed to get proxy config: invalid configuration: /, '')] : errLines.slice(1).map((l) => l.replace(/^ {2}- /, ''));
      assert.equal(problems.length, c.problems.length, `problems: ${r.stderr}`);
      for (const [source, message] of c.problems) {
        assert.ok(
          problems.some((p) => p.startsWith(`${source}: `) && message.test(p.slice(source.length + 2))),
          `expected a problem "${source}: ${message}" in:\n${r.stderr}`,
        );
      }
      assert.ok(!existsSync(join(r.cwd, 'etc/istio/proxy/envoy-rev.json')), 'no bootstrap is written');
    });
  }

  void it('unknown flags are accepted with a warning naming each (as pilot-agent ignores them)', async () => {
    const r = await run(['sidecar', '--bootstrap-only', '--binaryPath', '/usr/bin/envoy', '--not-a-flag=1', '-z'], {});
    assert.equal(r.code, 0, r.stderr);
    for (const f of ['--binaryPath', '--not-a-flag', '-z']) assert.match(r.stdout, new RegExp(`\\twarn\\tignoring unknown flag ${f} `));
    assert.ok(existsSync(join(r.cwd, 'etc/istio/proxy/envoy-rev.json')));
  });

  void it('valid input logs FLAG lines and the effective config, and exits 0', async () => {
    const r = await run(['sidecar', '--bootstrap-only', '--concurrency=3'], { PROXY_CONFIG: 'drainDuration: 20s\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\tinfo\tFLAG: --concurrency="3"\n/);
    assert.match(r.stdout, /\tinfo\tFLAG: --proxyLogLevel="warning"\n/);
    assert.match(r.stdout, /\twarn\tlegacy --concurrency=3 flag detected; prefer to use ProxyConfig\n/);
    assert.match(r.stdout, /\tinfo\tEffective config: binaryPath: \/usr\/local\/bin\/envoy\nconcurrency: 3\nconfigPath: \.\/etc\/istio\/proxy\n/);
    assert.match(r.stdout, /drainDuration: 20s\n/);
    assert.equal(r.stderr, '');
  });
});
