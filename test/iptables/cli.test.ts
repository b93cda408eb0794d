// `agent istio-iptables` flag/env handling, through the built CLI in dry-run (no host changes).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AGENT_BIN } from '../helpers/peers.js';

function agent(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(AGENT_BIN, ['istio-iptables', ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

const BASE = ['--dry-run', '--ipv6=false', '-u', '1337', '-g', '1337'];

void describe('agent istio-iptables flags and environment', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'matest-iptcli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('lists every pilot-agent flag with its short form in --help', async () => {
    const r = await agent(['--help']);
    assert.equal(r.code, 0);
    for (const [s, l] of [['p', 'envoy-port'], ['z', 'inbound-capture-port'], ['e', 'inbound-tunnel-port'], ['u', 'proxy-uid'], ['g', 'proxy-gid'], ['m', 'istio-inbound-interception-mode'], ['b', 'istio-inbound-ports'], ['d', 'istio-local-exclude-ports'], ['c', 'istio-exclude-interfaces'], ['i', 'istio-service-cidr'], ['x', 'istio-service-exclude-cidr'], ['q', 'istio-outbound-ports'], ['o', 'istio-local-outbound-ports-exclude'], ['k', 'kube-virt-interfaces'], ['t', 'istio-inbound-tproxy-mark'], ['r', 'istio-inbound-tproxy-route-table'], ['n', 'dry-run']])
      assert.match(r.stdout, new RegExp(`-${s}, --${l}\\b`));
    for (const l of ['iptables-probe-port', 'probe-timeout', 'skip-rule-apply', 'run-validation', 'redirect-dns', 'capture-all-dns', 'drop-invalid', 'dual-stack', 'network-namespace', 'cni-mode', 'reconcile', 'cleanup-only', 'force-apply', 'native-nftables', 'force-iptables-binary', 'ipv6', 'dns-servers'])
      assert.match(r.stdout, new RegExp(`--${l}\\b`));
  });

  void it('applies env bindings like pilot-agent: aliases override, the flag wins, unparsable values are ignored', async () => {
    const dns = ['--dns-servers=10.96.0.10'];
    const alias = await agent([...BASE, ...dns], { REDIRECT_DNS: 'false', ISTIO_META_DNS_CAPTURE: 'true' });
    assert.equal(alias.code, 0, alias.stderr);
    assert.match(alias.stdout, /-A ISTIO_OUTPUT_DNS -p udp --dport 53 -d 10.96.0.10\/32 -j REDIRECT --to-port 15053/);
    const flagWins = await agent([...BASE, ...dns, '--redirect-dns=false'], { ISTIO_META_DNS_CAPTURE: 'true' });
    assert.doesNotMatch(flagWins.stdout, /ISTIO_OUTPUT_DNS/);
    const ignored = await agent([...BASE, ...dns], { REDIRECT_DNS: 'yes' });
    assert.equal(ignored.code, 0);
    assert.doesNotMatch(ignored.stdout, /ISTIO_OUTPUT_DNS/);
    assert.match(ignored.stderr, /ignoring env REDIRECT_DNS="yes"/);
    const viaEnv = await agent(['--dry-run', '--ipv6=false'], { PROXY_UID: '3', ISTIO_INBOUND_PORTS: '8080', INVALID_DROP: 'true', ISTIO_OUTBOUND_OWNER_GROUPS: 'java' });
    assert.match(viaEnv.stdout, /--uid-owner 3 -j RETURN/);
    assert.match(viaEnv.stdout, /--gid-owner 3 -j RETURN/, 'gid defaults to the uid');
    assert.match(viaEnv.stdout, /-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT/);
    assert.match(viaEnv.stdout, /-A ISTIO_DROP -j DROP/);
    assert.match(viaEnv.stdout, /-A ISTIO_OUTPUT -m owner ! --gid-owner java -j RETURN/);
  });

  void it('writes DRY_RUN_FILE_PATH like pilot-agent (same records, rewritten from the start, not truncated)', async () => {
    const file = join(dir, 'dry.txt');
    writeFileSync(file, `${'x'.repeat(5000)}\nTAIL\n`);
    const r = await agent([...BASE, '-b', '*'], { DRY_RUN_FILE_PATH: file });
    assert.equal(r.code, 0, r.stderr);
    const content = readFileSync(file, 'utf8');
    assert.ok(content.startsWith(r.stdout));
    assert.ok(content.endsWith('TAIL\n'));
    assert.match(r.stdout, /^iptables-save\nip6tables-save\n\* nat\n/);
    assert.match(r.stdout, /COMMIT\niptables-save\n$/);
  });

  void it('prints nothing with --skip-rule-apply and only cleanup commands with --cleanup-only', async () => {
    const skip = await agent([...BASE, '--skip-rule-apply']);
    assert.equal(skip.code, 0);
    assert.equal(skip.stdout, '');
    const clean = await agent([...BASE, '-b', '*', '--cleanup-only']);
    assert.equal(clean.code, 0);
    assert.match(clean.stdout, /^iptables-save\nip6tables-save\niptables -t nat -D /);
    assert.match(clean.stdout, /\niptables -t nat -X ISTIO_REDIRECT\niptables-save\n$/);
  });
});
