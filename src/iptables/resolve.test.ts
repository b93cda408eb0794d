import assert from 'node:assert/strict';
import { it } from 'node:test';
import { detectHostIP, lookupUid, parseResolvConf, splitServersCanonical, splitServersVerbatim } from './host.js';
import { resolveConfig, type HostProbe, type RawIptablesInputs, type RawValue } from './resolve.js';

const dflt = <T>(value: T, name: string): RawValue<T> => ({ value, source: `default of --${name}` });
const flag = <T>(value: T, name: string): RawValue<T> => ({ value, source: `flag --${name}` });

function raw(over: Partial<RawIptablesInputs> = {}): RawIptablesInputs {
  return {
    proxyPort: dflt('15001', 'envoy-port'), inboundCapturePort: dflt('15006', 'inbound-capture-port'), inboundTunnelPort: dflt('15008', 'inbound-tunnel-port'),
    proxyUID: dflt('', 'proxy-uid'), proxyGID: dflt('', 'proxy-gid'), inboundInterceptionMode: dflt('', 'istio-inbound-interception-mode'),
    inboundPortsInclude: dflt('', 'istio-inbound-ports'), inboundPortsExclude: dflt('', 'istio-local-exclude-ports'),
    excludeInterfaces: dflt('', 'istio-exclude-interfaces'), outboundIPRangesInclude: dflt('', 'istio-service-cidr'),
    outboundIPRangesExclude: dflt('', 'istio-service-exclude-cidr'), outboundPortsInclude: dflt('', 'istio-outbound-ports'),
    outboundPortsExclude: dflt('', 'istio-local-outbound-ports-exclude'), rerouteVirtualInterfaces: dflt('', 'kube-virt-interfaces'),
    inboundTProxyMark: dflt('1337', 'istio-inbound-tproxy-mark'), inboundTProxyRouteTable: dflt('133', 'istio-inbound-tproxy-route-table'),
    dryRun: true, iptablesProbePort: dflt(15002, 'iptables-probe-port'), probeTimeoutMs: dflt(5000, 'probe-timeout'),
    skipRuleApply: false, runValidation: false, redirectDNS: false, dropInvalid: false, dualStack: false, captureAllDNS: false,
    networkNamespace: '', cniMode: false, reconcile: false, cleanupOnly: false, forceApply: false, nativeNftables: false,
    forceIptablesBinary: dflt('', 'force-iptables-binary'),
    ...over,
  };
}

function host(addrs: string[], files: Record<string, string> = {}): HostProbe & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    localAddrs: () => addrs.map((address, i) => ({ ifname: `if${i}`, address })),
    readFile: (p) => {
      reads.push(p);
      if (!(p in files)) throw new Error(`ENOENT: ${p}`);
      return files[p]!;
    },
  };
}

void it('detects IPv6 like pilot-agent: IPv4 addresses come first, link-local and loopback are skipped', () => {
  assert.deepEqual(detectHostIP([{ ifname: 'lo', address: '127.0.0.1' }, { ifname: 'eth0', address: 'fe80::1' }, { ifname: 'eth0', address: '2001:db8::1' }], false), { hostIP: '2001:db8::1', ipv6: true });
  assert.deepEqual(detectHostIP([{ ifname: 'eth0', address: '2001:db8::1' }, { ifname: 'eth1', address: '10.0.0.1' }], false), { hostIP: '10.0.0.1', ipv6: false });
  assert.deepEqual(detectHostIP([{ ifname: 'eth0', address: '10.0.0.1' }, { ifname: 'eth0', address: '2001:db8::1' }], true), { hostIP: '10.0.0.1', ipv6: true });
  assert.deepEqual(detectHostIP([{ ifname: 'eth0', address: '169.254.1.1' }, { ifname: 'eth0', address: '10.0.0.1' }], true), { hostIP: '10.0.0.1', ipv6: false });
  assert.throws(() => detectHostIP([{ ifname: 'lo', address: '::1' }, { ifname: 'eth0', address: 'fe80::2' }], true), /no valid local IP address found/);
});

void it('reads resolv.conf, user ids and explicit DNS lists', () => {
  assert.deepEqual(parseResolvConf('# c\nnameserver 1.1.1.1 # x\n  nameserver\t::127.0.0.53\nnameserver\nsearch a\n'), ['1.1.1.1', '::127.0.0.53']);
  assert.deepEqual(splitServersCanonical(['1.1.1.1', '::127.0.0.53', 'bogus', '::ffff:1.2.3.4']), { v4: ['1.1.1.1'], v6: ['::7f00:35', '::ffff:1.2.3.4'] });
  assert.deepEqual(splitServersVerbatim(',127.0.0.53,,::127.0.0.53,'), { v4: ['127.0.0.53'], v6: ['::127.0.0.53'] });
  assert.throws(() => splitServersVerbatim('1.2.3.4,dns.example'), /"dns.example" is not an IP address/);
  assert.equal(lookupUid('root:x:0:0::/root:/bin/sh\nistio-proxy:x:1337:1337::/:/bin/false\n', 'istio-proxy'), '1337');
  assert.equal(lookupUid('root:x:0:0::/root:/bin/sh\n', 'istio-proxy'), undefined);
});

void it('fills host inputs: uid from ENVOY_USER, gid from uid, IPv6 from addresses, DNS from resolv.conf', () => {
  const h = host(['10.1.1.1', '2001:db8::5'], { '/etc/passwd': 'envoy:x:101:101::/:/bin/false\n', '/etc/resolv.conf': 'nameserver 10.96.0.10\nnameserver fd00::a\n' });
  const r = resolveConfig(raw({ redirectDNS: true, dualStack: true }), { ENVOY_USER: 'envoy' }, h);
  assert.deepEqual(r.issues, []);
  assert.equal(r.config!.proxyUID, '101');
  assert.equal(r.config!.proxyGID, '101');
  assert.equal(r.config!.enableIPv6, true);
  assert.deepEqual([r.config!.dnsServersV4, r.config!.dnsServersV6], [['10.96.0.10'], ['fd00::a']]);

  const fallback = resolveConfig(raw(), {}, host(['10.1.1.1']));
  assert.equal(fallback.config!.proxyUID, '1337', 'istio-proxy missing: 1337');
  assert.equal(fallback.config!.enableIPv6, false);

  // explicit inputs: no detection, no resolv.conf read, servers verbatim
  const h2 = host([]);
  const ex = resolveConfig(raw({ redirectDNS: true, ipv6: flag(true, 'ipv6'), dnsServers: flag('::127.0.0.53', 'dns-servers') }), {}, h2);
  assert.equal(ex.config!.enableIPv6, true);
  assert.deepEqual(ex.config!.dnsServersV6, ['::127.0.0.53']);
  assert.ok(!h2.reads.includes('/etc/resolv.conf'));

  const none = resolveConfig(raw(), {}, host(['127.0.0.1']));
  assert.match(none.issues[0]!.message, /no valid local IP address found/);
});

void it('reports every bad value with the flag or variable it came from', () => {
  const r = resolveConfig(
    raw({
      proxyPort: flag('0', 'envoy-port'),
      inboundPortsInclude: { value: '80,x', source: 'env ISTIO_INBOUND_PORTS' },
      outboundIPRangesInclude: flag('10.0.0.0/8,*', 'istio-service-cidr'),
      outboundIPRangesExclude: flag('*', 'istio-service-exclude-cidr'),
      inboundInterceptionMode: flag('tproxy', 'istio-inbound-interception-mode'),
      excludeInterfaces: flag('eth0,bad name', 'istio-exclude-interfaces'),
      inboundTProxyRouteTable: flag('254', 'istio-inbound-tproxy-route-table'),
      forceIptablesBinary: flag('nftables', 'force-iptables-binary'),
    }),
    { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '10.0.0.1/32', ISTIO_OUTBOUND_OWNER_GROUPS: Array.from({ length: 65 }, (_, i) => String(i)).join(',') },
    host(['10.0.0.1']),
  );
  assert.equal(r.config, undefined);
  assert.deepEqual(r.issues.map((i) => i.source).sort(), [
    'env ISTIO_INBOUND_PORTS', 'env ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', 'env ISTIO_OUTBOUND_OWNER_GROUPS', 'flag --envoy-port', 'flag --force-iptables-binary',
    'flag --istio-exclude-interfaces', 'flag --istio-inbound-interception-mode', 'flag --istio-inbound-tproxy-route-table', 'flag --istio-service-cidr',
    'flag --istio-service-exclude-cidr',
  ]);
});
