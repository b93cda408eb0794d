// The istiod side of the proxy: one connection per Envoy stream (pilot-agent dials a fresh connection for
// every downstream stream), built from files re-read at that moment, so a rotated root or token applies to
// the next connection. Messages stay raw Buffers on a raw gRPC connection (lib/grpc-h2), which hands out
// exactly one message per read (flow control toward istiod).
import { GrpcConnection } from '../lib/grpc-h2/client.js';
import { clientSecureContext, readCallMetadata, type CallMetadataRead } from '../lib/grpc-credentials.js';
import type { Logger } from '../lib/log.js';
import type { XdsProxySettings } from './options.js';

/** Go's math.MaxInt32: pilot-agent's receive limit for istiod responses. */
export const UPSTREAM_MAX_RECV_BYTES = 2_147_483_647;
/** pilot-agent's initial HTTP/2 stream and connection window toward istiod. */
export const UPSTREAM_FLOW_CONTROL_WINDOW = 1024 * 1024;

/** The part of the proxy's settings the upstream side needs. */
export type UpstreamConfig = Pick<XdsProxySettings, 'discoveryAddress' | 'tls' | 'tokenPath' | 'clusterId' | 'xdsHeaders' | 'keepaliveTimeMs' | 'keepaliveTimeoutMs'>;

/** Dials istiod now (credential files read at this moment); throws, naming the file or address, when it cannot. */
export async function openUpstreamChannel(cfg: UpstreamConfig, log: Logger): Promise<GrpcConnection> {
  const tls = cfg.tls ? { secureContext: await clientSecureContext(cfg.tls, log), serverName: cfg.tls.serverName } : null;
  return new GrpcConnection({
    address: cfg.discoveryAddress,
    tls,
    keepaliveTimeMs: cfg.keepaliveTimeMs,
    keepaliveTimeoutMs: cfg.keepaliveTimeoutMs,
    windowBytes: UPSTREAM_FLOW_CONTROL_WINDOW,
  });
}

/** Per-stream metadata: `ClusterID`, every XDS_HEADER_* (`-bin` ones as bytes), and the bearer token when there is one. */
export function upstreamMetadata(cfg: UpstreamConfig, log: Logger): Promise<CallMetadataRead> {
  const headers: Record<string, string | Buffer> = {};
  for (const [k, v] of Object.entries(cfg.xdsHeaders)) headers[k] = k.toLowerCase().endsWith('-bin') ? Buffer.from(v) : v;
  return readCallMetadata({ clusterId: cfg.clusterId, headers, headerKind: 'XDS', tokenPath: cfg.tokenPath, log });
}
