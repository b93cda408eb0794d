// The proxyless-gRPC bootstrap pilot-agent always writes (GRPC_XDS_BOOTSTRAP, default
// ./etc/istio/proxy/grpc-bootstrap.json, mode 0644, atomically): the xDS server is the agent's UDS,
// the node carries the typed node metadata plus GENERATOR=grpc, and OUTPUT_CERTS adds a file_watcher
// certificate provider.
import { resolve } from 'node:path';
import type { AgentConfig } from '../config/agent-config.js';
import { goPathJoin } from '../config/gocompat.js';
import { sortKeysDeep } from '../config/proxy-config.js';
import { replaceFileSync } from '../lib/files.js';
import { typedMetadataJson } from './metadata.js';
import { bootstrapParams, type BootstrapRuntime } from './params.js';

export function buildGrpcBootstrap(cfg: AgentConfig, runtime: BootstrapRuntime = {}): Record<string, unknown> {
  const params = bootstrapParams(cfg, runtime);
  const typed = { ...params.node.typed, GENERATOR: 'grpc' };
  const loc = params.node.locality;
  const locality: Record<string, string> = {};
  if (loc.region) locality.region = loc.region;
  if (loc.zone) locality.zone = loc.zone;
  if (loc.subZone) locality.sub_zone = loc.subZone;
  const xdsUds = goPathJoin(cfg.proxy.configPath, 'XDS');
  const out: Record<string, unknown> = {
    xds_servers: [
      {
        server_uri: xdsUds !== '' ? `unix:///${xdsUds}` : cfg.proxy.discoveryAddress,
        channel_creds: [{ type: 'insecure' }],
        server_features: ['xds_v3'],
      },
    ],
    node: {
      id: cfg.nodeId,
      metadata: sortKeysDeep(typedMetadataJson(typed)),
      locality,
      UserAgentVersionType: null,
    },
  };
  const certDir = cfg.env.outputCerts;
  if (certDir !== '') {
    out.certificate_providers = {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: goPathJoin(certDir, 'cert-chain.pem'),
          private_key_file: goPathJoin(certDir, 'key.pem'),
          ca_certificate_file: goPathJoin(certDir, 'root-cert.pem'),
          refresh_interval: '900s',
        },
      },
    };
  }
  out.server_listener_resource_name_template = 'xds.istio.io/grpc/lds/inbound/%s';
  return out;
}

/** Writes grpc-bootstrap.json (GRPC_XDS_BOOTSTRAP) atomically, mode 0644. Returns the path written. */
export async function writeGrpcBootstrap(cfg: AgentConfig, runtime: BootstrapRuntime = {}): Promise<string> {
  const path = resolve(cfg.paths.cwd, cfg.env.grpcXdsBootstrap);
  const text = JSON.stringify(buildGrpcBootstrap(cfg, runtime), null, 2);
  replaceFileSync(path, text, 0o644);
  return path;
}
