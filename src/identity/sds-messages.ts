// The SDS wire messages the agent reads and writes, encoded with the shared protobuf wire helpers (see
// lib/protowire.ts for why not protobufjs): DiscoveryRequest in, DiscoveryResponse of
// envoy.extensions.transport_sockets.tls.v3.Secret out. Field numbers are those of the vendored Envoy
// protos (protos/envoy/...); sds-messages.test.ts decodes what we write with those protos.
import { WT_LEN, WT_VARINT, Writer, forEachField } from '../lib/protowire.js';

export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
export const HEALTH_INFO_TYPE_URL = 'type.googleapis.com/istio.v1.HealthInformation';
const CRYPTOMB_TYPE_URL = 'type.googleapis.com/envoy.extensions.private_key_providers.cryptomb.v3alpha.CryptoMbPrivateKeyMethodConfig';
const QAT_TYPE_URL = 'type.googleapis.com/envoy.extensions.private_key_providers.qat.v3alpha.QatPrivateKeyMethodConfig';

export interface DiscoveryRequest {
  versionInfo: string;
  /** node.id ('' when there is no node or no id). */
  nodeId: string;
  hasNode: boolean;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  /** error_detail: a NACK. */
  errorDetail?: { code: number; message: string };
}

const str = (buf: Buffer, start: number, end: number): string => buf.toString('utf8', start, end);

/** Decodes the fields of a DiscoveryRequest the SDS server uses (throws WireFormatError on malformed input). */
export function decodeDiscoveryRequest(buf: Buffer): DiscoveryRequest {
  const r: DiscoveryRequest = { versionInfo: '', nodeId: '', hasNode: false, resourceNames: [], typeUrl: '', responseNonce: '' };
  forEachField(buf, (f) => {
    if (f.wireType !== WT_LEN) return;
    switch (f.field) {
      case 1:
        r.versionInfo = str(buf, f.start, f.end);
        break;
      case 2:
        r.hasNode = true;
        forEachField(buf, (g) => {
          if (g.field === 1 && g.wireType === WT_LEN) r.nodeId = str(buf, g.start, g.end);
        }, f.start, f.end);
        break;
      case 3:
        r.resourceNames.push(str(buf, f.start, f.end));
        break;
      case 4:
        r.typeUrl = str(buf, f.start, f.end);
        break;
      case 5:
        r.responseNonce = str(buf, f.start, f.end);
        break;
      case 6: {
        const e = { code: 0, message: '' };
        forEachField(buf, (g) => {
          if (g.field === 1 && g.wireType === WT_VARINT) e.code = g.value;
          else if (g.field === 2 && g.wireType === WT_LEN) e.message = str(buf, g.start, g.end);
        }, f.start, f.end);
        r.errorDetail = e;
        break;
      }
    }
  });
  return r;
}

/** ProxyConfig.privateKeyProvider: CryptoMB or QAT; the key is handed to the provider instead of Envoy's TLS stack. */
export interface PrivateKeyProviderConfig {
  readonly provider: 'cryptomb' | 'qat';
  /** poll_delay: only its nanoseconds part is used, as pilot-agent does. */
  readonly pollDelayNanos: number;
  readonly fallback: boolean;
}

export type SecretMessage =
  | { readonly name: string; readonly kind: 'tls'; readonly certificateChain: string; readonly privateKey: string; readonly keyProvider?: PrivateKeyProviderConfig }
  | { readonly name: string; readonly kind: 'validation'; readonly trustedCa: string; readonly crlFilename?: string };

const inlineBytes = (s: string): Writer => new Writer().bytes(2, Buffer.from(s, 'utf8')); // DataSource.inline_bytes

function duration(nanos: number): Writer {
  const seconds = Math.floor(nanos / 1e9);
  return new Writer().uint(1, seconds).uint(2, nanos - seconds * 1e9);
}

/** envoy.extensions.transport_sockets.tls.v3.Secret. */
export function encodeSecret(s: SecretMessage): Buffer {
  const w = new Writer().string(1, s.name);
  if (s.kind === 'validation') {
    // CertificateValidationContext{trusted_ca = 1, crl = 7}
    const vc = new Writer().message(1, inlineBytes(s.trustedCa));
    if (s.crlFilename) vc.message(7, new Writer().string(1, s.crlFilename));
    return w.message(4, vc).finish();
  }
  // TlsCertificate{certificate_chain = 1, private_key = 2, private_key_provider = 6}
  const tls = new Writer().message(1, inlineBytes(s.certificateChain));
  if (s.keyProvider) {
    const cfg = new Writer().message(1, inlineBytes(s.privateKey)).message(2, duration(s.keyProvider.pollDelayNanos));
    const any = new Writer().string(1, s.keyProvider.provider === 'cryptomb' ? CRYPTOMB_TYPE_URL : QAT_TYPE_URL).message(2, cfg);
    // PrivateKeyProvider{provider_name = 1, typed_config = 3, fallback = 4}
    tls.message(6, new Writer().string(1, s.keyProvider.provider).message(3, any).bool(4, s.keyProvider.fallback));
  } else {
    tls.message(2, inlineBytes(s.privateKey));
  }
  return w.message(2, tls).finish();
}

/** DiscoveryResponse{version_info = 1, resources = 2 (Any), type_url = 4, nonce = 5} of Secrets. */
export function encodeSecretResponse(versionInfo: string, nonce: string, secrets: readonly Buffer[]): Buffer {
  const w = new Writer().string(1, versionInfo);
  for (const s of secrets) w.message(2, new Writer().string(1, SECRET_TYPE_URL).bytes(2, s));
  return w.string(4, SECRET_TYPE_URL).string(5, nonce).finish();
}
