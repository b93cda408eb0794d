// Envoy resources the test control plane serves, encoded with the vendored protos: a listener with an
// HTTP connection manager (routes over ADS), its route configuration, and a STATIC cluster to a local HTTP
// upstream, in shapes Envoy 1.40 accepts. Optionally Istio-style mTLS on either side: the listener
// terminates it and the cluster originates it with the workload certificate ("default") and the trust
// bundle ("ROOTCA") that Envoy fetches from the agent's SDS server over the bootstrap's `sds-grpc` cluster.
import { createHash } from 'node:crypto';
import type { PackageDefinition } from '@grpc/proto-loader';
import { loadProtos, messageCodec, type MessageCodec } from '../../src/lib/proto.js';
import { Writer } from '../../src/lib/protowire.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, TYPE_PREFIX } from '../../src/xds/types.js';

export { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE };

export const PROTO_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'istio/security/v1alpha1/ca.proto',
];

export type Msg = Record<string, unknown>;

/** One resource as served: its name and its encoded message. */
export interface RawResource {
  readonly name: string;
  readonly value: Buffer;
}

/** Loaded protos plus codecs by full message name. */
export class Protos {
  readonly pkg: PackageDefinition;
  private readonly codecs = new Map<string, MessageCodec>();
  constructor() {
    this.pkg = loadProtos(PROTO_FILES);
  }
  codec(fullName: string): MessageCodec {
    let c = this.codecs.get(fullName);
    if (!c) {
      c = messageCodec(this.pkg, fullName);
      this.codecs.set(fullName, c);
    }
    return c;
  }
  /** A google.protobuf.Any for `msg` of type `fullName`. */
  any(fullName: string, msg: Msg): { type_url: string; value: Buffer } {
    return { type_url: TYPE_PREFIX + fullName, value: this.codec(fullName).encode(msg) };
  }
  /** Encodes resources of the xDS type `typeUrl` (the message type is the type URL's suffix); names come from `name`. */
  encodeResources(typeUrl: string, msgs: readonly Msg[]): RawResource[] {
    const fullName = typeUrl.slice(TYPE_PREFIX.length);
    return msgs.map((m) => {
      const name = typeof m.name === 'string' ? m.name : typeof m.cluster_name === 'string' ? m.cluster_name : '';
      if (!name) throw new Error(`resource of ${typeUrl} has no name`);
      return { name, value: this.codec(fullName).encode(m) };
    });
  }
}

export function resourceVersion(value: Buffer): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 16);
}

export interface HttpConfig {
  /** Listener bind address (default 127.0.0.1). */
  readonly listenerAddress?: string;
  readonly listenerPort: number;
  readonly upstreamAddress?: string;
  readonly upstreamPort: number;
  readonly listenerName?: string;
  readonly routeName?: string;
  readonly clusterName?: string;
  /** Added to every response as header x-served-by (handy to see a config push take effect). */
  readonly servedBy?: string;
  /**
   * Terminate mTLS on the listener as an Istio inbound does: the workload certificate and the trust bundle
   * over SDS, a client certificate required (and verified against ROOTCA), and the HTTP connection
   * manager set to `forward_client_cert_details: SANITIZE_SET` with the peer's URI, so the app receives
   * `x-forwarded-client-cert: By=<our SPIFFE ID>;Hash=...;URI=<the peer's SPIFFE ID>`.
   */
  readonly listenerMtls?: boolean;
  /** Originate mTLS to the upstream with the same SDS secrets (`true`, or with a SAN check and an SNI). */
  readonly upstreamMtls?: boolean | UpstreamMtls;
  /** One request per upstream connection, so each request makes a new (TLS) connection. */
  readonly newConnectionPerRequest?: boolean;
}

export interface UpstreamMtls {
  /** The upstream's certificate must carry this URI SAN (its SPIFFE ID), as Istio's outbound clusters check. */
  readonly san?: string;
  /** SNI sent (Istio: `outbound_.<port>_.<subset>_.<host>`). */
  readonly sni?: string;
}

/** The bootstrap's cluster to the agent's SDS server (./var/run/secrets/workload-spiffe-uds/socket). */
export const SDS_CLUSTER = 'sds-grpc';
/** Istio's SDS resource names: the workload certificate and the trust bundle. */
export const SDS_CERT = 'default';
export const SDS_ROOT = 'ROOTCA';
export const DOWNSTREAM_TLS_CONTEXT = 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
export const UPSTREAM_TLS_CONTEXT = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

// tls.proto (UpstreamTlsContext, DownstreamTlsContext, CommonTlsContext) is not among the vendored protos:
// those three messages are written field by field here; what they contain (SdsSecretConfig,
// CertificateValidationContext) comes from secret.proto/common.proto, which are.
const COMMON = { alpn: 4, sdsCert: 6, sdsValidation: 7, combinedValidation: 8 } as const;
const COMBINED = { defaultValidation: 1, sds: 2 } as const;

/** An SdsSecretConfig as Istio writes it: `name`, fetched over ADS-style gRPC from the `sds-grpc` cluster. */
export function sdsSecretConfig(p: Protos, name: string): Buffer {
  return p.codec('envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig').encode({
    name,
    sds_config: {
      api_config_source: {
        api_type: 'GRPC',
        set_node_on_first_message_only: true,
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER } }],
      },
      resource_api_version: 'V3',
    },
  });
}

/** CommonTlsContext: our certificate from SDS `default`, peers verified against SDS `ROOTCA` (and `san`). */
export function commonTlsContext(p: Protos, o: { san?: string; alpn?: readonly string[] } = {}): Buffer {
  const w = new Writer().message(COMMON.sdsCert, sdsSecretConfig(p, SDS_CERT));
  if (o.san) {
    const match = p.codec('envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext').encode({
      match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: o.san } }],
    });
    w.message(COMMON.combinedValidation, new Writer().message(COMBINED.defaultValidation, match).message(COMBINED.sds, sdsSecretConfig(p, SDS_ROOT)));
  } else {
    w.message(COMMON.sdsValidation, sdsSecretConfig(p, SDS_ROOT));
  }
  for (const a of o.alpn ?? []) w.string(COMMON.alpn, a);
  return w.finish();
}

/** DownstreamTlsContext{common_tls_context = 1, require_client_certificate = 2 (BoolValue)}. */
export function downstreamMtlsContext(p: Protos): Buffer {
  return new Writer().message(1, commonTlsContext(p)).message(2, new Writer().bool(1, true)).finish();
}

/** UpstreamTlsContext{common_tls_context = 1, sni = 2}. */
export function upstreamMtlsContext(p: Protos, o: UpstreamMtls = {}): Buffer {
  return new Writer().message(1, commonTlsContext(p, o.san ? { san: o.san } : {})).string(2, o.sni).finish();
}

function transportSocket(typeName: string, value: Buffer): Msg {
  return { name: 'envoy.transport_sockets.tls', typed_config: { type_url: TYPE_PREFIX + typeName, value } };
}

/** Listener + route + cluster, as plain proto-shaped objects. */
export function httpConfigMessages(p: Protos, c: HttpConfig): { listeners: Msg[]; routes: Msg[]; clusters: Msg[] } {
  const listenerName = c.listenerName ?? `http_${c.listenerPort}`;
  const routeName = c.routeName ?? 'local_route';
  const clusterName = c.clusterName ?? 'local_upstream';
  const hcm = p.any('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
    stat_prefix: 'test_http',
    codec_type: 'AUTO',
    rds: { route_config_name: routeName, config_source: { ads: {}, resource_api_version: 'V3' } },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: p.any('envoy.extensions.filters.http.router.v3.Router', {}) }],
    ...(c.listenerMtls ? { forward_client_cert_details: 'SANITIZE_SET', set_current_client_cert_details: { uri: true } } : {}),
  });
  const listener: Msg = {
    name: listenerName,
    address: { socket_address: { address: c.listenerAddress ?? '127.0.0.1', port_value: c.listenerPort } },
    filter_chains: [
      {
        filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }],
        ...(c.listenerMtls ? { transport_socket: transportSocket(DOWNSTREAM_TLS_CONTEXT, downstreamMtlsContext(p)) } : {}),
      },
    ],
  };
  const route: Msg = {
    name: routeName,
    virtual_hosts: [
      {
        name: 'local',
        domains: ['*'],
        routes: [{ match: { prefix: '/' }, route: { cluster: clusterName } }],
        ...(c.servedBy ? { response_headers_to_add: [{ header: { key: 'x-served-by', value: c.servedBy } }] } : {}),
      },
    ],
  };
  const cluster: Msg = {
    name: clusterName,
    type: 'STATIC',
    connect_timeout: { seconds: 1 },
    load_assignment: {
      cluster_name: clusterName,
      endpoints: [
        { lb_endpoints: [{ endpoint: { address: { socket_address: { address: c.upstreamAddress ?? '127.0.0.1', port_value: c.upstreamPort } } } }] },
      ],
    },
    ...(c.upstreamMtls ? { transport_socket: transportSocket(UPSTREAM_TLS_CONTEXT, upstreamMtlsContext(p, c.upstreamMtls === true ? {} : c.upstreamMtls)) } : {}),
    ...(c.newConnectionPerRequest ? { common_http_protocol_options: { max_requests_per_connection: { value: 1 } } } : {}),
  };
  return { listeners: [listener], routes: [route], clusters: [cluster] };
}
