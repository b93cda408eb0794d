// TLS settings toward istiod that need no gRPC: what the settings of the xDS proxy and the CA client are
// resolved from before gRPC is loaded (lib/grpc-credentials.ts builds the credentials from them).
import { statSync } from 'node:fs';

/** TLS settings of one gRPC client. */
export interface ClientTls {
  /** PEM file with the roots to trust; null = the operating system's trust store. Re-read for every new connection. */
  readonly rootCertPath: string | null;
  /** TLS server name (SNI and the name the server certificate must carry). */
  readonly serverName: string;
  /** Client certificate (PROV_CERT or FILE_MOUNTED_CERTS); presented only while parsable and unexpired. */
  readonly clientCertChainPath?: string;
  readonly clientKeyPath?: string;
}

/** Where Linux distributions keep the system CA bundle, in the order Go's crypto/x509 (and pilot-agent) look. */
export const OS_ROOT_CERT_FILES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/tls/cacert.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
  '/usr/local/etc/ssl/cert.pem',
  '/etc/ssl/certs/ca-certificates',
] as const;

/** The first OS CA bundle that exists, or '' (pilot-agent's GetOSRootFilePath). */
export function osRootCertFile(candidates: readonly string[] = OS_ROOT_CERT_FILES): string {
  for (const p of candidates) {
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // next
    }
  }
  return '';
}

/** Host part of host:port, like Go's net.SplitHostPort; undefined when there is no port. */
export function hostOf(address: string): string | undefined {
  const m = /^\[([^\]]*)\]:([^:]*)$/.exec(address) ?? /^([^:]*):([^:]*)$/.exec(address);
  return m ? m[1] : undefined;
}

/** The TLS server name pilot-agent uses for istiod (xDS and CA): the address host (`localhost*` => istiod.istio-system.svc), ISTIOD_SAN wins. */
export function xdsServerName(discoveryAddress: string, istiodSan: string | undefined): string {
  if (istiodSan) return istiodSan;
  const host = hostOf(discoveryAddress) ?? '';
  if (host.includes('localhost')) return 'istiod.istio-system.svc';
  return host;
}

