// `agent istio-iptables` applied for real, proven with TCP/UDP traffic between two network namespaces.
// Needs root (ip netns, iptables). Every namespace, process and temp dir is removed in `after`.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NetnsPair, POD_IP, REMOTE_IP, REMOTE_IP2, REMOTE_IP6, sh } from './netns-helpers.js';

/** The flags Istio's injector passes to istio-init by default. */
const INJECTOR_DEFAULTS = ['-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020'];
const APP_UID = 1000;
const PROXY_UID = 1337;

/** Pre-existing user rules in all four tables: they must survive every run untouched. */
function addBaseline(ns: string, bin = 'iptables-restore'): void {
  sh('ip', ['netns', 'exec', ns, bin, '--noflush'], [
    '*filter', '-N USER_FILTER', '-A USER_FILTER -p udp --dport 9 -j ACCEPT', '-A INPUT -p tcp --dport 7 -j ACCEPT', 'COMMIT',
    '*nat', '-A POSTROUTING -d 198.51.100.7/32 -j RETURN', 'COMMIT',
    '*mangle', '-A PREROUTING -d 198.51.100.8/32 -j RETURN', 'COMMIT',
    '*raw', '-A OUTPUT -d 198.51.100.9/32 -j RETURN', 'COMMIT', '',
  ].join('\n'));
}

function ipRules(ns: string): string {
  return [['-4', 'rule', 'list'], ['-6', 'rule', 'list'], ['-4', 'route', 'show', 'table', '133'], ['-6', 'route', 'show', 'table', '133']]
    .map((a) => {
      try {
        return sh('ip', ['-n', ns, ...a]);
      } catch {
        return ''; // ip fails on a table that never existed; an empty table prints nothing either
      }
    })
    .join('');
}

void describe('istio-iptables in network namespaces: REDIRECT mode', () => {
  let net: NetnsPair;
  let baseline: string;

  before(async () => {
    net = await NetnsPair.create();
    addBaseline(net.pod);
    baseline = net.save();
    await net.listen(net.pod, 'pod', ['tcp:15001', 'tcp:15006', 'tcp:15020', 'tcp:15053', 'udp:15053', 'tcp:8080']);
    await net.listen(net.remote, 'remote', ['tcp:8080', 'tcp:9090', 'tcp:53', 'udp:53']);
  });
  after(async () => {
    await net?.destroy();
  });

  void it('captures with the injector defaults, re-runs idempotently and cleans up exactly', () => {
    // before any rule: the app reaches the remote directly
    assert.match(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply ?? '', /^remote:8080 /);

    const r = net.agent(INJECTOR_DEFAULTS);
    assert.equal(r.code, 0, r.stderr);
    const once = net.save();
    assert.match(once, /-A OUTPUT -j ISTIO_OUTPUT/);

    // outbound from an app uid goes to Envoy's outbound port, with the original destination kept
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `pod:15001 orig=${REMOTE_IP}:8080`);
    // the proxy's own traffic (uid 1337) goes straight out
    assert.equal(net.client(net.pod, PROXY_UID, 'tcp', REMOTE_IP, 8080).reply, `remote:8080 orig=${REMOTE_IP}:8080`);
    // inbound to an application port arrives at 15006
    assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 8080).reply, `pod:15006 orig=${POD_IP}:8080`);
    // excluded inbound port (-d 15020) bypasses capture
    assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 15020).reply, `pod:15020 orig=${POD_IP}:15020`);
    // no DNS capture without --redirect-dns: UDP/53 reaches the remote resolver
    assert.equal(net.client(net.pod, APP_UID, 'udp', REMOTE_IP, 53).reply, 'remote:53');

    // running twice = running once
    const again = net.agent(INJECTOR_DEFAULTS);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(net.save(), once);
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `pod:15001 orig=${REMOTE_IP}:8080`);

    // cleanup-only restores exactly the rules that were there before
    const c = net.agent([...INJECTOR_DEFAULTS, '--cleanup-only']);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(net.save(), baseline);
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `remote:8080 orig=${REMOTE_IP}:8080`);
  });

  void it('excluded outbound ports and CIDRs bypass capture; --redirect-dns sends DNS to 15053', () => {
    const flags = [...INJECTOR_DEFAULTS, '-o', '9090', '-x', `${REMOTE_IP2}/32`, '--redirect-dns', `--dns-servers=${REMOTE_IP}`];
    const r = net.agent(flags);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `pod:15001 orig=${REMOTE_IP}:8080`);
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 9090).reply, `remote:9090 orig=${REMOTE_IP}:9090`);
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP2, 8080).reply, `remote:8080 orig=${REMOTE_IP2}:8080`);
    assert.equal(net.client(net.pod, APP_UID, 'udp', REMOTE_IP, 53).reply, 'pod:15053');
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 53).reply, `pod:15053 orig=${REMOTE_IP}:53`);
    // the agent's own upstream DNS queries (uid 1337) are not captured
    assert.equal(net.client(net.pod, PROXY_UID, 'udp', REMOTE_IP, 53).reply, 'remote:53');

    // --reconcile to the defaults: same rules as a fresh default apply (DNS chains gone)
    const rec = net.agent([...INJECTOR_DEFAULTS, '--reconcile']);
    assert.equal(rec.code, 0, rec.stderr);
    const reconciled = net.save();
    assert.doesNotMatch(reconciled, /ISTIO_OUTPUT_DNS|9090|198\.51\.100\.9.*ISTIO/);
    assert.equal(net.client(net.pod, APP_UID, 'udp', REMOTE_IP, 53).reply, 'remote:53');
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 9090).reply, `pod:15001 orig=${REMOTE_IP}:9090`);
    assert.equal(net.agent([...INJECTOR_DEFAULTS, '--cleanup-only']).code, 0);
    assert.equal(net.save(), baseline);
    assert.equal(net.agent(INJECTOR_DEFAULTS).code, 0);
    assert.equal(net.save(), reconciled, 'reconciled rules differ from a fresh apply');
    assert.equal(net.agent([...INJECTOR_DEFAULTS, '--cleanup-only']).code, 0);
    assert.equal(net.save(), baseline);
  });

  void it('rejects bad flags with a message naming the flag and changes nothing', () => {
    const before = net.save();
    const rules = ipRules(net.pod);
    const withoutInbound = INJECTOR_DEFAULTS.filter((f, i, a) => f !== '-b' && a[i - 1] !== '-b');
    const cases: Array<[string[], RegExp, Record<string, string>?]> = [
      [[...INJECTOR_DEFAULTS, '-p', '70000'], /--envoy-port/],
      [[...INJECTOR_DEFAULTS, '-z', 'abc'], /--inbound-capture-port/],
      [[...INJECTOR_DEFAULTS, '-i', '10.0.0.0/33'], /--istio-service-cidr/],
      [[...INJECTOR_DEFAULTS, '-x', '*'], /--istio-service-exclude-cidr/],
      [[...INJECTOR_DEFAULTS, '-x', '10.1.2.3'], /--istio-service-exclude-cidr/],
      [[...INJECTOR_DEFAULTS, '-m', 'FOO'], /--istio-inbound-interception-mode/],
      [[...INJECTOR_DEFAULTS, '-b', '80,http'], /--istio-inbound-ports/],
      [[...INJECTOR_DEFAULTS, '-d', '15090,99999'], /--istio-local-exclude-ports/],
      [[...INJECTOR_DEFAULTS, '-u', '1337 -j ACCEPT'], /--proxy-uid/],
      [[...INJECTOR_DEFAULTS, '-c', 'eth0 bad'], /--istio-exclude-interfaces/],
      [[...INJECTOR_DEFAULTS, '-t', '-1'], /--istio-inbound-tproxy-mark/],
      [[...INJECTOR_DEFAULTS, '-r', 'main'], /--istio-inbound-tproxy-route-table/],
      [[...INJECTOR_DEFAULTS, '--force-iptables-binary=nftables'], /--force-iptables-binary/],
      [[...INJECTOR_DEFAULTS, '--probe-timeout=soon'], /--probe-timeout/],
      [[...INJECTOR_DEFAULTS, '--iptables-probe-port=70000'], /--iptables-probe-port/],
      [[...INJECTOR_DEFAULTS, '--redirect-dns', '--dns-servers=1.2.3.4,not-an-ip'], /--dns-servers/],
      [[...INJECTOR_DEFAULTS, '--no-such-flag'], /unknown flag: --no-such-flag/],
      [INJECTOR_DEFAULTS, /ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR/, { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '10.0.0.1/32' }],
      [withoutInbound, /env ISTIO_INBOUND_PORTS/, { ISTIO_INBOUND_PORTS: '1,2,x' }],
    ];
    for (const [args, msg, env] of cases) {
      const r = net.agent(args, env ? { env } : {});
      const what = `${env ? JSON.stringify(env) : ''} ${args.slice(INJECTOR_DEFAULTS.length).join(' ')}`;
      assert.notEqual(r.code, 0, `accepted ${what}`);
      assert.match(r.stderr, msg, `message for ${what}`);
      assert.equal(net.save(), before, `rules changed by ${what}`);
    }
    assert.equal(ipRules(net.pod), rules);
  });

  void it('leaves no ISTIO_ chains when applying fails half-way, naming the failing command', () => {
    // a broken ip6tables-nft-restore: IPv4 is applied first, then IPv6 fails
    const fake = mkdtempSync(join(tmpdir(), 'matest-fakebin-'));
    try {
      writeFileSync(join(fake, 'ip6tables-nft-restore'), '#!/bin/sh\ncat >/dev/null\necho "ip6tables-restore: line 4 failed: simulated" >&2\nexit 1\n');
      chmodSync(join(fake, 'ip6tables-nft-restore'), 0o755);
      const v6before = net.save('ip6tables-save');
      const r = net.agent([...INJECTOR_DEFAULTS, '--ipv6=true'], { env: { PATH: `${fake}:${process.env['PATH'] ?? ''}` } });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /ip6tables-nft-restore --noflush.*simulated/);
      assert.equal(net.save(), baseline);
      assert.equal(net.save('ip6tables-save'), v6before);
    } finally {
      rmSync(fake, { recursive: true, force: true });
    }
  });
});

void describe('istio-iptables in network namespaces: TPROXY mode', () => {
  let net: NetnsPair;
  let baseline: string;
  let baseRules: string;

  before(async () => {
    net = await NetnsPair.create();
    addBaseline(net.pod);
    baseline = net.save();
    baseRules = ipRules(net.pod);
    // the inbound listener must be transparent to accept TPROXY'd connections, as Envoy's is
    await net.listen(net.pod, 'pod', ['tcp:15001', 'tcpt:15006', 'tcp:15020']);
    await net.listen(net.remote, 'remote', ['tcp:8080']);
  });
  after(async () => {
    await net?.destroy();
  });

  void it('intercepts inbound with TPROXY and policy routing, idempotently, and cleans up', () => {
    const flags = INJECTOR_DEFAULTS.map((f) => (f === 'REDIRECT' ? 'TPROXY' : f));
    const r = net.agent(flags);
    assert.equal(r.code, 0, r.stderr);
    assert.match(sh('ip', ['-n', net.pod, 'rule', 'list']), /fwmark 0x539 lookup 133/);
    assert.match(sh('ip', ['-n', net.pod, 'route', 'show', 'table', '133']), /local default dev lo/);

    // inbound: the transparent listener on 15006 sees the original destination as its local address
    assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 8080).reply, `pod:15006 orig=${POD_IP}:8080`);
    assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 8080).reply, `pod:15006 orig=${POD_IP}:8080`);
    assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 15020).reply, `pod:15020 orig=${POD_IP}:15020`);
    // outbound capture is REDIRECT in both modes
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `pod:15001 orig=${REMOTE_IP}:8080`);
    assert.equal(net.client(net.pod, PROXY_UID, 'tcp', REMOTE_IP, 8080).reply, `remote:8080 orig=${REMOTE_IP}:8080`);

    const once = net.save();
    const routing = ipRules(net.pod);
    assert.match(once, /-A ISTIO_TPROXY .*-j TPROXY --on-port 15006/);
    const again = net.agent(flags);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(net.save(), once);
    assert.equal(ipRules(net.pod), routing);

    const c = net.agent([...flags, '--cleanup-only']);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(net.save(), baseline);
    assert.equal(ipRules(net.pod), baseRules);
  });
});

void describe('istio-iptables in network namespaces: backends, IPv6, validation', () => {
  let net: NetnsPair;
  before(async () => {
    net = await NetnsPair.create({ ipv6: true });
  });
  after(async () => {
    await net?.destroy();
  });

  void it('uses the legacy backend when legacy rules already exist, and cleans up there', () => {
    addBaseline(net.remote, 'iptables-legacy-restore');
    const legacyBefore = net.save('iptables-legacy-save', net.remote);
    const nftBefore = net.save('iptables-nft-save', net.remote);
    const r = net.agent([...INJECTOR_DEFAULTS, '--ipv6=false'], { ns: net.remote });
    assert.equal(r.code, 0, r.stderr);
    assert.match(net.save('iptables-legacy-save', net.remote), /-A ISTIO_OUTPUT -j ISTIO_REDIRECT/);
    assert.doesNotMatch(net.save('iptables-nft-save', net.remote), /ISTIO_/);
    const again = net.agent([...INJECTOR_DEFAULTS, '--ipv6=false', '--log_output_level=default:debug'], { ns: net.remote });
    assert.match(again.stdout, /compatible residues/);
    assert.match(again.stdout, /iptables-legacy-save/);
    assert.equal(net.agent([...INJECTOR_DEFAULTS, '--ipv6=false', '--cleanup-only'], { ns: net.remote }).code, 0);
    assert.equal(net.save('iptables-legacy-save', net.remote), legacyBefore);
    assert.equal(net.save('iptables-nft-save', net.remote), nftBefore);
  });

  void it('captures IPv6 outbound when IPv6 is enabled', async () => {
    await net.listen(net.pod, 'pod6', ['tcp6:15001']);
    await net.listen(net.remote, 'remote6', ['tcp6:8080']);
    const r = net.agent([...INJECTOR_DEFAULTS, '--ipv6=true']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(net.save('ip6tables-save'), /-A ISTIO_OUTPUT -d ::1\/128 -j RETURN/);
    assert.match(sh('ip', ['-n', net.pod, '-6', 'addr', 'show', 'dev', 'lo']), /::6\/128/);
    assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP6, 8080).reply, `pod6:15001 orig=${REMOTE_IP6}:8080`);
    assert.equal(net.client(net.pod, PROXY_UID, 'tcp', REMOTE_IP6, 8080).reply, `remote6:8080 orig=${REMOTE_IP6}:8080`);
    assert.equal(net.agent([...INJECTOR_DEFAULTS, '--ipv6=true', '--cleanup-only']).code, 0);
    assert.doesNotMatch(net.save('ip6tables-save'), /ISTIO_/);
    assert.doesNotMatch(net.save('iptables-save'), /ISTIO_/);
    await net.stopListeners();
  });

  void it('--run-validation passes when capture works and exits 126 when it does not', () => {
    const applied = net.agent([...INJECTOR_DEFAULTS, '--ipv6=false']);
    assert.equal(applied.code, 0, applied.stderr);
    // the istio-validation container runs as the proxy user
    const ok = net.agent(['--skip-rule-apply', '--run-validation', '--ipv6=false', '-u', '1337', '--probe-timeout=5s'], { uid: PROXY_UID });
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, /Validation passed/);
    assert.equal(net.agent([...INJECTOR_DEFAULTS, '--ipv6=false', '--cleanup-only']).code, 0);
    const bad = net.agent(['--skip-rule-apply', '--run-validation', '--ipv6=false', '-u', '1337', '--probe-timeout=1500ms'], { uid: PROXY_UID });
    assert.equal(bad.code, 126);
    assert.match(bad.stderr, /iptables validation failed; workload is not ready for Istio/);
  });
});

void describe('istio-iptables in network namespaces: native nftables', () => {
  let net: NetnsPair;
  before(async () => {
    net = await NetnsPair.create();
    addBaseline(net.pod);
    await net.listen(net.pod, 'pod', ['tcp:15001', 'tcpt:15006', 'tcp:15020', 'udp:15053']);
    await net.listen(net.remote, 'remote', ['tcp:8080', 'udp:53']);
  });
  after(async () => {
    await net?.destroy();
  });

  const ruleset = () => sh('ip', ['netns', 'exec', net.pod, 'nft', 'list', 'ruleset']);

  for (const mode of ['REDIRECT', 'TPROXY'] as const) {
    void it(`captures with --native-nftables in ${mode} mode, re-runs idempotently and cleans up`, () => {
      const before = ruleset();
      const rules = ipRules(net.pod);
      const flags = [...INJECTOR_DEFAULTS.map((f) => (f === 'REDIRECT' ? mode : f)), '--native-nftables', '--redirect-dns', `--dns-servers=${REMOTE_IP}`];
      const r = net.agent(flags);
      assert.equal(r.code, 0, r.stderr);
      const once = ruleset();
      assert.match(once, /table inet istio-proxy-nat/);
      assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `pod:15001 orig=${REMOTE_IP}:8080`);
      assert.equal(net.client(net.pod, PROXY_UID, 'tcp', REMOTE_IP, 8080).reply, `remote:8080 orig=${REMOTE_IP}:8080`);
      assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 8080).reply, `pod:15006 orig=${POD_IP}:8080`);
      assert.equal(net.client(net.remote, 0, 'tcp', POD_IP, 15020).reply, `pod:15020 orig=${POD_IP}:15020`);
      assert.equal(net.client(net.pod, APP_UID, 'udp', REMOTE_IP, 53).reply, 'pod:15053');
      assert.equal(net.client(net.pod, PROXY_UID, 'udp', REMOTE_IP, 53).reply, 'remote:53');

      const again = net.agent(flags);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(ruleset().replace(/packets \d+ bytes \d+/g, ''), once.replace(/packets \d+ bytes \d+/g, ''));
      const c = net.agent([...flags, '--cleanup-only']);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(ruleset(), before);
      assert.equal(ipRules(net.pod), rules);
      assert.equal(net.client(net.pod, APP_UID, 'tcp', REMOTE_IP, 8080).reply, `remote:8080 orig=${REMOTE_IP}:8080`);
    });
  }
});
