// Deterministic generator of `istio-iptables --dry-run` invocations for the differential test against
// the Go pilot-agent: flags in all their spellings (long, short, attached, `=`), env bindings and aliases,
// env-only settings, and the host inputs (local addresses, resolv.conf) pilot-agent detects.

export type HostAddrs = 'v4' | 'v6' | 'v4v6' | 'none';

export interface HostSetup {
  readonly addrs: HostAddrs;
  /** resolv.conf content bind-mounted over /etc/resolv.conf. */
  readonly resolv: string;
}

export interface Combo {
  readonly id: number;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly host: HostSetup;
  /** Both implementations must reject it (only the failure is compared, not the transcript). */
  readonly invalid: boolean;
}

export const RESOLV_CONFS: readonly string[] = [
  'nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n',
  '# v4 and v6 servers; ::127.0.0.53 is re-printed as ::7f00:35\nnameserver 10.96.0.10\nnameserver fd00::10\nnameserver ::127.0.0.53\n',
  '# no nameserver at all\nsearch example.com\n',
  'nameserver 8.8.8.8 # trailing comment\n   nameserver   1.1.1.1\nnameserver not-an-ip\nnameserver 2001:4860:4860:0:0:0:0:8888\n',
  'nameserver 2001:4860:4860::8888\n',
];

/** mulberry32: small deterministic PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FlagDef {
  readonly long: string;
  readonly short?: string;
  /** Env variables bound to the flag (first = the flag's own, then aliases). */
  readonly env?: readonly string[];
  readonly values: readonly string[];
  readonly bool?: boolean;
  /** Probability of using the flag at all. */
  readonly p: number;
}

const FLAGS: readonly FlagDef[] = [
  { long: 'envoy-port', short: 'p', values: ['15001', '15011', '16001'], p: 0.5 },
  { long: 'inbound-capture-port', short: 'z', env: ['INBOUND_CAPTURE_PORT'], values: ['15006', '15016'], p: 0.4 },
  { long: 'inbound-tunnel-port', short: 'e', env: ['INBOUND_TUNNEL_PORT'], values: ['15008', '15018'], p: 0.3 },
  { long: 'proxy-uid', short: 'u', env: ['PROXY_UID'], values: ['1337', '3,4', '0', '', '1337,1338', 'nobody'], p: 0.8 },
  { long: 'proxy-gid', short: 'g', env: ['PROXY_GID'], values: ['1337', '1,2', '', '1337,'], p: 0.6 },
  { long: 'istio-inbound-interception-mode', short: 'm', env: ['ISTIO_INBOUND_INTERCEPTION_MODE'], values: ['REDIRECT', 'TPROXY', ''], p: 0.6 },
  { long: 'istio-inbound-ports', short: 'b', env: ['ISTIO_INBOUND_PORTS'], values: ['*', '', '80,8080', '9080', '31000,32000,'], p: 0.8 },
  { long: 'istio-local-exclude-ports', short: 'd', env: ['ISTIO_LOCAL_EXCLUDE_PORTS'], values: ['15090,15021,15020', '', '8000,', '22'], p: 0.6 },
  { long: 'istio-exclude-interfaces', short: 'c', env: ['ISTIO_EXCLUDE_INTERFACES'], values: ['eth9', 'not-istio-nic,eth7', ''], p: 0.3 },
  { long: 'istio-service-cidr', short: 'i', env: ['ISTIO_SERVICE_CIDR'], values: ['*', '', '10.0.0.0/8', '10.0.0.1/8,2001:db8::/32', '127.1.2.3/32', '2001:DB8:0:0::/64', '::ffff:10.0.0.0/104', '192.168.0.0/16,172.16.0.0/12'], p: 0.8 },
  { long: 'istio-service-exclude-cidr', short: 'x', env: ['ISTIO_SERVICE_EXCLUDE_CIDR'], values: ['', '1.1.0.0/16', '10.96.0.0/12,fd00::/8', '169.254.169.254/32', '::1/128'], p: 0.6 },
  { long: 'istio-outbound-ports', short: 'q', env: ['ISTIO_OUTBOUND_PORTS'], values: ['32000,31000', '', '443'], p: 0.3 },
  { long: 'istio-local-outbound-ports-exclude', short: 'o', env: ['ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE'], values: ['9090', '53,8443', ''], p: 0.3 },
  { long: 'kube-virt-interfaces', short: 'k', env: ['KUBE_VIRT_INTERFACES'], values: ['eth1,eth2', 'vnet0', ''], p: 0.3 },
  { long: 'istio-inbound-tproxy-mark', short: 't', env: ['ISTIO_INBOUND_TPROXY_MARK'], values: ['1337', '2048'], p: 0.3 },
  { long: 'istio-inbound-tproxy-route-table', short: 'r', env: ['ISTIO_INBOUND_TPROXY_ROUTE_TABLE'], values: ['133', '200'], p: 0.3 },
  { long: 'iptables-probe-port', env: ['IPTABLES_PROBE_PORT'], values: ['15002', '15012'], p: 0.2 },
  { long: 'probe-timeout', env: ['PROBE_TIMEOUT'], values: ['5s', '2s', '1m30s'], p: 0.2 },
  { long: 'redirect-dns', env: ['REDIRECT_DNS', 'ISTIO_META_DNS_CAPTURE'], values: ['true', 'false'], bool: true, p: 0.5 },
  { long: 'capture-all-dns', env: ['CAPTURE_ALL_DNS'], values: ['true', 'false'], bool: true, p: 0.3 },
  { long: 'drop-invalid', env: ['DROP_INVALID', 'INVALID_DROP'], values: ['true', 'false'], bool: true, p: 0.3 },
  { long: 'dual-stack', env: ['DUAL_STACK', 'ISTIO_DUAL_STACK'], values: ['true', 'false'], bool: true, p: 0.3 },
  { long: 'network-namespace', env: ['NETWORK_NAMESPACE'], values: ['/var/run/netns/pod1', ''], p: 0.15 },
  { long: 'cni-mode', env: ['CNI_MODE'], values: ['true', 'false'], bool: true, p: 0.15 },
  { long: 'reconcile', env: ['RECONCILE'], values: ['true', 'false'], bool: true, p: 0.2 },
  { long: 'cleanup-only', env: ['CLEANUP_ONLY'], values: ['true', 'false'], bool: true, p: 0.15 },
  { long: 'force-apply', env: ['FORCE_APPLY'], values: ['true', 'false'], bool: true, p: 0.15 },
  { long: 'force-iptables-binary', env: ['FORCE_IPTABLES_BINARY'], values: ['legacy', 'nft', ''], p: 0.15 },
  { long: 'skip-rule-apply', env: ['SKIP_RULE_APPLY'], values: ['true', 'false'], bool: true, p: 0.04 },
];

const ENV_ONLY: ReadonlyArray<[string, readonly string[], number]> = [
  ['ISTIO_OUTBOUND_OWNER_GROUPS', ['java,202', '', '*', '1000'], 0.15],
  ['ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', ['888,ftp', '', '65534'], 0.15],
  ['ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', ['127.0.0.1/8', '127.0.0.2/32', '127.0.0.1/32'], 0.15],
  ['ENVOY_USER', ['root', 'nobody', 'no-such-user-xyz'], 0.15],
];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

/** One flag occurrence in a random but valid spelling. */
function spell(r: () => number, f: FlagDef, value: string): string[] {
  if (f.bool) {
    const forms = value === 'true' ? [[`--${f.long}`], [`--${f.long}=true`], [`--${f.long}=1`]] : [[`--${f.long}=false`], [`--${f.long}=0`]];
    return pick(r, forms);
  }
  const forms: string[][] = [[`--${f.long}=${value}`], [`--${f.long}`, value]];
  if (f.short) {
    forms.push([`-${f.short}`, value]);
    if (value !== '') forms.push([`-${f.short}${value}`], [`-${f.short}=${value}`]);
  }
  return pick(r, forms);
}

function randomHost(r: () => number): HostSetup {
  return { addrs: pick(r, ['v4', 'v4', 'v6', 'v4v6'] as const), resolv: pick(r, RESOLV_CONFS) };
}

/** `count` valid combinations plus a fixed set of invalid ones, deterministic for a seed. */
export function generateCombos(seed: number, count: number): Combo[] {
  const r = rng(seed);
  const combos: Combo[] = [];
  for (let id = 0; id < count; id++) {
    const args: string[] = [];
    const env: Record<string, string> = {};
    // the dry-run switch itself, in its spellings
    const dry = pick(r, [['--dry-run'], ['-n'], ['--dry-run=true'], []]);
    if (dry.length) args.push(...dry);
    else env['DRY_RUN'] = 'true';
    // make sure every flag shows up: flag (id % FLAGS.length) is always present
    const forced = FLAGS[id % FLAGS.length]!;
    for (const f of FLAGS) {
      if (f !== forced && r() >= f.p) continue;
      if (f.long === 'skip-rule-apply' && f !== forced) continue;
      const value = pick(r, f.values);
      const viaEnv = f.env && r() < 0.3;
      if (viaEnv) {
        const name = pick(r, f.env!);
        env[name] = value;
        // sometimes a different value on the command line too (the flag must win)
        if (r() < 0.3) args.push(...spell(r, f, pick(r, f.values)));
        // sometimes the primary variable says the opposite of an alias (the alias must win)
        if (f.bool && f.env!.length > 1 && name !== f.env![0] && r() < 0.5) env[f.env![0]!] = value === 'true' ? 'false' : 'true';
      } else {
        args.push(...spell(r, f, value));
      }
    }
    // a boolean variable that does not parse is ignored by both
    if (r() < 0.05) env['REDIRECT_DNS'] = 'yes';
    for (const [name, values, p] of ENV_ONLY) if (r() < p) env[name] = pick(r, values);
    // --run-validation rarely, with a short timeout: with nothing applied it must fail with 126
    if (r() < 0.03) args.push('--run-validation', '--probe-timeout=300ms');
    combos.push({ id, args, env, host: randomHost(r), invalid: false });
  }
  const invalid: Array<[string[], Record<string, string>, HostAddrs?]> = [
    [['-x', '*'], {}],
    [['-i', '10.0.0.0/33'], {}],
    [['-x', '10.1.2.3'], {}],
    [['--force-iptables-binary=nftables'], {}],
    [[], { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '10.0.0.1/32' }],
    [[], { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/7' }],
    [['--no-such-flag'], {}],
    [['-u', '1337'], {}, 'none'],
    [['--probe-timeout=soon'], {}],
    [['--iptables-probe-port=70000'], {}],
    [[], { ISTIO_OUTBOUND_OWNER_GROUPS: Array.from({ length: 65 }, (_, i) => String(1000 + i)).join(',') }],
  ];
  invalid.forEach(([a, e, addrs], i) => {
    combos.push({ id: count + i, args: ['--dry-run', ...a], env: e, host: { addrs: addrs ?? 'v4', resolv: RESOLV_CONFS[0]! }, invalid: true });
  });
  return combos;
}

const DRY_TOKENS = new Set(['--dry-run', '-n', '--dry-run=true']);

/**
 * Combinations for `--native-nftables`. pilot-agent applies nftables rules even with --dry-run, so the
 * comparison is done on real rule sets: `goArgs` keep the dry-run switch, `args` (ours) drop it.
 */
export function generateNftCombos(seed: number, count: number): Array<Combo & { goArgs: readonly string[]; goEnv: Readonly<Record<string, string>> }> {
  const r = rng(seed ^ 0x5a5a5a5a);
  return generateCombos(seed, count)
    .filter((c) => !c.invalid)
    .map((c) => {
      const nft = pick(r, [['--native-nftables'], ['--native-nftables=true'], []]);
      const goEnv: Record<string, string> = { ...c.env, ...(nft.length ? {} : { NATIVE_NFTABLES: 'true' }) };
      const env = { ...goEnv };
      delete env['DRY_RUN'];
      return { ...c, goArgs: [...c.args, ...nft], goEnv, args: [...c.args.filter((a) => !DRY_TOKENS.has(a)), ...nft], env };
    });
}
