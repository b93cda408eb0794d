// ProxyConfig validation with the rules of Istio 1.30's `ValidateMeshConfigProxyConfig`
// (pkg/config/validation/agent), each problem reported as its own message.
import { isIP } from 'node:net';
import { durationNs, type ClientTLSSettings, type ProxyConfig } from './proxy-config.js';

export interface Validation {
  readonly errors: string[];
  readonly warnings: string[];
}

/** Go's net.SplitHostPort. Throws with Go's message. */
export function splitHostPort(addr: string): [string, string] {
  const missing = (): never => {
    throw new Error(`address ${addr}: missing port in address`);
  };
  const tooMany = (): never => {
    throw new Error(`address ${addr}: too many colons in address`);
  };
  const i = addr.lastIndexOf(':');
  if (i < 0) missing();
  let host: string;
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    if (end < 0) throw new Error(`address ${addr}: missing ']' in address`);
    if (end + 1 === addr.length) missing();
    if (end + 1 !== i) {
      if (addr[end + 1] === ':') tooMany();
      missing();
    }
    host = addr.slice(1, end);
    if (addr.slice(1).includes('[') || addr.slice(end + 1).includes(']')) throw new Error(`address ${addr}: unexpected '[' in address`);
  } else {
    host = addr.slice(0, i);
    if (host.includes(':')) tooMany();
    if (host.includes('[') || host.includes(']')) throw new Error(`address ${addr}: unexpected '[' in address`);
  }
  return [host, addr.slice(i + 1)];
}

export function validatePort(port: number): string | undefined {
  return port >= 1 && port <= 65535 ? undefined : `port number ${port} must be in the range 1..65535`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function validateFqdn(name: string): string | undefined {
  if (name.length > 255) return `domain name "${name}" too long (max 255)`;
  if (name.length === 0) return 'empty domain name not allowed';
  const parts = name.split('.');
  const tld = parts[parts.length - 1]!;
  if (/^[+-]?\d+$/.test(tld)) return `domain name "${name}" invalid (top level domain "${tld}" cannot be all-numeric)`;
  for (let i = 0; i < parts.length; i++) {
    const label = parts[i]!;
    if (i === parts.length - 1 && label === '') return undefined;
    if (label.length > 63 || !DNS1123_LABEL.test(label)) return `domain name "${name}" invalid (label "${label}" invalid)`;
  }
  return undefined;
}

/** Istio's ValidateProxyAddress: `host:port` with a DNS-1123 host name or an IP, port 1..65535. */
export function validateProxyAddress(addr: string): string | undefined {
  let host: string;
  let port: string;
  try {
    [host, port] = splitHostPort(addr);
  } catch (e) {
    return `unable to split "${addr}": ${(e as Error).message}`;
  }
  if (!/^[+-]?\d+$/.test(port)) return `port (${port}) is not a number`;
  const perr = validatePort(Number(port));
  if (perr) return perr;
  if (validateFqdn(host) !== undefined && isIP(host) === 0) return `"${host}" is not a valid hostname or an IP address`;
  return undefined;
}

function validateTls(t: ClientTLSSettings): string[] {
  const errs: string[] = [];
  if (t.credentialName?.startsWith('configmap://')) {
    errs.push('invalid configmap:// credentialName: namespace must match the configuration namespace ""');
  }
  if (t.insecureSkipVerify) {
    if (t.mode === 'SIMPLE' && (t.caCertificates || t.credentialName || t.subjectAltNames)) {
      errs.push('cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true');
    }
    if (t.mode === 'MUTUAL' && (t.caCertificates || t.subjectAltNames)) {
      errs.push('cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true');
    }
  }
  if ((t.mode === 'SIMPLE' || t.mode === 'MUTUAL') && t.credentialName) {
    if (t.clientCertificate || t.caCertificates || t.privateKey || t.caCrl) {
      errs.push('cannot specify client certificates or CA certificate or CA CRL If credentialName is set');
    }
    return errs;
  }
  if (t.mode === 'MUTUAL') {
    if (!t.clientCertificate) errs.push('client certificate required for mutual tls');
    if (!t.privateKey) errs.push('private key required for mutual tls');
  }
  return errs;
}

function validateDrainDuration(d: string | undefined): string[] {
  const ns = durationNs(d);
  if (ns < 1_000_000n) return ['invalid drain duration: duration must be greater than 1ms'];
  if (ns % 1_000_000n !== 0n) return ['invalid drain duration: only durations to ms precision are supported'];
  if (ns % 1_000_000_000n !== 0n) return ['drain time only supports durations to seconds precision'];
  return [];
}

export function validateProxyConfig(pc: ProxyConfig): Validation {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (!pc.configPath) errors.push('config path must be set');
  if (!pc.binaryPath) errors.push('binary path must be set');
  if (pc.serviceCluster !== undefined) {
    if (pc.serviceCluster === '') errors.push('service cluster must be specified');
  } else if (pc.tracingServiceName === undefined) {
    errors.push('oneof service cluster or tracing service name must be specified');
  }
  errors.push(...validateDrainDuration(pc.drainDuration));
  if (!pc.discoveryAddress) errors.push('discovery address must be set to the proxy discovery service');
  else {
    const e = validateProxyAddress(pc.discoveryAddress);
    if (e) errors.push(`invalid discovery address: ${e}`);
  }
  const tr = pc.tracing;
  if (tr?.lightstep) {
    if (!tr.lightstep.address) errors.push('invalid lightstep config: address is required');
    const e = validateProxyAddress(tr.lightstep.address ?? '');
    if (e) errors.push(`invalid lightstep config: invalid lightstep address: ${e}`);
    if (!tr.lightstep.accessToken) errors.push('invalid lightstep config: access token is required');
  }
  if (tr?.zipkin) {
    const e = validateProxyAddress((tr.zipkin.address ?? '').replace('$(HOST_IP)', '127.0.0.1'));
    if (e) errors.push(`invalid zipkin config: ${e}`);
  }
  if (tr?.datadog) {
    const e = validateProxyAddress((tr.datadog.address ?? '').replace('$(HOST_IP)', '127.0.0.1'));
    if (e) errors.push(`invalid datadog config: ${e}`);
  }
  if (tr?.tlsSettings) for (const e of validateTls(tr.tlsSettings)) errors.push(`invalid tracing TLS config: ${e}`);
  if (pc.statsdUdpAddress) {
    const e = validateProxyAddress(pc.statsdUdpAddress);
    if (e) errors.push(`invalid statsd udp address "${pc.statsdUdpAddress}": ${e}`);
  }
  if (pc.envoyMetricsServiceAddress) {
    const e = validateProxyAddress(pc.envoyMetricsServiceAddress);
    if (e) errors.push(`invalid envoy metrics service address "${pc.envoyMetricsServiceAddress}": ${e}`);
    else warnings.push('EnvoyMetricsServiceAddress is deprecated, use EnvoyMetricsService instead.');
  }
  if (pc.proxyMetadata && 'ISTIO_META_DNS_AUTO_ALLOCATE' in pc.proxyMetadata) {
    warnings.push("'ISTIO_META_DNS_AUTO_ALLOCATE' is deprecated; review https://istio.io/latest/docs/ops/configuration/traffic-management/dns-proxy/#dns-auto-allocation-v2 for information about replacement functionality");
  }
  for (const [name, svc] of [['envoy metrics service', pc.envoyMetricsService], ['envoy access log service', pc.envoyAccessLogService]] as const) {
    if (svc?.address) {
      const e = validateProxyAddress(svc.address);
      if (e) errors.push(`invalid ${name} address "${svc.address}": ${e}`);
    }
  }
  const ap = validatePort(pc.proxyAdminPort ?? 0);
  if (ap) errors.push(`invalid proxy admin port: ${ap}`);
  const pol = pc.controlPlaneAuthPolicy ?? 'NONE';
  if (pol !== 'NONE' && pol !== 'MUTUAL_TLS') errors.push(`invalid authentication policy: unrecognized control plane auth policy ${JSON.stringify(pol)}`);
  const sp = validatePort(pc.statusPort ?? 0);
  if (sp) errors.push(`invalid status port: ${sp}`);
  const pkp = pc.privateKeyProvider as Record<string, { pollDelay?: string } | undefined> | undefined;
  if (pkp) {
    const which = pkp.cryptomb ? 'cryptomb' : pkp.qat ? 'qat' : undefined;
    if (!which) errors.push('invalid private key provider configuration: private key provider configuration is required');
    else {
      const pd = pkp[which]?.pollDelay;
      if (pd === undefined) errors.push('invalid private key provider configuration: pollDelay is required');
      else if (durationNs(pd) === 0n) errors.push('invalid private key provider configuration: pollDelay must be non zero');
    }
  }
  return { errors, warnings };
}
