// Property tests for the `agent istio-iptables` inputs after flag parsing: resolveConfig (ports, port
// lists, CIDR lists, marks, route tables, uids/gids, interfaces, DNS servers, the env-only settings and
// the host facts), the planners that turn a resolved config into rules, and the netip parser under them.
//   - any inputs: a config or problems, never an exception; every problem names the flag, variable or
//     host file it is about;
//   - a resolved config always plans (iptables and nftables) without throwing, and every value lands in
//     the payload as what it is: one payload line per rule (no value breaks a line), every -d/-s a
//     prefix, every port a port;
//   - valid inputs always resolve, and the CIDRs come out canonical (netip round trip).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString } from '../../test/helpers/config-arbitraries.js';
import { planNftRules, renderNftTransaction } from './nft.js';
import { addrString, IpParseError, parseAddr, parsePrefix, prefixString, type IpAddr } from './netip.js';
import { planRules } from './planner.js';
import { resolveConfig, type HostProbe, type RawIptablesInputs, type RawValue } from './resolve.js';
import { renderRestore, ruleWords } from './rules.js';

// ---- generators ----

const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b): IpAddr => ({ bytes: b, zone: '' }));
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b): IpAddr => ({ bytes: b, zone: '' }));
const prefix = fc.oneof(
  fc.tuple(ipv4, fc.integer({ min: 0, max: 32 })).map(([a, bits]) => `${addrString(a)}/${bits}`),
  fc.tuple(ipv6, fc.integer({ min: 0, max: 128 })).map(([a, bits]) => `${addrString(a)}/${bits}`),
);
const port = fc.integer({ min: 1, max: 65535 }).map(String);
const list = (item: fc.Arbitrary<string>) => fc.array(item, { maxLength: 4 }).map((a) => a.join(','));
const ws = fc.constantFrom('', ' ', '\t', '\n', '\r', '\v', '\u00a0');
const garbage = fc.oneof(anyString(10), fc.constantFrom('', ' ', '0', '-1', '65536', '99999999999', '080', ' 80 ', '80\n', '1e3', '0x50', '*', ',', ',,80,', 'abc'));

const v = <T>(arb: fc.Arbitrary<T>, source: string): fc.Arbitrary<RawValue<T>> => arb.map((value) => ({ value, source }));
/** Mostly `valid` (so that whole configs often resolve), sometimes garbage or valid with whitespace around. */
const validOr = (valid: fc.Arbitrary<string>) => fc.oneof({ weight: 30, arbitrary: valid }, { weight: 1, arbitrary: garbage }, { weight: 1, arbitrary: fc.tuple(ws, valid, ws).map((a) => a.join('')) });
const mostly = <T>(valid: fc.Arbitrary<T>, bad: fc.Arbitrary<T>) => fc.oneof({ weight: 30, arbitrary: valid }, { weight: 1, arbitrary: bad });

const rawInputs: fc.Arbitrary<RawIptablesInputs> = fc.record({
  proxyPort: v(validOr(port), 'flag --envoy-port'),
  inboundCapturePort: v(validOr(port), 'env INBOUND_CAPTURE_PORT'),
  inboundTunnelPort: v(validOr(port), 'flag --inbound-tunnel-port'),
  proxyUID: v(validOr(list(fc.oneof(fc.nat().map(String), fc.constantFrom('istio-proxy', 'nobody', 'a$', '4294967295')))), 'env PROXY_UID'),
  proxyGID: v(validOr(list(fc.nat().map(String))), 'flag --proxy-gid'),
  inboundInterceptionMode: v(mostly(fc.constantFrom('', 'REDIRECT', 'TPROXY'), garbage), 'env ISTIO_INBOUND_INTERCEPTION_MODE'),
  inboundPortsInclude: v(validOr(fc.oneof(fc.constant('*'), list(port))), 'flag --istio-inbound-ports'),
  inboundPortsExclude: v(validOr(list(port)), 'env ISTIO_LOCAL_EXCLUDE_PORTS'),
  excludeInterfaces: v(validOr(list(fc.constantFrom('eth0', 'veth+', 'lo', 'wg0', 'a.b-c_d'))), 'flag --istio-exclude-interfaces'),
  outboundIPRangesInclude: v(validOr(fc.oneof(fc.constant('*'), list(prefix))), 'env ISTIO_SERVICE_CIDR'),
  outboundIPRangesExclude: v(validOr(list(prefix)), 'flag --istio-service-exclude-cidr'),
  outboundPortsInclude: v(validOr(list(port)), 'flag --istio-outbound-ports'),
  outboundPortsExclude: v(validOr(list(port)), 'env ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE'),
  rerouteVirtualInterfaces: v(validOr(list(fc.constantFrom('eth1', 'kubevirt0'))), 'env KUBE_VIRT_INTERFACES'),
  inboundTProxyMark: v(validOr(fc.nat().map(String)), 'flag --istio-inbound-tproxy-mark'),
  inboundTProxyRouteTable: v(validOr(fc.integer({ min: 1, max: 252 }).map(String)), 'env ISTIO_INBOUND_TPROXY_ROUTE_TABLE'),
  dryRun: fc.boolean(),
  iptablesProbePort: v(mostly(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(-1, 65536, 1.5, NaN, Infinity)), 'env IPTABLES_PROBE_PORT'),
  probeTimeoutMs: v(mostly(fc.nat(), fc.constantFrom(-1, NaN, Infinity, -Infinity)), 'flag --probe-timeout'),
  skipRuleApply: fc.boolean(),
  runValidation: fc.boolean(),
  redirectDNS: fc.boolean(),
  dropInvalid: fc.boolean(),
  dualStack: fc.boolean(),
  captureAllDNS: fc.boolean(),
  networkNamespace: anyString(8),
  cniMode: fc.boolean(),
  reconcile: fc.boolean(),
  cleanupOnly: fc.boolean(),
  forceApply: fc.boolean(),
  nativeNftables: fc.boolean(),
  forceIptablesBinary: v(mostly(fc.constantFrom('', 'legacy', 'nft'), garbage), 'env FORCE_IPTABLES_BINARY'),
  ipv6: fc.option(v(fc.boolean(), 'flag --ipv6'), { nil: undefined }),
  dnsServers: fc.option(v(validOr(list(fc.oneof(fc.oneof(ipv4, ipv6).map(addrString), fc.constantFrom('fe80::1%eth0', '::ffff:1.2.3.4')))), 'env IPTABLES_DNS_SERVERS'), { nil: undefined }),
});

const ENV_SOURCES = ['env ISTIO_OUTBOUND_OWNER_GROUPS', 'env ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', 'env ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR'];
const env = fc.record(
  {
    ISTIO_OUTBOUND_OWNER_GROUPS: mostly(fc.constant('*'), validOr(list(fc.oneof(fc.nat().map(String), fc.constant('grp'))))),
    ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: validOr(list(fc.nat().map(String))),
    ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: mostly(fc.constantFrom('127.0.0.1/32', '127.0.0.0/8', '127.0.0.2/24'), fc.oneof(fc.constantFrom('127.0.0.1/7', '10.0.0.1/32', '::1/128'), garbage)),
    ENVOY_USER: mostly(fc.constant('istio-proxy'), anyString(6)),
  },
  { requiredKeys: [] },
);
const host = fc
  .record({
    addrs: fc.array(fc.oneof(fc.oneof(ipv4, ipv6).map(addrString), fc.constantFrom('127.0.0.1', '::1', 'fe80::1%eth0', 'garbage')), { minLength: 1, maxLength: 4 }),
    passwd: fc.option(fc.oneof(anyString(40), fc.constant('istio-proxy:x:1337:1337::/:/bin/false\n')), { nil: undefined }),
    resolv: fc.option(fc.oneof(anyString(40), list(fc.oneof(ipv4, ipv6).map(addrString)).map((s) => s.split(',').map((x) => `nameserver ${x}`).join('\n'))), { nil: undefined }),
  })
  .map(
    ({ addrs, passwd, resolv }): HostProbe => ({
      localAddrs: () => addrs.map((address, i) => ({ ifname: `if${i}`, address })),
      readFile: (p) => {
        const t = p === '/etc/passwd' ? passwd : p === '/etc/resolv.conf' ? resolv : undefined;
        if (t === undefined) throw new Error(`ENOENT: ${p}`);
        return t;
      },
    }),
  );

function rawSources(raw: RawIptablesInputs): Set<string> {
  const out = new Set<string>();
  for (const x of Object.values(raw)) if (x && typeof x === 'object' && 'source' in x) out.add((x as RawValue<unknown>).source);
  return out;
}

/** Checks the payloads of a plan: one line per rule, addresses are prefixes, ports are ports. */
function assertPayloads(cfg: NonNullable<ReturnType<typeof resolveConfig>['config']>): void {
  const plan = planRules(cfg);
  for (const fam of ['v4', 'v6'] as const) {
    const rules = plan.rules.rules(fam);
    const text = renderRestore(rules);
    const ruleLines = text.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith('-I '));
    assert.equal(ruleLines.length, rules.length, 'a value broke a payload line');
    for (const r of rules) {
      const words = ruleWords(r.params);
      words.forEach((w, i) => {
        const next = words[i + 1];
        if ((w === '-d' || w === '-s') && next !== undefined) parsePrefix(next);
        if (['--dport', '--sport', '--to-ports', '--to-port', '--on-port'].includes(w) && next !== undefined) assert.ok(/^\d{1,5}$/.test(next) && Number(next) <= 65535, `${w} ${next}`);
      });
    }
  }
  const nft = renderNftTransaction(planNftRules(cfg), cfg.cleanupOnly);
  assert.ok(!nft.includes('\r'), 'nft payload has a CR');
}

void describe('istio-iptables: resolveConfig and the planners', () => {
  void it('any inputs: a config, or problems naming their flag, variable or host file', () => {
    let resolved = 0;
    fc.assert(
      fc.property(rawInputs, env, host, (raw, e, h) => {
        const r = resolveConfig(raw, e, h);
        if (r.config) {
          resolved++;
          assert.deepEqual(r.issues, []);
          assertPayloads(r.config);
          return;
        }
        assert.ok(r.issues.length > 0);
        const known = new Set([...rawSources(raw), ...ENV_SOURCES, 'host addresses', 'file /etc/resolv.conf']);
        for (const i of r.issues) {
          assert.ok(known.has(i.source), `unexpected source ${i.source}`);
          assert.ok(i.message.length > 0 && i.message.length < 400, i.message);
        }
      }),
      { numRuns: 5000 },
    );
    assert.ok(resolved > 100, `only ${resolved} configs resolved`);
  });

  void it('valid inputs always resolve, with the CIDRs printed canonically', () => {
    const valid = fc.record({
      proxyPort: port,
      inboundPorts: fc.oneof(fc.constant('*'), list(port)),
      include: fc.oneof(fc.constant('*'), list(prefix)),
      exclude: list(prefix),
      mark: fc.nat().map(String),
      table: fc.integer({ min: 1, max: 252 }).map(String),
      mode: fc.constantFrom('', 'REDIRECT', 'TPROXY'),
      ipv6: fc.boolean(),
      dns: list(fc.oneof(ipv4, ipv6).map(addrString)),
    });
    fc.assert(
      fc.property(valid, (x) => {
        const raw = {
          ...baseRaw(),
          proxyPort: { value: x.proxyPort, source: 'flag --envoy-port' },
          inboundPortsInclude: { value: x.inboundPorts, source: 'flag --istio-inbound-ports' },
          outboundIPRangesInclude: { value: x.include, source: 'flag --istio-service-cidr' },
          outboundIPRangesExclude: { value: x.exclude, source: 'flag --istio-service-exclude-cidr' },
          inboundTProxyMark: { value: x.mark, source: 'flag --istio-inbound-tproxy-mark' },
          inboundTProxyRouteTable: { value: x.table, source: 'flag --istio-inbound-tproxy-route-table' },
          inboundInterceptionMode: { value: x.mode, source: 'flag --istio-inbound-interception-mode' },
          ipv6: { value: x.ipv6, source: 'flag --ipv6' },
          redirectDNS: true,
          dnsServers: { value: x.dns, source: 'flag --dns-servers' },
        };
        const r = resolveConfig(raw, {}, { localAddrs: () => [], readFile: () => 'istio-proxy:x:1337:1337::/:/bin/false\n' });
        assert.deepEqual(r.issues, []);
        assertPayloads(r.config!);
        // every excluded CIDR reaches the rules in netip's canonical form
        const text = renderRestore([...planRules(r.config!).rules.rules('v4'), ...planRules(r.config!).rules.rules('v6')]);
        for (const c of x.exclude.split(',').filter((s) => s !== '')) {
          const canon = prefixString(parsePrefix(c));
          if (c.includes(':') ? x.ipv6 : true) assert.ok(text.includes(` ${canon} `) || text.includes(` ${canon}\n`), `${canon} missing`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

void describe('istio-iptables: long lists', () => {
  void it('20,000 ports and 10,000 CIDRs resolve and plan in linear time; one bad item is named', () => {
    const ports = Array.from({ length: 20_000 }, (_, i) => String((i % 65535) + 1)).join(',');
    const cidrs = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`).join(',');
    const raw = { ...baseRaw(), ipv6: { value: false, source: 'flag --ipv6' }, outboundPortsExclude: { value: ports, source: 'env ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE' }, outboundIPRangesExclude: { value: cidrs, source: 'flag --istio-service-exclude-cidr' } };
    const r = resolveConfig(raw, {}, { localAddrs: () => [], readFile: () => '' });
    assert.deepEqual(r.issues, []);
    assert.ok(planRules(r.config!).rules.rules('v4').length > 50_000);
    const bad = resolveConfig({ ...raw, outboundPortsExclude: { value: `${ports},x`, source: 'env ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE' } }, {}, { localAddrs: () => [], readFile: () => '' });
    assert.deepEqual(bad.issues.map((i) => i.source), ['env ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE']);
    assert.ok(bad.issues[0]!.message.length < 400);
  });
});

void describe('netip (Go net/netip)', () => {
  void it('any text: an address or IpParseError; a prefix or an Error naming the input', () => {
    const addrSoup = fc.array(fc.constantFrom('1', '0', '255', '256', '00', 'ff', 'ffff', '12345', ':', '::', '.', '%', 'eth0', '/', '32', '128', '033'), { maxLength: 12 }).map((a) => a.join(''));
    fc.assert(
      fc.property(fc.oneof(addrSoup, anyString(20)), (s) => {
        try {
          const a = parseAddr(s);
          assert.ok(a.bytes.length === 4 || a.bytes.length === 16);
        } catch (e) {
          assert.ok(e instanceof IpParseError, String(e));
        }
        try {
          const p = parsePrefix(s);
          assert.ok(p.bits >= 0 && p.bits <= p.addr.bytes.length * 8);
        } catch (e) {
          assert.ok(e instanceof Error && e.message.startsWith(`netip.ParsePrefix(${JSON.stringify(s)}): `), String(e));
        }
      }),
      { numRuns: 5000 },
    );
  });

  void it('printed addresses and prefixes parse back to the same bytes, zone and bits', () => {
    fc.assert(
      fc.property(fc.oneof(ipv4, ipv6, fc.tuple(ipv6, fc.stringMatching(/^[a-z0-9]{1,6}$/)).map(([a, zone]) => ({ ...a, zone }))), (a) => {
        const back = parseAddr(addrString(a));
        assert.deepEqual([...back.bytes], [...a.bytes]);
        assert.equal(back.zone, a.zone);
        assert.equal(addrString(back), addrString(a));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(prefix, (p) => {
        assert.equal(prefixString(parsePrefix(p)), p);
      }),
      { numRuns: 3000 },
    );
  });
});

function baseRaw(): RawIptablesInputs {
  const d = <T>(value: T, name: string): RawValue<T> => ({ value, source: `default of --${name}` });
  return {
    proxyPort: d('15001', 'envoy-port'), inboundCapturePort: d('15006', 'inbound-capture-port'), inboundTunnelPort: d('15008', 'inbound-tunnel-port'),
    proxyUID: d('', 'proxy-uid'), proxyGID: d('', 'proxy-gid'), inboundInterceptionMode: d('', 'istio-inbound-interception-mode'),
    inboundPortsInclude: d('', 'istio-inbound-ports'), inboundPortsExclude: d('', 'istio-local-exclude-ports'),
    excludeInterfaces: d('', 'istio-exclude-interfaces'), outboundIPRangesInclude: d('', 'istio-service-cidr'),
    outboundIPRangesExclude: d('', 'istio-service-exclude-cidr'), outboundPortsInclude: d('', 'istio-outbound-ports'),
    outboundPortsExclude: d('', 'istio-local-outbound-ports-exclude'), rerouteVirtualInterfaces: d('', 'kube-virt-interfaces'),
    inboundTProxyMark: d('1337', 'istio-inbound-tproxy-mark'), inboundTProxyRouteTable: d('133', 'istio-inbound-tproxy-route-table'),
    dryRun: true, iptablesProbePort: d(15002, 'iptables-probe-port'), probeTimeoutMs: d(5000, 'probe-timeout'),
    skipRuleApply: false, runValidation: false, redirectDNS: false, dropInvalid: false, dualStack: false, captureAllDNS: false,
    networkNamespace: '', cniMode: false, reconcile: false, cleanupOnly: false, forceApply: false, nativeNftables: false,
    forceIptablesBinary: d('', 'force-iptables-binary'),
  };
}
