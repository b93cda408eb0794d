// Differential test of Envoy's command line: for the same arguments, environment, pod files and
// network namespace, the argv OUR agent gives Envoy must be the Go pilot-agent 1.30's argv.
//
// - The Go agent runs through runGoBootstrap (a fake Envoy that records its argv and exits).
// - Ours runs with a fake Envoy too (records its argv and the files it was given, then sleeps; the
//   agent's process group is killed once the argv is recorded), twice:
//     `--disable-hot-restart` (pilot-agent's exact behaviour): argv identical to Go's;
//     default (hot restart on): Go's argv without `--disable-hot-restart`, plus
//     `--restart-epoch 0 --use-dynamic-base-id --base-id-path <configDir>/… --parent-shutdown-time-s <n>`.
// - Both agents run one after the other in one private network namespace (only loopback up), so the
//   node IPs (INSTANCE_IP, 127.0.0.1, ::1) that pick `--local-address-ip-version` are the same; the
//   IPv6 case uses a namespace whose only private address is an IPv6 one (on a veth end).
// - grpc-bootstrap.json is compared too (the fake Envoy's path in node.metadata.PROXY_CONFIG.binaryPath
//   is the only difference, and is normalised). The Envoy bootstrap itself is compared by
//   test/bootstrap/differential.test.ts.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { createNetns, PEER_PATH, runGoBootstrap, runProc, startProc, type Netns } from '../helpers/go-agent.js';
import { AGENT_BIN, pilotAgentBin } from '../helpers/peers.js';
import { downwardApi, INJECTED_ARGS, INJECTED_ENV } from '../helpers/pod.js';
import { createCaPki } from '../helpers/pki.js';

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  /** Extra files relative to the agent's cwd. */
  readonly files?: Record<string, string>;
  /** Run in the namespace whose only private address is the IPv6 V6_POD_IP. */
  readonly v6Only?: boolean;
  /** What the Go argv must contain for these inputs (so that equality is not trivial). */
  readonly expect: (argv: readonly string[]) => void;
}

const POD_LABELS = { app: 'productpage', version: 'v1', 'security.istio.io/tlsMode': 'istio', 'service.istio.io/canonical-name': 'productpage' };
const POD_ANNOTATIONS = { 'kubectl.kubernetes.io/default-container': 'productpage', 'sidecar.istio.io/status': '{"initContainers":["istio-init"],"containers":["istio-proxy"]}' };

const V6_POD_IP = 'fd00:10:244::17';

const argAfter = (argv: readonly string[], flag: string): string | undefined => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);

const CASES: readonly Case[] = [
  {
    name: "the injector's default sidecar",
    args: INJECTED_ARGS,
    env: INJECTED_ENV,
    labels: POD_LABELS,
    annotations: POD_ANNOTATIONS,
    expect: (argv) => {
      assert.deepEqual(argv.slice(0, 2), ['-c', 'etc/istio/proxy/envoy-rev.json']);
      assert.equal(argAfter(argv, '--drain-time-s'), '45');
      assert.equal(argAfter(argv, '--local-address-ip-version'), 'v4');
      assert.equal(argAfter(argv, '-l'), 'warning');
      assert.equal(argAfter(argv, '--component-log-level'), 'misc:error');
      assert.equal(argAfter(argv, '--concurrency'), '2'); // ISTIO_CPU_LIMIT
      assert.ok(argv.includes('--skip-deprecated-logs'));
    },
  },
  {
    name: '--proxyLogLevel with component levels (they win over --proxyComponentLogLevel; bad entries dropped)',
    args: ['proxy', 'sidecar', '--proxyLogLevel=debug,upstream:trace,a:b:c,connection:info', '--proxyComponentLogLevel=misc:error'],
    env: INJECTED_ENV,
    expect: (argv) => {
      assert.equal(argAfter(argv, '-l'), 'debug');
      assert.equal(argAfter(argv, '--component-log-level'), 'upstream:trace,connection:info');
    },
  },
  {
    name: 'component levels only, no global level',
    args: ['proxy', 'sidecar', '--proxyLogLevel=upstream:trace'],
    env: { ...INJECTED_ENV, PROXY_CONFIG: '' },
    expect: (argv) => {
      assert.ok(!argv.includes('-l'), argv.join(' '));
      assert.equal(argAfter(argv, '--component-log-level'), 'upstream:trace');
    },
  },
  {
    name: 'concurrency from ISTIO_CPU_LIMIT',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, ISTIO_CPU_LIMIT: '3' },
    expect: (argv) => assert.equal(argAfter(argv, '--concurrency'), '3'),
  },
  {
    name: 'concurrency from PROXY_CONFIG (over ISTIO_CPU_LIMIT), drainDuration, fileFlushInterval, fileFlushMinSizeKb',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, PROXY_CONFIG: JSON.stringify({ concurrency: 5, drainDuration: '17s', fileFlushInterval: '2.5s', fileFlushMinSizeKb: 64 }) },
    expect: (argv) => {
      assert.equal(argAfter(argv, '--concurrency'), '5');
      assert.equal(argAfter(argv, '--drain-time-s'), '17');
      assert.equal(argAfter(argv, '--file-flush-interval-msec'), '2500');
      assert.equal(argAfter(argv, '--file-flush-min-size-kb'), '64');
    },
  },
  {
    name: 'concurrency 0 in PROXY_CONFIG (YAML): no --concurrency',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, PROXY_CONFIG: 'concurrency: 0\ndrainDuration: 2s\n' },
    expect: (argv) => {
      assert.ok(!argv.includes('--concurrency'), argv.join(' '));
      assert.equal(argAfter(argv, '--drain-time-s'), '2');
    },
  },
  {
    name: 'ISTIO_BOOTSTRAP_OVERRIDE (YAML with $(HOST_IP)) becomes --config-yaml JSON',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, ISTIO_BOOTSTRAP_OVERRIDE: './custom/override.yaml' },
    files: {
      'custom/override.yaml': [
        'tracing:',
        '  http:',
        '    name: envoy.tracers.zipkin',
        '    typed_config:',
        '      "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig',
        '      collector_cluster: zipkin',
        '      collector_endpoint: /api/v2/spans',
        'node:',
        '  metadata: {HOST: "$(HOST_IP):8126", flag: on, n: 10, f: 1.5, empty: null, list: [b, a]}',
        'admin: {address: {socket_address: {port_value: 15000, address: 127.0.0.1}}}',
        '',
      ].join('\n'),
    },
    expect: (argv) => {
      const json = argAfter(argv, '--config-yaml');
      assert.ok(json, argv.join(' '));
      assert.equal((JSON.parse(json) as { node: { metadata: { HOST: string } } }).node.metadata.HOST, '172.18.0.2:8126');
    },
  },
  {
    name: 'ENVOY_SKIP_DEPRECATED_LOGS=false, ISTIO_ENVOY_ENABLE_CORE_DUMP=true',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, ENVOY_SKIP_DEPRECATED_LOGS: 'false', ISTIO_ENVOY_ENABLE_CORE_DUMP: 'true' },
    expect: (argv) => {
      assert.ok(!argv.includes('--skip-deprecated-logs'), argv.join(' '));
      assert.ok(argv.includes('--enable-core-dump'), argv.join(' '));
    },
  },
  {
    // pilot-agent adds 127.0.0.1 and ::1 when the host has no private IP, so v6 needs an IPv6-only interface
    name: 'IPv6 INSTANCE_IP on an IPv6-only pod interface: --local-address-ip-version v6',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, INSTANCE_IP: V6_POD_IP, HOST_IP: 'fd00:172:18::2' },
    v6Only: true,
    expect: (argv) => assert.equal(argAfter(argv, '--local-address-ip-version'), 'v6'),
  },
  {
    name: 'IPv6 INSTANCE_IP and no private IP on the host: v4 (127.0.0.1 and ::1 are added)',
    args: INJECTED_ARGS,
    env: { ...INJECTED_ENV, INSTANCE_IP: 'fd00:10:244::17' },
    expect: (argv) => assert.equal(argAfter(argv, '--local-address-ip-version'), 'v4'),
  },
  {
    name: 'router, legacy --concurrency flag, trace level',
    args: ['proxy', 'router', '--domain', 'istio-system.svc.cluster.local', '--proxyLogLevel=trace', '--concurrency=4', '--serviceCluster', 'istio-ingressgateway'],
    env: {
      POD_NAME: 'istio-ingressgateway-7d9c5f8b4-x2x4z',
      POD_NAMESPACE: 'istio-system',
      INSTANCE_IP: '10.244.0.9',
      SERVICE_ACCOUNT: 'istio-ingressgateway-service-account',
      HOST_IP: '172.18.0.2',
      ISTIO_CPU_LIMIT: '2',
      PROXY_CONFIG: '{}',
      ISTIO_META_CLUSTER_ID: 'Kubernetes',
      ISTIO_META_WORKLOAD_NAME: 'istio-ingressgateway',
      ISTIO_META_MESH_ID: 'cluster.local',
    },
    expect: (argv) => {
      assert.equal(argAfter(argv, '-l'), 'trace');
      assert.equal(argAfter(argv, '--concurrency'), '4');
      assert.ok(!argv.includes('--component-log-level'), argv.join(' ')); // no default for --proxyComponentLogLevel
    },
  },
];

function fakeEnvoyScript(outDir: string): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh
# Stand-in for Envoy: records argv and the -c file, marks done, then waits to be killed.
out=${q(outDir)}
: > "$out/argv.tmp"
prev=""
for a in "$@"; do
  printf '%s\\n' "$a" >> "$out/argv.tmp"
  if [ "$prev" = "-c" ]; then cp "$a" "$out/bootstrap.json"; fi
  prev="$a"
done
mv "$out/argv.tmp" "$out/argv.txt"
exec sleep 60
`;
}

interface OurRun {
  argv: string[];
  grpcBootstrap: unknown;
  output: string;
}

/** Runs our agent with a recording fake Envoy; returns once Envoy's argv is recorded (agent killed). */
async function runOurs(netns: Netns, c: Case, cwd: string, scratch: string, extraArgs: readonly string[]): Promise<OurRun> {
  const outDir = await mkdtemp(join(scratch, 'out-'));
  const fake = join(outDir, 'fake-envoy.sh');
  await writeFile(fake, fakeEnvoyScript(outDir));
  await chmod(fake, 0o755);
  const given = c.env.PROXY_CONFIG ? (parseYaml(c.env.PROXY_CONFIG) as Record<string, unknown> | null) : null;
  const env = { PATH: PEER_PATH, CLOUD_PLATFORM: 'none', ...c.env, PROXY_CONFIG: JSON.stringify({ ...(given ?? {}), binaryPath: fake }) };
  const [cmd, args] = netns.wrap(AGENT_BIN, [...c.args, ...extraArgs]);
  const p = startProc(cmd, args, { cwd, env });
  try {
    const argvFile = join(outDir, 'argv.txt');
    const deadline = Date.now() + 30_000;
    let exited = false;
    void p.exited.then(() => (exited = true));
    while (!existsSync(argvFile)) {
      if (exited || Date.now() > deadline) {
        throw new Error(`our agent never started Envoy (${exited ? 'it exited' : 'timeout'}); output:\n${p.output()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const argv = (await readFile(argvFile, 'utf8')).split('\n').slice(0, -1);
    const grpcFile = join(cwd, 'etc/istio/proxy/grpc-bootstrap.json');
    const grpcBootstrap = existsSync(grpcFile) ? (JSON.parse(await readFile(grpcFile, 'utf8')) as unknown) : undefined;
    return { argv, grpcBootstrap: normaliseBinaryPath(grpcBootstrap, fake), output: p.output() };
  } finally {
    await p.stop(0); // the argv is all we need: SIGKILL the agent and its fake Envoy right away
  }
}

/** Replaces the fake Envoy's path (node.metadata.PROXY_CONFIG.binaryPath) with a placeholder. */
function normaliseBinaryPath(doc: unknown, path: string): unknown {
  return doc === undefined ? undefined : (JSON.parse(JSON.stringify(doc).split(JSON.stringify(path).slice(1, -1)).join('<fake-envoy>')) as unknown);
}

/** A pod working directory: pod files, the case's files, and the root cert both agents need to start. */
async function prepareCwd(c: Case, scratch: string, rootCertPem: string): Promise<string> {
  const cwd = await mkdtemp(join(scratch, 'pod-'));
  await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
  await mkdir(join(cwd, 'var/run/secrets/istio'), { recursive: true });
  await writeFile(join(cwd, 'var/run/secrets/istio/root-cert.pem'), rootCertPem);
  if (c.labels) await writeFile(join(cwd, 'etc/istio/pod/labels'), downwardApi(c.labels));
  if (c.annotations) await writeFile(join(cwd, 'etc/istio/pod/annotations'), downwardApi(c.annotations));
  for (const [rel, text] of Object.entries(c.files ?? {})) {
    await mkdir(dirname(join(cwd, rel)), { recursive: true });
    await writeFile(join(cwd, rel), text);
  }
  return cwd;
}

void describe("Envoy argv: differential against the Go pilot-agent 1.30", { timeout: 120_000 }, () => {
  let netns: Netns | undefined;
  let netns6: Netns | undefined;
  let scratch: string | undefined;
  const rootCertPem = createCaPki().rootCertPem;

  before(async () => {
    // fail (not skip) with a clear message when the oracle is missing
    assert.doesNotThrow(pilotAgentBin, 'the Go pilot-agent must be installed: bash scripts/peers.sh istio');
    scratch = await mkdtemp(join(tmpdir(), 'argv-diff-'));
    netns = await createNetns('margv');
    // an IPv6-only pod: eth0 (one end of a veth pair kept inside the namespace) has only fd00:10:244::17
    netns6 = await createNetns('margv6');
    for (const cmd of [
      ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer'],
      ['addr', 'add', `${V6_POD_IP}/64`, 'dev', 'eth0', 'nodad'],
      ['link', 'set', 'eth0', 'up'],
      ['link', 'set', 'eth0peer', 'up'],
    ]) {
      const r = await runProc('ip', ['-n', netns6.name, ...cmd], { env: { PATH: PEER_PATH }, timeoutMs: 10_000 });
      assert.equal(r.code, 0, `ip -n ${netns6.name} ${cmd.join(' ')}: ${r.stderr}`);
    }
  });
  after(async () => {
    await netns?.dispose();
    await netns6?.dispose();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  for (const c of CASES) {
    void it(c.name, async () => {
      const ns = c.v6Only ? netns6! : netns!;
      const goCwd = await prepareCwd(c, scratch!, rootCertPem);
      const go = await runGoBootstrap({ env: c.env, args: c.args, cwd: goCwd, netns: ns, timeoutMs: 60_000 });
      assert.equal(go.exitCode, 0, go.agentOutput);
      c.expect(go.envoyArgv);
      assert.ok(go.envoyArgv.includes('--disable-hot-restart'), go.envoyArgv.join(' '));

      // pilot-agent's exact behaviour
      const exact = await runOurs(ns, c, await prepareCwd(c, scratch!, rootCertPem), scratch!, ['--disable-hot-restart']);
      assert.deepEqual(exact.argv, go.envoyArgv, `argv with --disable-hot-restart\n${exact.output.slice(-3000)}`);
      assert.ok(go.grpcBootstrap, 'the Go agent wrote grpc-bootstrap.json');
      assert.deepEqual(exact.grpcBootstrap, normaliseBinaryPath(go.grpcBootstrap, go.fakeEnvoyPath), 'grpc-bootstrap.json');

      // hot restart on (our default): the same argv plus the epoch-0 arguments
      const hotCwd = await prepareCwd(c, scratch!, rootCertPem);
      const hot = await runOurs(ns, c, hotCwd, scratch!, []);
      const n = hot.argv.length;
      const tail = hot.argv.slice(n - 7);
      assert.deepEqual(hot.argv.slice(0, n - 7), go.envoyArgv.filter((a) => a !== '--disable-hot-restart'), `argv with hot restart\n${hot.output.slice(-3000)}`);
      assert.deepEqual([tail[0], tail[1], tail[2], tail[3], tail[5]], ['--restart-epoch', '0', '--use-dynamic-base-id', '--base-id-path', '--parent-shutdown-time-s']);
      assert.equal(tail[4], join(hotCwd, 'etc/istio/proxy/envoy-hot-restart-base-id'));
      const drainS = Number(argAfter(go.envoyArgv, '--drain-time-s'));
      assert.match(tail[6]!, /^\d+$/);
      assert.ok(Number(tail[6]) > drainS, `parent shutdown ${tail[6]} s must exceed the drain time ${drainS} s`);
    });
  }
});
