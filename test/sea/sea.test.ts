// The single executable (build/agent: Node.js, the agent and a V8 snapshot of its start-up code, src/sea.ts)
// against the bundle run by node (build/bundle/main.js, compiled from the same sources, no snapshot). The
// snapshot is taken on the build machine after the start-up modules were evaluated, so anything a module
// computed from its process at that point (environment, working directory, time, host) would be frozen in
// it: these cases give the two the same inputs and want the same outputs, and give the executable
// different inputs and want outputs that follow them. The snapshot is also taken after one run of `proxy
// sidecar` for a made-up pod (`snapshot-0`, up to the spawn of an Envoy that does not exist): nothing of
// that run may show in the executable's.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PEER_PATH, runProc } from '../helpers/go-agent.js';
import { AGENT_BIN, AGENT_CLI } from '../helpers/peers.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const BASE_ENV = { PATH: PEER_PATH, CLOUD_PLATFORM: 'none', POD_NAMESPACE: 'default', INSTANCE_IP: '10.1.2.3', SERVICE_ACCOUNT: 'sa' };

/** Output with its log timestamps and working directory made neutral. */
const neutral = (text: string, cwd: string): string => text.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z/gm, '<time>').replaceAll(cwd, '<cwd>');

/** Runs the executable (`sea`) or the bundle under node (`bundle`) in a new working directory. */
async function run(kind: 'sea' | 'bundle', args: readonly string[], env: Record<string, string> = {}, setup?: (cwd: string) => Promise<void>) {
  const cwd = await mkdtemp(join(tmpdir(), `sea-${kind}-`));
  dirs.push(cwd);
  await setup?.(cwd);
  const [cmd, argv] = kind === 'sea' ? [AGENT_BIN, args] : [process.execPath, [AGENT_CLI, ...args]];
  const r = await runProc(cmd, argv, { cwd, env: { ...BASE_ENV, ...env }, timeoutMs: 30_000 });
  return { ...r, cwd };
}

/** The Envoy bootstrap `proxy sidecar --bootstrap-only` writes, with the working directory made neutral. */
async function bootstrap(kind: 'sea' | 'bundle', env: Record<string, string>): Promise<string> {
  const r = await run(kind, ['proxy', 'sidecar', '--bootstrap-only'], env);
  assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
  return neutral(await readFile(join(r.cwd, 'etc/istio/proxy/envoy-rev.json'), 'utf8'), r.cwd);
}

void describe('the single executable behaves as the bundle', () => {
  void it('prints the same version, help and usage errors', async () => {
    for (const args of [['version'], ['version', '-o', 'json'], ['--help'], ['proxy', '--help'], ['istio-iptables', '--help'], ['proxy', 'sidecar', '--concurrency=x']]) {
      const [sea, bundle] = await Promise.all([run('sea', args), run('bundle', args)]);
      assert.equal(sea.code, bundle.code, `${args.join(' ')}: exit code`);
      assert.equal(neutral(sea.stdout, sea.cwd), neutral(bundle.stdout, bundle.cwd), `${args.join(' ')}: stdout`);
      assert.equal(neutral(sea.stderr, sea.cwd), neutral(bundle.stderr, bundle.cwd), `${args.join(' ')}: stderr`);
    }
  });

  void it('writes the same bootstrap from the same inputs, and one that follows its own environment and working directory', async () => {
    const env = { POD_NAME: 'web-1', ISTIO_META_CLUSTER_ID: 'east', PROXY_CONFIG: '{"concurrency":3,"drainDuration":"7s"}' };
    const [sea, bundle] = await Promise.all([bootstrap('sea', env), bootstrap('bundle', env)]);
    assert.equal(sea, bundle);
    const other = await bootstrap('sea', { POD_NAME: 'db-2', ISTIO_META_CLUSTER_ID: 'west', PROXY_CONFIG: '{"concurrency":5}' });
    assert.notEqual(other, sea);
    assert.match(other, /db-2\.default/);
    assert.match(other, /"west"/);
    assert.doesNotMatch(other, /web-1|"east"/);
    assert.doesNotMatch(sea + other, /snapshot-0|agent-snapshot-/);
  });

  void it('runs `proxy sidecar` up to the spawn as the bundle does, with nothing of the run the snapshot was taken after', async () => {
    // the CA's root certificate exists; the Envoy binary does not (the start-up fails at the spawn)
    const setup = async (cwd: string): Promise<void> => {
      await mkdir(join(cwd, 'var/run/secrets/istio'), { recursive: true });
      await writeFile(join(cwd, 'var/run/secrets/istio/root-cert.pem'), '');
    };
    const env = { POD_NAME: 'api-7', PROXY_CONFIG: '{"binaryPath":"./no-envoy","concurrency":2}' };
    const [sea, bundle] = await Promise.all([run('sea', ['proxy', 'sidecar'], env, setup), run('bundle', ['proxy', 'sidecar'], env, setup)]);
    assert.notEqual(sea.code, 0);
    assert.equal(sea.code, bundle.code, 'exit code');
    const [seaOut, bundleOut] = [neutral(sea.stdout + sea.stderr, sea.cwd), neutral(bundle.stdout + bundle.stderr, bundle.cwd)];
    assert.equal(seaOut, bundleOut);
    assert.match(seaOut, /failed to start Envoy \(binaryPath \.\/no-envoy\)/);
    assert.match(seaOut, /api-7/);
    assert.doesNotMatch(seaOut, /snapshot-0|agent-snapshot-|ECDSA/);
  });
});

void describe('the single executable starts with its V8 options', () => {
  void it('compiles the Node.js modules it loads after the start from the code its snapshot holds for them', async () => {
    // V8 rejects compiled code made under other options, and options set at run time match none: the
    // executable takes its options at the start (its execArgv), as the node that built it did
    // (src/process.ts V8_START_FLAGS). `wait` loads node:http after the start; nothing listens on port 9.
    const r = await run('sea', ['wait', '--timeoutSeconds', '1', '--periodMillis', '200', '--url', 'http://127.0.0.1:9/healthz/ready'], { NODE_DEBUG_NATIVE: 'CODE_CACHE' });
    assert.notEqual(r.code, 0);
    const verdicts = [...r.stderr.matchAll(/^Code cache of (\S+) \(\w+\) is (accepted|rejected)/gm)].map((m) => `${m[1]} ${m[2]}`);
    assert.ok(verdicts.includes('_http_client accepted'), verdicts.join(', ') || r.stderr);
    assert.deepEqual(verdicts.filter((v) => v.endsWith(' rejected')), []);
  });
});
