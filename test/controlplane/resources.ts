// Envoy resources the test control plane serves, encoded with the vendored protos: a listener with an
// HTTP connection manager (routes over ADS), its route configuration, and a STATIC cluster to a local HTTP
// upstream, in shapes Envoy 1.40 accepts.
import { createHash } from 'node:crypto';
import type { PackageDefinition } from '@grpc/proto-loader';
import { loadProtos, messageCodec, type MessageCodec } from '../../src/lib/proto.js';
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
  });
  const listener: Msg = {
    name: listenerName,
    address: { socket_address: { address: c.listenerAddress ?? '127.0.0.1', port_value: c.listenerPort } },
    filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
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
  };
  return { listeners: [listener], routes: [route], clusters: [cluster] };
}
