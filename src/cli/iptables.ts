// `agent istio-iptables`: pilot-agent's istio-iptables command (flags, env bindings, defaults, exit codes),
// plus two explicit host inputs of ours: --ipv6 and --dns-servers.
import type { CliContext, ExitCode } from '../lib/context.js';
import { flagHelp, parseBool, parseFlagDuration, parseFlags, type FlagSpec, type FlagValue } from './flags.js';
import { checkLogFlags, checkLogTargets, LOG_FLAGS, loggerFromFlags } from './global-flags.js';
import { formatIssues, type ConfigIssue } from '../lib/errors.js';
import { runIptablesCommand } from '../iptables/command.js';
import type { RawIptablesInputs, RawValue } from '../iptables/resolve.js';

/**
 * Every flag of `pilot-agent istio-iptables` 1.30. Each flag except --envoy-port is also read from the
 * variable named after it (upper case, `-` -> `_`); extra variables are listed after it and, as in
 * pilot-agent, a later variable overrides an earlier one. A flag on the command line wins over both.
 */
export const IPTABLES_FLAGS: readonly FlagSpec[] = [
  { name: 'envoy-port', short: 'p', type: 'string', default: '15001', help: 'Specify the envoy port to which redirect all TCP traffic.' },
  { name: 'inbound-capture-port', short: 'z', type: 'string', default: '15006', env: ['INBOUND_CAPTURE_PORT'], help: 'Port to which all inbound TCP traffic to the pod/VM should be redirected to.' },
  { name: 'inbound-tunnel-port', short: 'e', type: 'string', default: '15008', env: ['INBOUND_TUNNEL_PORT'], help: 'Specify the istio tunnel port for inbound tcp traffic.' },
  { name: 'proxy-uid', short: 'u', type: 'string', default: '', env: ['PROXY_UID'], help: 'Specify the UID of the user for which the redirection is not applied. Typically, this is the UID of the proxy container.' },
  { name: 'proxy-gid', short: 'g', type: 'string', default: '', env: ['PROXY_GID'], help: 'Specify the GID of the user for which the redirection is not applied (same default value as -u param).' },
  { name: 'istio-inbound-interception-mode', short: 'm', type: 'string', default: '', env: ['ISTIO_INBOUND_INTERCEPTION_MODE'], help: 'The mode used to redirect inbound connections to Envoy, either "REDIRECT" or "TPROXY".' },
  { name: 'istio-inbound-ports', short: 'b', type: 'string', default: '', env: ['ISTIO_INBOUND_PORTS'], help: 'Comma separated list of inbound ports for which traffic is to be redirected to Envoy (optional). The wildcard character "*" can be used to configure redirection for all ports. An empty list will disable.' },
  { name: 'istio-local-exclude-ports', short: 'd', type: 'string', default: '', env: ['ISTIO_LOCAL_EXCLUDE_PORTS'], help: 'Comma separated list of inbound ports to be excluded from redirection to Envoy (optional). Only applies when all inbound traffic (i.e. "*") is being redirected.' },
  { name: 'istio-exclude-interfaces', short: 'c', type: 'string', default: '', env: ['ISTIO_EXCLUDE_INTERFACES'], help: 'Comma separated list of NIC (optional). Neither inbound nor outbound traffic will be captured.' },
  { name: 'istio-service-cidr', short: 'i', type: 'string', default: '', env: ['ISTIO_SERVICE_CIDR'], help: 'Comma separated list of IP ranges in CIDR form to redirect to envoy (optional). The wildcard character "*" can be used to redirect all outbound traffic. An empty list will disable all outbound.' },
  { name: 'istio-service-exclude-cidr', short: 'x', type: 'string', default: '', env: ['ISTIO_SERVICE_EXCLUDE_CIDR'], help: 'Comma separated list of IP ranges in CIDR form to be excluded from redirection. Only applies when all  outbound traffic (i.e. "*") is being redirected.' },
  { name: 'istio-outbound-ports', short: 'q', type: 'string', default: '', env: ['ISTIO_OUTBOUND_PORTS'], help: 'Comma separated list of outbound ports to be explicitly included for redirection to Envoy.' },
  { name: 'istio-local-outbound-ports-exclude', short: 'o', type: 'string', default: '', env: ['ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE'], help: 'Comma separated list of outbound ports to be excluded from redirection to Envoy.' },
  { name: 'kube-virt-interfaces', short: 'k', type: 'string', default: '', env: ['KUBE_VIRT_INTERFACES'], help: 'Comma separated list of virtual interfaces whose inbound traffic (from VM) will be treated as outbound.' },
  { name: 'istio-inbound-tproxy-mark', short: 't', type: 'string', default: '1337', env: ['ISTIO_INBOUND_TPROXY_MARK'], help: 'Packet mark used for TPROXY inbound interception.' },
  { name: 'istio-inbound-tproxy-route-table', short: 'r', type: 'string', default: '133', env: ['ISTIO_INBOUND_TPROXY_ROUTE_TABLE'], help: 'Routing table used for TPROXY inbound interception.' },
  { name: 'dry-run', short: 'n', type: 'bool', default: false, env: ['DRY_RUN'], help: 'Do not call any external dependencies like iptables (prints the would-be commands to stdout).' },
  { name: 'iptables-probe-port', type: 'int', default: 15002, env: ['IPTABLES_PROBE_PORT'], help: 'Set listen port for failure detection.' },
  { name: 'probe-timeout', type: 'duration', default: 5000, env: ['PROBE_TIMEOUT'], help: 'Failure detection timeout.' },
  { name: 'skip-rule-apply', type: 'bool', default: false, env: ['SKIP_RULE_APPLY'], help: 'Skip iptables apply.' },
  { name: 'run-validation', type: 'bool', default: false, env: ['RUN_VALIDATION'], help: 'Validate iptables.' },
  { name: 'redirect-dns', type: 'bool', default: false, env: ['REDIRECT_DNS', 'ISTIO_META_DNS_CAPTURE'], help: 'Enable capture of dns traffic by istio-agent.' },
  { name: 'drop-invalid', type: 'bool', default: false, env: ['DROP_INVALID', 'INVALID_DROP'], help: 'Enable invalid drop in the iptables rules.' },
  { name: 'dual-stack', type: 'bool', default: false, env: ['DUAL_STACK', 'ISTIO_DUAL_STACK'], help: 'Enable ipv4/ipv6 redirects for dual-stack.' },
  { name: 'capture-all-dns', type: 'bool', default: false, env: ['CAPTURE_ALL_DNS'], help: 'Instead of only capturing DNS traffic to DNS server IP, capture all DNS traffic at port 53. This setting is only effective when redirect dns is enabled.' },
  { name: 'network-namespace', type: 'string', default: '', env: ['NETWORK_NAMESPACE'], help: 'The network namespace that iptables rules should be applied to.' },
  { name: 'cni-mode', type: 'bool', default: false, env: ['CNI_MODE'], help: 'Whether to run as CNI plugin.' },
  { name: 'reconcile', type: 'bool', default: false, env: ['RECONCILE'], help: 'Reconcile pre-existing and incompatible iptables rules instead of failing if drift is detected.' },
  { name: 'cleanup-only', type: 'bool', default: false, env: ['CLEANUP_ONLY'], help: 'Perform a forced cleanup without creating new iptables chains or rules.' },
  { name: 'force-apply', type: 'bool', default: false, env: ['FORCE_APPLY'], help: 'Apply iptables changes even if they appear to already be in place.' },
  { name: 'native-nftables', type: 'bool', default: false, env: ['NATIVE_NFTABLES'], help: 'Use native nftables instead of iptables rules.' },
  { name: 'force-iptables-binary', type: 'string', default: '', env: ['FORCE_IPTABLES_BINARY'], help: 'Break glass option to choose which iptables binary to use.' },
  // Ours: host inputs pilot-agent only detects. Not given = detect as pilot-agent does.
  { name: 'ipv6', type: 'bool', default: false, env: ['IPTABLES_IPV6'], help: 'Enable IPv6 rules (true|false). Default: detected from the first non-loopback, non-link-local local address.' },
  { name: 'dns-servers', type: 'string', default: '', env: ['IPTABLES_DNS_SERVERS'], help: 'Comma separated DNS server addresses for --redirect-dns, used verbatim. Default: the nameservers of /etc/resolv.conf.' },
  ...LOG_FLAGS,
];

/** Flags whose env bindings are resolved here (pilot-agent's BindEnv/AdditionalEnv semantics). */
const ENV_BOUND = new Set(IPTABLES_FLAGS.filter((s) => s.env?.length && !LOG_FLAGS.includes(s)).map((s) => s.name));

/** pflag's uint16 (strconv.ParseUint base 0): decimal, 0x, 0o, 0b, or leading-0 octal; 0-65535. */
function parseUint16(raw: string): number | undefined {
  const t = raw.replace(/_/g, '');
  let n: number;
  if (/^0x[0-9a-f]+$/i.test(t)) n = parseInt(t.slice(2), 16);
  else if (/^0o[0-7]+$/i.test(t)) n = parseInt(t.slice(2), 8);
  else if (/^0b[01]+$/i.test(t)) n = parseInt(t.slice(2), 2);
  else if (/^0[0-7]+$/.test(t)) n = parseInt(t, 8);
  else if (/^\d+$/.test(t)) n = Number(t);
  else return undefined;
  return n <= 65535 ? n : undefined;
}

function convertEnv(spec: FlagSpec, raw: string): FlagValue | undefined {
  switch (spec.type) {
    case 'string':
      return raw;
    case 'bool':
      return parseBool(raw);
    case 'int':
      return parseUint16(raw);
    case 'duration':
      try {
        return parseFlagDuration(raw);
      } catch {
        return undefined;
      }
    default:
      return undefined;
  }
}

interface Resolved {
  values: Map<string, FlagValue>;
  source: Map<string, string>;
  /** Flags given on the command line or through a variable. */
  given: Set<string>;
  warnings: string[];
}

/**
 * Applies env bindings the way pilot-agent does: every bound variable that is set (even to "") is applied
 * in order, later ones overriding earlier ones; a value that does not parse is ignored (with a warning);
 * the command line wins.
 */
function resolveEnvBindings(argvValues: ReturnType<typeof parseFlags>, env: Readonly<Record<string, string | undefined>>): Resolved {
  const values = new Map(argvValues.values);
  const source = new Map<string, string>();
  const given = new Set(argvValues.set);
  const warnings: string[] = [];
  for (const spec of IPTABLES_FLAGS) {
    if (argvValues.set.has(spec.name)) {
      source.set(spec.name, `flag --${spec.name}`);
      continue;
    }
    source.set(spec.name, `default of --${spec.name}`);
    if (!ENV_BOUND.has(spec.name)) continue;
    for (const name of spec.env ?? []) {
      const raw = env[name];
      if (raw === undefined) continue;
      const v = convertEnv(spec, raw);
      if (v === undefined) {
        warnings.push(`ignoring env ${name}=${JSON.stringify(raw)}: not a valid ${spec.type} for --${spec.name}`);
        continue;
      }
      values.set(spec.name, v);
      source.set(spec.name, `env ${name}`);
      given.add(spec.name);
    }
  }
  return { values, source, given, warnings };
}

/** The raw value of the last `--name=v` / `--name v` occurrence. */
function lastArgValue(args: readonly string[], name: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a.startsWith(`--${name}=`)) v = a.slice(name.length + 3);
    else if (a === `--${name}` && i + 1 < args.length) v = args[++i];
  }
  return v;
}

function usage(): string {
  return [
    'istio-iptables is responsible for setting up port forwarding for Istio Sidecar.',
    '',
    'Usage:',
    '  agent istio-iptables [flags]',
    '',
    'Flags:',
    flagHelp(IPTABLES_FLAGS),
    '',
  ].join('\n');
}

export async function runIptables(args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  if (args.includes('--help') || args.includes('-h')) {
    ctx.stdout.write(usage());
    return 0;
  }
  // env is applied below with pilot-agent's semantics; log flags keep their usual bindings
  const specsNoEnv = IPTABLES_FLAGS.map((s) => (ENV_BOUND.has(s.name) ? { ...s, env: [] } : s));
  const p = parseFlags(args, specsNoEnv, ctx.env);
  if (p.unknown.length) {
    ctx.stderr.write(`Error: unknown flag: ${p.unknown[0]}\n`);
    return 255;
  }
  const flagIssues: ConfigIssue[] = [...p.issues];
  // --iptables-probe-port is a uint16 flag in pilot-agent: a bad value is a flag parse error
  const probeArg = lastArgValue(args, 'iptables-probe-port');
  if (probeArg !== undefined && parseUint16(probeArg) === undefined && !flagIssues.some((i) => i.source === 'flag --iptables-probe-port'))
    flagIssues.push({ source: 'flag --iptables-probe-port', message: `invalid argument ${JSON.stringify(probeArg)}: want a port number 0-65535` });
  checkLogFlags(p, flagIssues);
  checkLogTargets(p, ctx.cwd, flagIssues);
  if (flagIssues.length) {
    ctx.stderr.write(`Error: ${formatIssues(flagIssues)}\n`);
    return 255;
  }
  const r = resolveEnvBindings(p, ctx.env);
  const get = <T extends FlagValue>(name: string): RawValue<T> => ({ value: r.values.get(name) as T, source: r.source.get(name)! });
  const bool = (name: string) => r.values.get(name) as boolean;
  const str = (name: string) => r.values.get(name) as string;
  const dryRun = bool('dry-run');
  // pilot-agent logs to stdout; in dry-run stdout carries the transcript, so logs go to stderr
  const log = loggerFromFlags(p, ctx, dryRun ? 'stderr' : undefined);
  for (const w of r.warnings) log.warn(w);

  const raw: RawIptablesInputs = {
    proxyPort: get('envoy-port'),
    inboundCapturePort: get('inbound-capture-port'),
    inboundTunnelPort: get('inbound-tunnel-port'),
    proxyUID: get('proxy-uid'),
    proxyGID: get('proxy-gid'),
    inboundInterceptionMode: get('istio-inbound-interception-mode'),
    inboundPortsInclude: get('istio-inbound-ports'),
    inboundPortsExclude: get('istio-local-exclude-ports'),
    excludeInterfaces: get('istio-exclude-interfaces'),
    outboundIPRangesInclude: get('istio-service-cidr'),
    outboundIPRangesExclude: get('istio-service-exclude-cidr'),
    outboundPortsInclude: get('istio-outbound-ports'),
    outboundPortsExclude: get('istio-local-outbound-ports-exclude'),
    rerouteVirtualInterfaces: get('kube-virt-interfaces'),
    inboundTProxyMark: get('istio-inbound-tproxy-mark'),
    inboundTProxyRouteTable: get('istio-inbound-tproxy-route-table'),
    dryRun,
    iptablesProbePort: get('iptables-probe-port'),
    probeTimeoutMs: get('probe-timeout'),
    skipRuleApply: bool('skip-rule-apply'),
    runValidation: bool('run-validation'),
    redirectDNS: bool('redirect-dns'),
    dropInvalid: bool('drop-invalid'),
    dualStack: bool('dual-stack'),
    captureAllDNS: bool('capture-all-dns'),
    networkNamespace: str('network-namespace'),
    cniMode: bool('cni-mode'),
    reconcile: bool('reconcile'),
    cleanupOnly: bool('cleanup-only'),
    forceApply: bool('force-apply'),
    nativeNftables: bool('native-nftables'),
    forceIptablesBinary: get('force-iptables-binary'),
    ...(r.given.has('ipv6') ? { ipv6: get<boolean>('ipv6') } : {}),
    ...(r.given.has('dns-servers') ? { dnsServers: get<string>('dns-servers') } : {}),
  };
  return runIptablesCommand(raw, { env: ctx.env, stdout: ctx.stdout, stderr: ctx.stderr, log });
}
