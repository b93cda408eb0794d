// The istiod side of the proxy: one gRPC channel per Envoy stream (pilot-agent dials a fresh connection for
// every downstream stream), built from files re-read at that moment, so a rotated root or token applies to
// the next connection. Messages stay raw Buffers: we use grpc-js's channel-level Call API, which carries
// serialized bytes and lets us ask for exactly one message at a time (flow control toward istiod).
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { Channel, Metadata, credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import type { Logger } from '../lib/log.js';
import { errorMessage } from '../lib/errors.js';
import type { UpstreamTls, XdsProxySettings } from './options.js';

/** Go's math.MaxInt32: pilot-agent's receive limit for istiod responses. */
export const UPSTREAM_MAX_RECV_BYTES = 2_147_483_647;
/** pilot-agent's initial HTTP/2 stream and connection window toward istiod. */
export const UPSTREAM_FLOW_CONTROL_WINDOW = 1024 * 1024;

/** The part of the proxy's settings the upstream side needs. */
export type UpstreamConfig = Pick<XdsProxySettings, 'discoveryAddress' | 'tls' | 'tokenPath' | 'clusterId' | 'xdsHeaders' | 'keepaliveTimeMs' | 'keepaliveTimeoutMs'>;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

async function clientKeyCert(tls: UpstreamTls, log: Logger): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (!tls.clientCertChainPath || !tls.clientKeyPath) return undefined;
  let cert: Buffer;
  try {
    cert = await readFile(tls.clientCertChainPath);
    const leaf = new X509Certificate(cert);
    if (Date.parse(leaf.validTo) <= Date.now()) {
      log.warn('cert expired, using token instead', { path: tls.clientCertChainPath });
      return undefined;
    }
  } catch (e) {
    log.warn(`cannot parse the cert chain, using token instead: ${errorMessage(e)}`, { path: tls.clientCertChainPath });
    return undefined;
  }
  return { cert, key: await readFile(tls.clientKeyPath) };
}

/** Channel credentials for one connection; throws (naming the file) when the roots cannot be used. */
export async function upstreamCredentials(tls: UpstreamTls | null, log: Logger): Promise<ChannelCredentials> {
  if (!tls) return credentials.createInsecure();
  let ca: Buffer | undefined;
  if (tls.rootCertPath !== null) {
    ca = await readFile(tls.rootCertPath);
    if (!PEM_CERT.test(ca.toString('latin1')))
      throw new Error(`failed to create TLS dial option with root certificates: no PEM certificate in ${tls.rootCertPath}`);
  }
  const client = await clientKeyCert(tls, log);
  const ctx = createSecureContext({
    minVersion: 'TLSv1.2',
    ...(ca ? { ca } : {}),
    ...(client ? { cert: client.cert, key: client.key } : {}),
  });
  return credentials.createFromSecureContext(ctx);
}

export function upstreamChannelOptions(cfg: UpstreamConfig): ChannelOptions {
  return {
    'grpc.keepalive_time_ms': cfg.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': cfg.keepaliveTimeoutMs,
    'grpc.max_receive_message_length': UPSTREAM_MAX_RECV_BYTES,
    'grpc.max_send_message_length': -1,
    'grpc-node.flow_control_window': UPSTREAM_FLOW_CONTROL_WINDOW,
    // A connection of our own per stream, never shared through grpc-js's global subchannel pool.
    'grpc.use_local_subchannel_pool': 1,
    // Streams are never retried by the proxy: Envoy reconnects and re-subscribes.
    'grpc.enable_retries': 0,
    ...(cfg.tls ? { 'grpc.ssl_target_name_override': cfg.tls.serverName } : {}),
  };
}

export async function openUpstreamChannel(cfg: UpstreamConfig, log: Logger): Promise<Channel> {
  const creds = await upstreamCredentials(cfg.tls, log);
  return new Channel(cfg.discoveryAddress, creds, upstreamChannelOptions(cfg));
}

/** Reads the bearer token as pilot-agent's token plugin does: trimmed; a missing file is a warning and no header. */
export async function readBearerToken(tokenPath: string | null, log: Logger): Promise<string> {
  if (!tokenPath) return '';
  try {
    return (await readFile(tokenPath, 'utf8')).trim();
  } catch (e) {
    log.warn(`failed to fetch token from file: ${errorMessage(e)}`);
    return '';
  }
}

/** Per-stream metadata: `ClusterID`, every XDS_HEADER_*, and `authorization: Bearer <token>` when there is a token. */
export async function upstreamMetadata(cfg: UpstreamConfig, log: Logger): Promise<Metadata> {
  const md = new Metadata();
  md.set('ClusterID', cfg.clusterId);
  for (const [k, v] of Object.entries(cfg.xdsHeaders)) {
    try {
      if (k.toLowerCase().endsWith('-bin')) md.set(k, Buffer.from(v));
      else md.set(k, v);
    } catch (e) {
      log.warn(`ignoring XDS header ${k}: ${errorMessage(e)}`);
    }
  }
  const token = await readBearerToken(cfg.tokenPath, log);
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}
