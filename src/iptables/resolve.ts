// Turns raw flag/env values into a validated IptablesConfig: pilot-agent's FillConfigFromEnvironment and
// Validate, plus stricter checks of every value that ends up in a rule (so a typo fails before anything is
// applied, with the flag or variable named). Host inputs come through HostProbe so tests need no host.

import type { ConfigIssue } from '../lib/errors.js';
import {
  DEFAULT_CONFIG,
  DEFAULT_PROXY_UID,
  MAX_OWNER_GROUPS_INCLUDE,
  ownerGroupsFilter,
  splitList,
  type IptablesConfig,
} from './config.js';
import { detectHostIP, lookupUid, parseResolvConf, splitServersCanonical, splitServersVerbatim, type LocalAddr } from './host.js';
import { is4, isLoopback, parsePrefix } from './netip.js';
import { clip } from '../config/limits.js';

export interface HostProbe {
  localAddrs(): readonly LocalAddr[];
  /** Reads a host file (/etc/resolv.conf, /etc/passwd); throws if unreadable. */
  readFile(path: string): string;
}

/** One raw input: its value and where it came from (`flag --x`, `env X`, or `default`). */
export interface RawValue<T> {
  readonly value: T;
  readonly source: string;
}

export interface RawIptablesInputs {
  readonly proxyPort: RawValue<string>;
  readonly inboundCapturePort: RawValue<string>;
  readonly inboundTunnelPort: RawValue<string>;
  readonly proxyUID: RawValue<string>;
  readonly proxyGID: RawValue<string>;
  readonly inboundInterceptionMode: RawValue<string>;
  readonly inboundPortsInclude: RawValue<string>;
  readonly inboundPortsExclude: RawValue<string>;
  readonly excludeInterfaces: RawValue<string>;
  readonly outboundIPRangesInclude: RawValue<string>;
  readonly outboundIPRangesExclude: RawValue<string>;
  readonly outboundPortsInclude: RawValue<string>;
  readonly outboundPortsExclude: RawValue<string>;
  readonly rerouteVirtualInterfaces: RawValue<string>;
  readonly inboundTProxyMark: RawValue<string>;
  readonly inboundTProxyRouteTable: RawValue<string>;
  readonly dryRun: boolean;
  readonly iptablesProbePort: RawValue<number>;
  readonly probeTimeoutMs: RawValue<number>;
  readonly skipRuleApply: boolean;
  readonly runValidation: boolean;
  readonly redirectDNS: boolean;
  readonly dropInvalid: boolean;
  readonly dualStack: boolean;
  readonly captureAllDNS: boolean;
  readonly networkNamespace: string;
  readonly cniMode: boolean;
  readonly reconcile: boolean;
  readonly cleanupOnly: boolean;
  readonly forceApply: boolean;
  readonly nativeNftables: boolean;
  readonly forceIptablesBinary: RawValue<string>;
  /** Explicit host inputs (ours); undefined = detect as pilot-agent does. */
  readonly ipv6?: RawValue<boolean>;
  readonly dnsServers?: RawValue<string>;
}

// Values are printed verbatim into the iptables-restore / nft payload, where spaces and tabs separate
// words; any other whitespace (\n, \r, \v, \f, U+00A0, ...) would break or corrupt a payload line.
const PORT_RE = /^[ \t]*\d{1,5}[ \t]*$/;
const ID_RE = /^[ \t]*(\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)[ \t]*$/;
const IFNAME_RE = /^[A-Za-z][A-Za-z0-9_.-]*\+?$/;

function checkPort(v: string, min: number): string | undefined {
  if (!/^\d{1,5}$/.test(v) || Number(v) < min || Number(v) > 65535) return `${JSON.stringify(clip(v))} is not a valid port (want ${min}-65535)`;
  return undefined;
}

function checkPortList(v: string): string | undefined {
  for (const item of splitList(v))
    if (!PORT_RE.test(item) || Number(item.trim()) > 65535) return `${JSON.stringify(clip(item))} is not a valid port (want 0-65535) in list ${JSON.stringify(clip(v))}`;
  return undefined;
}

function checkIdList(v: string, what: string): string | undefined {
  for (const item of splitList(v)) {
    if (!ID_RE.test(item)) return `${JSON.stringify(clip(item))} is not a valid ${what} (numeric id or name)`;
    if (/^\s*\d+\s*$/.test(item) && Number(item.trim()) > 4294967294) return `${what} ${item.trim()} is out of range`;
  }
  return undefined;
}

function checkIfList(v: string): string | undefined {
  for (const item of splitList(v)) {
    if (item.length > 15) return `interface name ${JSON.stringify(clip(item))} too long (max 15 chars)`;
    if (!IFNAME_RE.test(item)) return `interface name ${JSON.stringify(clip(item))} contains invalid characters`;
  }
  return undefined;
}

function checkCidrList(v: string, allowWildcard: boolean): string | undefined {
  if (v === '*') return allowWildcard ? undefined : "'*' is not allowed here (invalid value for OUTBOUND_IP_RANGES_EXCLUDE)";
  for (const item of splitList(v)) {
    try {
      parsePrefix(item);
    } catch (e) {
      return `invalid CIDR ${JSON.stringify(clip(item))}: ${clip((e as Error).message, 300)}`;
    }
  }
  return undefined;
}

function checkUint32(v: string, min: number): string | undefined {
  if (!/^\d{1,10}$/.test(v) || Number(v) < min || Number(v) > 4294967295) return `${JSON.stringify(clip(v))} is not a valid number (want ${min}-4294967295)`;
  return undefined;
}

/** pilot-agent's ValidateIPv4LoopbackCidr. */
export function checkLoopbackCidr(cidr: string): string | undefined {
  let p;
  try {
    p = parsePrefix(cidr);
  } catch (e) {
    return `failed to parse CIDR ${cidr}: ${(e as Error).message}`;
  }
  if (!is4(p.addr) || !isLoopback(p.addr)) return `expected valid IPv4 loopback address in CIDR ${cidr}`;
  if (p.bits < 8 || p.bits > 32) return `expected CIDR ${cidr} to have mask in range [8, 32]; found ${p.bits}`;
  return undefined;
}

export interface ResolveResult {
  readonly config?: IptablesConfig;
  readonly issues: readonly ConfigIssue[];
  /** Things worth a log line (e.g. how IPv6/DNS were decided). */
  readonly notes: readonly string[];
}

/** Resolves and validates. Never touches the host except through `host`. */
export function resolveConfig(raw: RawIptablesInputs, env: Readonly<Record<string, string | undefined>>, host: HostProbe): ResolveResult {
  const issues: ConfigIssue[] = [];
  const notes: string[] = [];
  const bad = (src: string, msg: string | undefined) => {
    if (msg) issues.push({ source: src, message: msg });
  };

  bad(raw.proxyPort.source, checkPort(raw.proxyPort.value, 1));
  bad(raw.inboundCapturePort.source, checkPort(raw.inboundCapturePort.value, 1));
  bad(raw.inboundTunnelPort.source, checkPort(raw.inboundTunnelPort.value, 1));
  bad(raw.proxyUID.source, checkIdList(raw.proxyUID.value, 'uid'));
  bad(raw.proxyGID.source, checkIdList(raw.proxyGID.value, 'gid'));
  const mode = raw.inboundInterceptionMode.value;
  if (mode !== '' && mode !== 'REDIRECT' && mode !== 'TPROXY')
    bad(raw.inboundInterceptionMode.source, `unknown interception mode ${JSON.stringify(clip(mode))} (want REDIRECT or TPROXY)`);
  if (raw.inboundPortsInclude.value !== '*') bad(raw.inboundPortsInclude.source, checkPortList(raw.inboundPortsInclude.value));
  bad(raw.inboundPortsExclude.source, checkPortList(raw.inboundPortsExclude.value));
  bad(raw.outboundPortsInclude.source, checkPortList(raw.outboundPortsInclude.value));
  bad(raw.outboundPortsExclude.source, checkPortList(raw.outboundPortsExclude.value));
  bad(raw.excludeInterfaces.source, checkIfList(raw.excludeInterfaces.value));
  bad(raw.rerouteVirtualInterfaces.source, checkIfList(raw.rerouteVirtualInterfaces.value));
  bad(raw.outboundIPRangesInclude.source, checkCidrList(raw.outboundIPRangesInclude.value, true));
  bad(raw.outboundIPRangesExclude.source, checkCidrList(raw.outboundIPRangesExclude.value, false));
  bad(raw.inboundTProxyMark.source, checkUint32(raw.inboundTProxyMark.value, 0));
  const table = raw.inboundTProxyRouteTable.value;
  const tableErr = checkUint32(table, 1) ?? (['253', '254', '255'].includes(table) ? `route table ${table} is reserved (default/main/local)` : undefined);
  bad(raw.inboundTProxyRouteTable.source, tableErr);
  const probePort = raw.iptablesProbePort.value;
  if (!Number.isInteger(probePort) || probePort < 0 || probePort > 65535) bad(raw.iptablesProbePort.source, `${probePort} is out of range for a port (0-65535)`);
  const timeout = raw.probeTimeoutMs.value;
  if (!Number.isFinite(timeout)) bad(raw.probeTimeoutMs.source, `${timeout} is not a duration`);
  else if (timeout < 0) bad(raw.probeTimeoutMs.source, 'must not be negative');
  const fib = raw.forceIptablesBinary.value;
  if (fib !== '' && fib !== 'legacy' && fib !== 'nft') bad(raw.forceIptablesBinary.source, `invalid FORCE_IPTABLES_BINARY value ${JSON.stringify(clip(fib))} (want legacy or nft)`);

  // env-only settings (pilot-agent always reads these from the environment)
  const envOr = (name: string, def: string) => (env[name] !== undefined ? env[name]! : def);
  const ownerGroupsInclude = envOr('ISTIO_OUTBOUND_OWNER_GROUPS', DEFAULT_CONFIG.ownerGroupsInclude);
  const ownerGroupsExclude = envOr('ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', DEFAULT_CONFIG.ownerGroupsExclude);
  const hostIPv4LoopbackCidr = envOr('ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', DEFAULT_CONFIG.hostIPv4LoopbackCidr);
  const filter = ownerGroupsFilter(ownerGroupsInclude, ownerGroupsExclude);
  if (!filter.except && filter.values.length > MAX_OWNER_GROUPS_INCLUDE)
    bad('env ISTIO_OUTBOUND_OWNER_GROUPS', `number of owner groups whose outgoing traffic should be redirected to Envoy cannot exceed ${MAX_OWNER_GROUPS_INCLUDE}, got ${filter.values.length}`);
  if (ownerGroupsInclude !== '*') bad('env ISTIO_OUTBOUND_OWNER_GROUPS', checkIdList(ownerGroupsInclude, 'group'));
  bad('env ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', checkIdList(ownerGroupsExclude, 'group'));
  bad('env ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', checkLoopbackCidr(hostIPv4LoopbackCidr));

  let dnsExplicit: { v4: string[]; v6: string[] } | undefined;
  if (raw.dnsServers) {
    try {
      dnsExplicit = splitServersVerbatim(raw.dnsServers.value);
    } catch (e) {
      bad(raw.dnsServers.source, (e as Error).message);
    }
  }
  if (issues.length) return { issues, notes };

  // host inputs
  let proxyUID = raw.proxyUID.value;
  if (proxyUID === '') {
    const user = envOr('ENVOY_USER', 'istio-proxy');
    let uid: string | undefined;
    try {
      uid = lookupUid(host.readFile('/etc/passwd'), user);
    } catch {
      uid = undefined;
    }
    proxyUID = uid ?? DEFAULT_PROXY_UID;
    notes.push(`proxy uid ${proxyUID} (${uid === undefined ? `user ${user} not found, default` : `user ${user}`})`);
  }
  const proxyGID = raw.proxyGID.value === '' ? proxyUID : raw.proxyGID.value;

  let enableIPv6: boolean;
  let hostIP = '';
  if (raw.ipv6) {
    enableIPv6 = raw.ipv6.value;
    notes.push(`IPv6 ${enableIPv6 ? 'enabled' : 'disabled'} by ${raw.ipv6.source}`);
  } else {
    try {
      const r = detectHostIP(host.localAddrs(), raw.dualStack);
      enableIPv6 = r.ipv6;
      hostIP = r.hostIP;
      notes.push(`IPv6 ${enableIPv6 ? 'enabled' : 'disabled'}: detected from local address ${hostIP}`);
    } catch (e) {
      issues.push({ source: 'host addresses', message: `${(e as Error).message} (give --ipv6=true|false to skip detection)` });
      return { issues, notes };
    }
  }

  let dnsServersV4: string[] = [];
  let dnsServersV6: string[] = [];
  if (raw.redirectDNS && !raw.captureAllDNS) {
    if (dnsExplicit) {
      ({ v4: dnsServersV4, v6: dnsServersV6 } = dnsExplicit);
      notes.push(`DNS servers from ${raw.dnsServers!.source}`);
    } else {
      try {
        ({ v4: dnsServersV4, v6: dnsServersV6 } = splitServersCanonical(parseResolvConf(host.readFile('/etc/resolv.conf'))));
      } catch (e) {
        issues.push({ source: 'file /etc/resolv.conf', message: `failed to load /etc/resolv.conf: ${(e as Error).message}` });
        return { issues, notes };
      }
    }
  }

  const config: IptablesConfig = {
    ...DEFAULT_CONFIG,
    proxyPort: raw.proxyPort.value,
    inboundCapturePort: raw.inboundCapturePort.value,
    inboundTunnelPort: raw.inboundTunnelPort.value,
    proxyUID,
    proxyGID,
    inboundInterceptionMode: mode,
    inboundTProxyMark: raw.inboundTProxyMark.value,
    inboundTProxyRouteTable: table,
    inboundPortsInclude: raw.inboundPortsInclude.value,
    inboundPortsExclude: raw.inboundPortsExclude.value,
    ownerGroupsInclude,
    ownerGroupsExclude,
    outboundPortsInclude: raw.outboundPortsInclude.value,
    outboundPortsExclude: raw.outboundPortsExclude.value,
    outboundIPRangesInclude: raw.outboundIPRangesInclude.value,
    outboundIPRangesExclude: raw.outboundIPRangesExclude.value,
    rerouteVirtualInterfaces: raw.rerouteVirtualInterfaces.value,
    excludeInterfaces: raw.excludeInterfaces.value,
    iptablesProbePort: probePort,
    probeTimeoutMs: raw.probeTimeoutMs.value,
    dryRun: raw.dryRun,
    skipRuleApply: raw.skipRuleApply,
    runValidation: raw.runValidation,
    redirectDNS: raw.redirectDNS,
    dropInvalid: raw.dropInvalid,
    captureAllDNS: raw.captureAllDNS,
    enableIPv6,
    dnsServersV4,
    dnsServersV6,
    networkNamespace: raw.networkNamespace,
    cniMode: raw.cniMode,
    dualStack: raw.dualStack,
    hostIP,
    hostIPv4LoopbackCidr,
    reconcile: raw.reconcile,
    cleanupOnly: raw.cleanupOnly,
    forceApply: raw.forceApply,
    nativeNftables: raw.nativeNftables,
    forceIptablesBinary: fib as IptablesConfig['forceIptablesBinary'],
  };
  return { config, issues, notes };
}

/** pilot-agent's config dump (`Istio config:` block). */
export function describeConfig(c: IptablesConfig): string {
  const l = [
    `PROXY_PORT=${c.proxyPort}`,
    `PROXY_INBOUND_CAPTURE_PORT=${c.inboundCapturePort}`,
    `PROXY_TUNNEL_PORT=${c.inboundTunnelPort}`,
    `PROXY_UID=${c.proxyUID}`,
    `PROXY_GID=${c.proxyGID}`,
    `INBOUND_INTERCEPTION_MODE=${c.inboundInterceptionMode}`,
    `INBOUND_TPROXY_MARK=${c.inboundTProxyMark}`,
    `INBOUND_TPROXY_ROUTE_TABLE=${c.inboundTProxyRouteTable}`,
    `INBOUND_PORTS_INCLUDE=${c.inboundPortsInclude}`,
    `INBOUND_PORTS_EXCLUDE=${c.inboundPortsExclude}`,
    `OUTBOUND_OWNER_GROUPS_INCLUDE=${c.ownerGroupsInclude}`,
    `OUTBOUND_OWNER_GROUPS_EXCLUDE=${c.ownerGroupsExclude}`,
    `OUTBOUND_IP_RANGES_INCLUDE=${c.outboundIPRangesInclude}`,
    `OUTBOUND_IP_RANGES_EXCLUDE=${c.outboundIPRangesExclude}`,
    `OUTBOUND_PORTS_INCLUDE=${c.outboundPortsInclude}`,
    `OUTBOUND_PORTS_EXCLUDE=${c.outboundPortsExclude}`,
    `KUBE_VIRT_INTERFACES=${c.rerouteVirtualInterfaces}`,
    `ENABLE_INBOUND_IPV6=${c.enableIPv6}`,
    `DUAL_STACK=${c.dualStack}`,
    `DNS_CAPTURE=${c.redirectDNS}`,
    `DROP_INVALID=${c.dropInvalid}`,
    `CAPTURE_ALL_DNS=${c.captureAllDNS}`,
    `DNS_SERVERS=[${c.dnsServersV4.join(' ')}],[${c.dnsServersV6.join(' ')}]`,
    `NETWORK_NAMESPACE=${c.networkNamespace}`,
    `CNI_MODE=${c.cniMode}`,
    `EXCLUDE_INTERFACES=${c.excludeInterfaces}`,
    `RECONCILE=${c.reconcile}`,
    `CLEANUP_ONLY=${c.cleanupOnly}`,
    `FORCE_APPLY=${c.forceApply}`,
    `NATIVE_NFTABLES=${c.nativeNftables}`,
    `FORCE_IPTABLES_BINARY=${c.forceIptablesBinary}`,
  ];
  return `${l.join('\n')}\n`;
}
