import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { loadProxyCommand } from '../cli/proxy-load.js';
import { memoryLogger } from '../lib/log.js';
import {
  bootstrapOverrideJson,
  buildBootstrap,
  buildGrpcBootstrap,
  generateBootstrap,
  probeBootstrapRuntime,
  writeBootstrap,
  writeGrpcBootstrap,
} from './index.js';
import { goJson, substituteHostIp } from './override.js';

const eth0: NetworkInterfaceInfo = { address: '10.0.0.2', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null };

void describe('bootstrap files', () => {
  const dirs: string[] = [];
  const servers: Server[] = [];
  after(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const setup = async (args: string[] = [], env: Record<string, string> = {}) => {
    const cwd = await mkdtemp(join(tmpdir(), 'bs-unit-'));
    dirs.push(cwd);
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const ctx = { env: { CLOUD_PLATFORM: 'none', POD_NAME: 'p', POD_NAMESPACE: 'ns', INSTANCE_IP: '10.0.0.2', ...env }, cwd, stdout: sink, stderr: sink, signals: new EventEmitter() };
    const { config } = await loadProxyCommand(['sidecar', ...args], ctx, { interfaces: { eth0: [eth0] }, hostCpus: 1 });
    return { cwd, config };
  };

  void it('writes envoy-rev.json atomically into <configPath> (dir 0700, file 0644, no temp files left)', async () => {
    const { cwd, config } = await setup();
    const first = await writeBootstrap(config, buildBootstrap(config));
    assert.equal(first, join(cwd, 'etc/istio/proxy/envoy-rev.json'));
    assert.equal((await stat(join(cwd, 'etc/istio/proxy'))).mode & 0o777, 0o700);
    assert.equal((await stat(first)).mode & 0o777, 0o644);
    const doc = JSON.parse(await readFile(first, 'utf8'));
    assert.equal(doc.node.id, 'sidecar~10.0.0.2~p.ns~ns.svc.cluster.local');
    assert.equal(doc.static_resources.clusters.find((c: any) => c.name === 'xds-grpc').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path, './etc/istio/proxy/XDS');
    await writeBootstrap(config, buildBootstrap(config));
    assert.deepEqual(await readdir(join(cwd, 'etc/istio/proxy')), ['envoy-rev.json']);
  });

  void it('writes the lightstep token next to the bootstrap and points the tracer at it', async () => {
    const { cwd, config } = await setup([], { PROXY_CONFIG: '{"tracing":{"lightstep":{"address":"ls.x:8080","accessToken":"secret-token"}}}' });
    const built = buildBootstrap(config);
    await writeBootstrap(config, built);
    assert.equal(await readFile(join(cwd, 'etc/istio/proxy/lightstep_access_token.txt'), 'utf8'), 'secret-token');
    assert.equal((built.document as any).tracing.http.typed_config.access_token_file, 'etc/istio/proxy/lightstep_access_token.txt');
  });

  void it('generateBootstrap uses customConfigFile as-is and renders ISTIO_BOOTSTRAP templates', async () => {
    const custom = await setup([], { PROXY_CONFIG: '{"customConfigFile":"/opt/my-envoy.yaml"}' });
    const { log, lines } = memoryLogger();
    const g = await generateBootstrap(custom.config, log);
    assert.deepEqual(g, { path: '/opt/my-envoy.yaml', envoyConfigArg: '/opt/my-envoy.yaml', generated: false });
    assert.ok(lines.some((l) => l.includes('Using custom Envoy bootstrap as-is')));

    const tmpl = await setup([], { ISTIO_BOOTSTRAP: './t/boot.yaml.tmpl' });
    await mkdir(join(tmpl.cwd, 't'));
    await writeFile(join(tmpl.cwd, 't/boot.yaml.tmpl'), 'node:\n  id: {{ .nodeID }}\n  cluster: {{ .cluster }}\n');
    const out = await generateBootstrap(tmpl.config, memoryLogger().log);
    assert.equal(out.envoyConfigArg, 'etc/istio/proxy/envoy-rev.yaml');
    assert.equal(await readFile(out.path, 'utf8'), 'node:\n  id: sidecar~10.0.0.2~p.ns~ns.svc.cluster.local\n  cluster: istio-proxy.ns\n');

    const broken = await setup([], { ISTIO_BOOTSTRAP: './missing.json' });
    await assert.rejects(generateBootstrap(broken.config, memoryLogger().log), /failed to read bootstrap template \.\/missing\.json/);
  });

  void it('probes the SDS sockets pilot-agent looks for', async () => {
    const { cwd, config } = await setup();
    assert.deepEqual(await probeBootstrapRuntime(config), { credentialSocketExists: false, workloadSocketExists: false });
    await mkdir(join(cwd, 'var/run/secrets/credential-uds'), { recursive: true });
    const srv = createServer((s) => s.end());
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(join(cwd, 'var/run/secrets/credential-uds/socket'), r));
    const runtime = await probeBootstrapRuntime(config);
    assert.equal(runtime.credentialSocketExists, true);
    const doc = buildBootstrap(config, runtime).document as any;
    assert.equal(doc.node.metadata.credential, 'true');
  });

  void it('writes grpc-bootstrap.json (0644) with the typed metadata, GENERATOR=grpc and the UDS', async () => {
    const { cwd, config } = await setup(['--domain', 'd.local'], { ISTIO_META_EXTRA: 'raw-only', OUTPUT_CERTS: '/certs' });
    const path = await writeGrpcBootstrap(config);
    assert.equal(path, join(cwd, 'etc/istio/proxy/grpc-bootstrap.json'));
    assert.equal((await stat(path)).mode & 0o777, 0o644);
    const text = await readFile(path, 'utf8');
    assert.match(text, /^\{\n {2}"xds_servers": \[/);
    const g = JSON.parse(text) as any;
    assert.equal(g.xds_servers[0].server_uri, 'unix:///etc/istio/proxy/XDS');
    assert.equal(g.node.id, 'sidecar~10.0.0.2~p.ns~d.local');
    assert.equal(g.node.metadata.GENERATOR, 'grpc');
    assert.equal(g.node.metadata.EXTRA, undefined, 'untyped metadata is not in the gRPC bootstrap');
    assert.equal(g.node.UserAgentVersionType, null);
    assert.equal(g.certificate_providers.default.config.private_key_file, '/certs/key.pem');
    assert.equal(g.server_listener_resource_name_template, 'xds.istio.io/grpc/lds/inbound/%s');
    assert.deepEqual(g, buildGrpcBootstrap(config));
  });

  void it('ISTIO_BOOTSTRAP_OVERRIDE: $(HOST_IP) substituted, YAML to sorted JSON, read errors are warnings', async () => {
    assert.equal(substituteHostIp('a: $(HOST_IP)\nb: "[$(HOST_IP)]:8126"', 'fd00::1'), 'a: [fd00::1]\nb: "[fd00::1]:8126"');
    assert.equal(substituteHostIp('$(HOST_IP):1', '10.0.0.1'), '10.0.0.1:1');
    assert.equal(goJson({ b: '<&>', a: 1 }), '{"a":1,"b":"\\u003c\\u0026\\u003e"}');
    const dir = await mkdtemp(join(tmpdir(), 'bs-override-'));
    dirs.push(dir);
    await writeFile(join(dir, 'o.yaml'), "z: 1\ntracing:\n  address: $(HOST_IP):9411\na: [x, y, yes, 'y']\n");
    assert.equal(await bootstrapOverrideJson(join(dir, 'o.yaml'), '10.1.1.1'), '{"a":["x",true,true,"y"],"tracing":{"address":"10.1.1.1:9411"},"z":1}', 'YAML 1.1 booleans, as Go yaml.v2 reads them');
    const { log, lines } = memoryLogger();
    assert.equal(await bootstrapOverrideJson(join(dir, 'missing.yaml'), '', log), undefined);
    assert.match(lines.join(''), /warn\tFailed to read bootstrap override: failed to read file: .*missing\.yaml/);
    await writeFile(join(dir, 'bad.yaml'), 'a: [1\n');
    assert.equal(await bootstrapOverrideJson(join(dir, 'bad.yaml'), '', log), undefined);
    assert.match(lines.join(''), /Failed to read bootstrap override: failed to convert to JSON/);
  });
});
