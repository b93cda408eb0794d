// The istiod side of the proxy: one gRPC channel per Envoy stream (pilot-agent dials a fresh connection for
// every downstream stream), built from files re-read at that moment, so a rotated root or token applies to
// the next connection. Messages stay raw Buffers: we use grpc-js's channel-level Call API, which carries
// serialized bytes and lets us ask for exactly one message at a time (flow control toward istiod).
import { Channel, Metadata, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { clientCredentials, readBearerToken } from '../lib/grpc-credentials.js';
import type { Logger } from '../lib/log.js';
import { errorMessage } from '../lib/errors.js';
import type { UpstreamTls, XdsProxySettings } from './options.js';

/** Go's math.MaxInt32: pilot-agent's receive limit for istiod responses. */
export const UPSTREAM_MAX_RECV_BYTES = 2_147_483_647;
/** pilot-agent's initial HTTP/2 stream and connection window toward istiod. */
export const UPSTREAM_FLOW_CONTROL_WINDOW = 1024 * 1024;

/** The part of the proxy's settings the upstream side needs. */
export type UpstreamConfig = Pick<XdsProxySettings, 'discoveryAddress' | 'tls' | 'tokenPath' | 'clusterId' | 'xdsHeaders' | 'keepaliveTimeMs' | 'keepaliveTimeoutMs'>;

/** Channel credentials for one upstream connection. */
export async function upstreamCredentials(tls: UpstreamTls | null, log: Logger): Promise<ChannelCredentials> {
  return clientCredentials(tls, log);
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
