// Differential test against the real Go pilot-agent (Istio 1.30, built by scripts/peers.sh): for the
// same arguments, environment, pod files and network namespace, `agent proxy --bootstrap-only` must
// write the same envoy-rev.json and grpc-bootstrap.json as pilot-agent renders for its (fake) Envoy.
//
// Both agents run one after the other in one private network namespace (only loopback up), so the
// proxy IPs are identical (INSTANCE_IP, 127.0.0.1, ::1); both are given the same PROXY_CONFIG,
// including the fake Envoy's path as binaryPath, so node.metadata.PROXY_CONFIG matches too. The
// only normalisation: none for envoy-rev.json; ISTIO_VERSION is compared as-is (both report 1.30.3).
import assert from 'node:assert/strict';
import { INJECTED_ARGS, INJECTED_ENV } from '../helpers/pod.js';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { createNetns, PEER_PATH, runGoBootstrap, runProc, type Netns } from '../helpers/go-agent.js';
import { AGENT_BIN, pilotAgentBin } from '../helpers/peers.js';
import { formatDownwardApi } from '../../src/config/downward-api.js';
import { bootstrapOverrideJson } from '../../src/bootstrap/index.js';

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly labels?: Record<string, string>;
  /** Extra files relative to the agent's cwd. */
  readonly files?: Record<string, string>;
  /** Facts the inputs must have produced (so that equality is not trivial). */
  readonly check: (bootstrap: any, grpc: any, envoyArgv: string[]) => void;
}


const POD_LABELS = {
  app: 'productpage',
  version: 'v1',
  'pod-template-hash': '6b746f74dc',
  'security.istio.io/tlsMode': 'istio',
  'service.istio.io/canonical-name': 'productpage',
  'service.istio.io/canonical-revision': 'v1',
};
const POD_ANNOTATIONS = {
  'istio.io/rev': 'default',
  'kubectl.kubernetes.io/default-container': 'productpage',
  'prometheus.io/path': '/stats/prometheus',
  'prometheus.io/port': '15020',
  'prometheus.io/scrape': 'true',
  'sidecar.istio.io/status': '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}',
};


/** A custom bootstrap template exercising the Go template features custom templates use. */
const CUSTOM_TEMPLATE = `{{- /* a comment */ -}}
{
  "rendered_by": "custom",
  "id": "{{ .nodeID }}",
  "type": {{ .nodeType | quote }},
  "ns": "{{ .metadata.Namespace }}",
  "labels": {{ toJSON .metadata.Labels }},
  "label_list": [{{ range $k, $v := .metadata.Labels }}{{ if ne $k "app" }}"{{ $k }}={{ $v | upper }}",{{ end }}{{ end }}"end"],
  "admin_port": {{ .config.ProxyAdminPort }},
  "status_port": {{ printf "%d" .config.StatusPort }},
  "drain": "{{ .config.DrainDuration }}",
  "san": {{ .pilot_SAN }},
  "runtime": {{ .runtime_flags }},
  "tags": {{ toJson .extraStatTags }},
  "n_tags": {{ len .extraStatTags }},
  "first_tag": "{{ index .extraStatTags 0 }}",
  {{- $lh := .localhost }}
  "localhost": "{{ $lh }}",
  "family": {{ if eq .dns_lookup_family "V4_ONLY" }}4{{ else if eq .dns_lookup_family "V6_ONLY" }}6{{ else }}0{{ end }},
  "zipkin": "{{ .zipkin | default "none" }}",
  "both": {{ and .log_json .metadata_discovery | not }},
  "either": "{{ or .outlier_log_path "no-outlier" }}",
  {{- with .metadata.Labels }}
  "app": "{{ .app }}",
  {{- else }}
  "app": "",
  {{- end }}
  "js": "{{ js "x<y=z&w>" }}",
  "prefixes": [{{ range $i, $p := .inclusionPrefix }}{{ if $i }},{{ end }}"{{ $p }}"{{ end }}],
  "trimmed": "{{ trimSuffix ".svc.cluster.local" .nodeID }}",
  "meta": {{ .meta_json_str }}
}
`;

const CASES: readonly Case[] = [
  {
    name: "the injector's default sidecar",
    args: INJECTED_ARGS,
    env: INJECTED_ENV,
    labels: POD_LABELS,
    annotations: POD_ANNOTATIONS,
    check: (b, g, argv) => {
      assert.equal(b.node.id, 'sidecar~10.244.0.17~productpage-v1-6b746f74dc-9stvs.default~default.svc.cluster.local');
      assert.equal(b.node.cluster, 'productpage.default');
      assert.equal(b.node.metadata.LABELS['pod-template-hash'], undefined);
      assert.equal(b.node.metadata.POD_PORTS, '[{"name":"http","containerPort":9080,"protocol":"TCP"}]');
      assert.equal(b.node.metadata.PROXY_CONFIG.concurrency, 2);
      assert.equal(g.node.metadata.GENERATOR, 'grpc');
      assert.deepEqual(argv.slice(argv.indexOf('-l'), argv.indexOf('-l') + 4), ['-l', 'warning', '--component-log-level', 'misc:error']);
    },
  },
  {
    name: 'annotations: proxy.istio.io/config (YAML), stats, locality, discovery/status overrides',
    args: INJECTED_ARGS,
    env: INJECTED_ENV,
    labels: { ...POD_LABELS, 'topology.istio.io/locality': 'us-east1.us-east1-b.rack7' },
    annotations: {
      ...POD_ANNOTATIONS,
      'proxy.istio.io/config': 'tracing:\n  zipkin:\n    address: zipkin.istio-system:9411\n  sampling: 10\nholdApplicationUntilProxyStarts: yes\nproxyMetadata:\n  ISTIO_META_DNS_CAPTURE: "true"\n  FOO: bar\nconcurrency: 3\n',
      'sidecar.istio.io/statsInclusionPrefixes': 'upstream_rq,http.{pod_ip}_',
      'sidecar.istio.io/statsInclusionSuffixes': 'upstream_cx_active',
      'sidecar.istio.io/statsInclusionRegexps': 'http\\..*_(rq|cx)',
      'sidecar.istio.io/extraStatTags': 'request_host,destination_port',
      'sidecar.istio.io/statsHistogramBuckets': '{"istiocustom":[1,5,10,50],"cluster.xds-grpc":[1,2]}',
      'sidecar.istio.io/statsFlushInterval': '15s',
      'sidecar.istio.io/statsEvictionInterval': '30s',
      'sidecar.istio.io/discoveryAddress': 'istiod-canary.istio-system.svc:15012',
      'status.sidecar.istio.io/port': '15030',
    },
    check: (b) => {
      assert.equal(b.tracing.http.name, 'envoy.tracers.zipkin');
      assert.equal(b.stats_flush_interval, '15s');
      assert.equal(b.stats_eviction_interval, '30s');
      assert.equal(b.node.metadata.PROXY_CONFIG.discoveryAddress, 'istiod-canary.istio-system.svc:15012');
      assert.equal(b.node.metadata.PROXY_CONFIG.holdApplicationUntilProxyStarts, true);
      assert.equal(b.static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, 15030);
      assert.deepEqual(b.node.locality, { region: 'us-east1', zone: 'us-east1-b', sub_zone: 'rack7' });
      assert.equal(b.node.metadata.DNS_CAPTURE, 'true');
    },
  },
  {
    name: 'PROXY_CONFIG: auth NONE, runtime values, stats matcher, access-log service with ISTIO_MUTUAL, datadog with $(HOST_IP)',
    args: ['proxy', 'sidecar', '--outlierLogPath=/dev/stderr', '--stsPort=15463', '--log_as_json'],
    env: {
      ...INJECTED_ENV,
      PROXY_CONFIG: JSON.stringify({
        discoveryAddress: 'localhost:15010',
        controlPlaneAuthPolicy: 'NONE',
        drainDuration: '30s',
        terminationDrainDuration: '12s',
        proxyAdminPort: 15100,
        statNameLength: 0,
        extraStatTags: ['a_tag', 'b_tag'],
        proxyStatsMatcher: { inclusionPrefixes: ['listener'], inclusionRegexps: ['.*osconfig.*'] },
        runtimeValues: { 'envoy.reloadable_features.fixed_heap_use_allocated': 'false', 're2.max_program_size.error_level': '', 'x.y': '42' },
        proxyMetadata: { ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS: '1000', METRICS_LOCALHOST_ACCESS_ONLY: 'true' },
        statsCompression: false,
        meshId: 'mesh-a',
        interceptionMode: 'TPROXY',
        envoyAccessLogService: { address: 'als.istio-system:9000', tlsSettings: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/istio-system/sa/als'] } },
        tracing: { datadog: { address: '$(HOST_IP):8126' } },
        readinessProbe: { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 5 },
        proxyHeaders: { server: { disabled: true }, forwardedClientCert: 'SANITIZE' },
        fileFlushInterval: '2.5s',
      }),
    },
    check: (b, _g, argv) => {
      assert.equal(b.admin.address.socket_address.port_value, 15100);
      assert.deepEqual(b.static_resources.clusters.find((c: any) => c.name === 'datadog_agent').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: '172.18.0.2', port_value: 8126 });
      assert.equal(b.static_resources.listeners[0].name, '127.0.0.1_15090');
      assert.ok(b.application_log_config.log_format.json_format);
      assert.equal(b.node.metadata.STS_PORT, '15463');
      assert.equal(b.node.metadata.PILOT_SAN, undefined);
      assert.equal(argv[argv.indexOf('--file-flush-interval-msec') + 1], '2500');
    },
  },
  {
    name: 'ISTIO_META_* and ISTIO_METAJSON_* variety, HBONE, SotW, exit-on-zero, OUTPUT_CERTS',
    args: ['proxy', 'router', '--serviceCluster', 'ingress'],
    env: {
      POD_NAME: 'gw-1',
      POD_NAMESPACE: 'istio-system',
      INSTANCE_IP: '10.0.0.9',
      PROXY_CONFIG: 'serviceCluster: ""\n',
      ISTIO_META_DNS_CAPTURE: 'TRUE',
      ISTIO_META_ENABLE_HBONE: 'true',
      ISTIO_META_REQUESTED_NETWORK_VIEW: 'net-a,net-b',
      ISTIO_META_LOAD_STATS_CONFIG_JSON: '{"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "lrs"}}]}',
      ISTIO_META_UNKNOWN_KEY: 'kept-raw',
      ISTIO_METAJSON_LABELS: '{"app":"gateway","istio":"ingressgateway","istio-locality":"eu.eu-west"}',
      ISTIO_METAJSON_EXTRA: '{"nested":{"b":1,"a":[true,null,"x"]},"PLATFORM_METADATA":{"k":"v"}}',
      ISTIO_DELTA_XDS: 'false',
      EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true',
      ENVOY_SKIP_DEPRECATED_LOGS: 'false',
      OUTPUT_CERTS: '/var/run/certs-out',
      COMPLIANCE_POLICY: 'fips-140-2',
      ENVOY_STATUS_PORT: '15121',
      ENVOY_PROMETHEUS_PORT: '15190',
    },
    check: (b, g) => {
      assert.equal(b.dynamic_resources.ads_config.api_type, 'GRPC');
      assert.equal(b.bootstrap_extensions.length, 1);
      assert.deepEqual(b.cluster_manager.load_stats_config.grpc_services, [{ envoy_grpc: { cluster_name: 'lrs' } }]);
      assert.equal(b.node.cluster, 'ingress');
      assert.equal(b.node.metadata.nested.b, 1);
      assert.equal(b.layered_runtime.layers[0].static_layer['envoy.reloadable_features.google_grpc_disable_tls_13'], true);
      assert.equal(g.certificate_providers.default.config.certificate_file, '/var/run/certs-out/cert-chain.pem');
    },
  },
  {
    name: 'mesh config file defaultConfig under PROXY_CONFIG (YAML), metrics service with MUTUAL TLS + keepalive, lightstep',
    args: ['proxy', 'sidecar', '--meshConfig', './etc/istio/config/mesh'],
    env: {
      POD_NAME: 'web-0',
      POD_NAMESPACE: 'apps',
      INSTANCE_IP: '10.9.8.7',
      PROXY_CONFIG: 'statusPort: 15999\nproxyMetadata:\n  ISTIO_META_FROM_ENV: "1"\n',
    },
    files: {
      'etc/istio/config/mesh': [
        'accessLogFile: /dev/stdout',
        'defaultConfig:',
        '  discoveryAddress: istiod.mesh-b.svc:15012',
        '  tracingServiceName: CANONICAL_NAME_AND_NAMESPACE',
        '  proxyMetadata:',
        '    ISTIO_META_FROM_MESH: "yes"',
        '  envoyMetricsService:',
        '    address: metrics.mesh-b:15000',
        '    tlsSettings: {mode: MUTUAL, clientCertificate: /etc/ms/c.pem, privateKey: /etc/ms/k.pem, caCertificates: /etc/ms/ca.pem, sni: ms.local}',
        '    tcpKeepalive: {probes: 3, time: 10s, interval: 5s}',
        '  tracing:',
        '    lightstep: {address: "lightstep.mesh-b:8080", accessToken: "tok123"}',
        '',
      ].join('\n'),
    },
    check: (b) => {
      assert.equal(b.node.cluster, 'istio-proxy.apps');
      assert.equal(b.node.metadata.PROXY_CONFIG.statusPort, 15999);
      assert.deepEqual(b.node.metadata.PROXY_CONFIG.proxyMetadata, { ISTIO_META_FROM_ENV: '1', ISTIO_META_FROM_MESH: 'yes' });
      const ms = b.static_resources.clusters.find((c: any) => c.name === 'envoy_metrics_service');
      assert.ok(ms.transport_socket && ms.upstream_connection_options, JSON.stringify(ms));
      assert.equal(b.tracing.http.name, 'envoy.tracers.lightstep');
    },
  },
  {
    name: 'a custom Go template (ISTIO_BOOTSTRAP) and ISTIO_BOOTSTRAP_OVERRIDE',
    args: ['proxy', 'sidecar'],
    env: {
      POD_NAME: 'tmpl-0',
      POD_NAMESPACE: 'tmpl',
      INSTANCE_IP: 'fd00::17',
      HOST_IP: 'fd00::1',
      ISTIO_BOOTSTRAP: './custom/bootstrap.tmpl.json',
      ISTIO_BOOTSTRAP_OVERRIDE: './custom/override.yaml',
      ISTIO_METAJSON_LABELS: '{"app":"tmpl","tier":"back"}',
      PROXY_CONFIG: JSON.stringify({ runtimeValues: { a: 'b' }, extraStatTags: ['t1', 't2'] }),
    },
    files: {
      'custom/bootstrap.tmpl.json': CUSTOM_TEMPLATE,
      'custom/override.yaml': 'node:\n  metadata:\n    HOST: $(HOST_IP)\n    URL: "http://[$(HOST_IP)]:8080/<x>&y"\nlayered_runtime: {layers: [{name: extra, static_layer: {k: on}}]}\n',
    },
    check: (b, _g, argv) => {
      assert.equal(b.rendered_by, 'custom');
      assert.equal(b.ns, 'tmpl');
      assert.deepEqual(b.labels, { app: 'tmpl', tier: 'back' });
      assert.ok(argv.includes('--config-yaml'), argv.join(' '));
    },
  },
];

async function prepareCwd(c: Case): Promise<string> {
  const cwd = await mkdtemp(join(tmpdir(), 'diff-bs-'));
  await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
  if (c.labels) await writeFile(join(cwd, 'etc/istio/pod/labels'), formatDownwardApi(c.labels));
  if (c.annotations) await writeFile(join(cwd, 'etc/istio/pod/annotations'), formatDownwardApi(c.annotations));
  for (const [rel, text] of Object.entries(c.files ?? {})) {
    await mkdir(join(cwd, rel, '..'), { recursive: true });
    await writeFile(join(cwd, rel), text);
  }
  return cwd;
}

void describe('bootstrap: differential against the Go pilot-agent 1.30', () => {
  let netns: Netns;
  const dirs: string[] = [];

  before(async () => {
    assert.doesNotThrow(pilotAgentBin, 'the Go pilot-agent must be installed: bash scripts/peers.sh istio');
    netns = await createNetns('mdiff');
  });
  after(async () => {
    await netns?.dispose();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  for (const c of CASES) {
    void it(c.name, async () => {
      const goCwd = await prepareCwd(c);
      const ourCwd = await prepareCwd(c);
      dirs.push(goCwd, ourCwd);
      const go = await runGoBootstrap({ env: c.env, args: c.args, cwd: goCwd, netns, timeoutMs: 60_000 });
      assert.equal(go.exitCode, 0, go.agentOutput);

      // the same PROXY_CONFIG the Go agent got (the helper adds binaryPath)
      const given = c.env.PROXY_CONFIG ? (parseYaml(c.env.PROXY_CONFIG) as Record<string, unknown> | null) : null;
      const env = { PATH: PEER_PATH, CLOUD_PLATFORM: 'none', ...c.env, PROXY_CONFIG: JSON.stringify({ ...(given ?? {}), binaryPath: go.fakeEnvoyPath }) };
      const [cmd, args] = netns.wrap(AGENT_BIN, [...c.args, '--bootstrap-only']);
      const ours = await runProc(cmd, args, { cwd: ourCwd, env, timeoutMs: 60_000 });
      assert.equal(ours.code, 0, ours.stdout + ours.stderr);

      const ourText = await readFile(join(ourCwd, 'etc/istio/proxy/envoy-rev.json'), 'utf8');
      if (c.env.ISTIO_BOOTSTRAP) assert.equal(ourText, go.bootstrapText, 'a Go template renders to the same text');
      assert.deepEqual(JSON.parse(ourText), go.bootstrap);
      c.check(go.bootstrap, go.grpcBootstrap, go.envoyArgv);
      if (c.env.ISTIO_BOOTSTRAP_OVERRIDE) {
        const goYaml = go.envoyArgv[go.envoyArgv.indexOf('--config-yaml') + 1];
        assert.equal(await bootstrapOverrideJson(join(ourCwd, c.env.ISTIO_BOOTSTRAP_OVERRIDE), c.env.HOST_IP ?? ''), goYaml);
      }
      assert.equal(go.envoyArgv[go.envoyArgv.indexOf('-c') + 1], 'etc/istio/proxy/envoy-rev.json');

      const ourGrpc = JSON.parse(await readFile(join(ourCwd, 'etc/istio/proxy/grpc-bootstrap.json'), 'utf8')) as unknown;
      assert.ok(go.grpcBootstrap, 'the Go agent wrote grpc-bootstrap.json');
      assert.deepEqual(ourGrpc, go.grpcBootstrap);

      const token = join('etc/istio/proxy/lightstep_access_token.txt');
      if (JSON.stringify(go.bootstrap).includes('lightstep')) {
        assert.equal(await readFile(join(ourCwd, token), 'utf8'), await readFile(join(goCwd, token), 'utf8'));
      }
    });
  }
});
