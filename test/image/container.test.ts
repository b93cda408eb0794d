// The container image (Dockerfile, built by scripts/image.sh) run with podman as Kubernetes runs the
// injected pod, on a mesh on one machine (test/helpers/mesh.ts): the real istiod in its own network
// namespace, and two pods each in their own namespace with a STRICT mesh-wide PeerAuthentication:
//   - `img`: the `istio-init` container (`agent istio-iptables` with the injector's args, root with
//     NET_ADMIN and NET_RAW only) then the `istio-proxy` container (`agent proxy sidecar` with the
//     injector's args and env, uid 1337, no capabilities, read-only root filesystem, working directory
//     /, the injector's volumes; test/helpers/image.ts), both joined to the pod's namespace; the pod's
//     app runs beside it in that namespace, as an application container would;
//   - `go-b`: the Go pilot-agent (the reference) with the real Envoy, as a process.
// The image's own Envoy and Node.js run; nothing from the host is mounted but the pod's volumes.
// Skipped, with the reason, only where podman cannot run a container.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { containerName, ensureImage, IMAGE, podman, PODMAN_RUN_OPTS, podmanUnavailable } from '../helpers/image.js';
import { poll, startMesh, type Mesh, type MeshPod } from '../helpers/mesh.js';
import { AGENT_BIN, REPO_ROOT } from '../helpers/peers.js';

const READY_MS = 90_000;
/** Long enough to see the container draining before it exits. */
const TERMINATION_DRAIN = '5s';

const unavailable = podmanUnavailable();
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const run = (args: readonly string[]): string => podman(['run', '--rm', ...PODMAN_RUN_OPTS, '--pull=never', '--network=none', ...args]);

void describe('container image: built from the Dockerfile, run by podman as istio-init + istio-proxy', { skip: unavailable ? `podman cannot run here: ${unavailable}` : false, timeout: 40 * 60_000 }, () => {
  before(() => ensureImage(), { timeout: 35 * 60_000 });

  void it('`<image> version` prints what the built CLI prints; the image runs as uid 1337 in /, with the agent executable (Node.js 26 inside) as entrypoint, Envoy, no separate node, no npm', () => {
    const fromImage = run([IMAGE, 'version']);
    const fromCli = spawnSync(AGENT_BIN, ['version'], { encoding: 'utf8' }).stdout;
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.match(fromImage, new RegExp(`Version:"1\\.30\\.3".*\\(meshagent ${esc(pkg.version)}\\)`));
    assert.equal(fromImage, fromCli);

    const cfg = JSON.parse(podman(['image', 'inspect', '--format', '{{json .Config}}', IMAGE])) as { User?: string; WorkingDir?: string; Entrypoint?: string[]; Cmd?: string[] };
    assert.equal(cfg.User, '1337:1337');
    assert.equal(cfg.WorkingDir, '/');
    assert.deepEqual(cfg.Entrypoint, ['/usr/local/bin/agent']);
    assert.deepEqual(cfg.Cmd, ['proxy', 'sidecar']);
    assert.equal(run(['--entrypoint', 'id', IMAGE]).trim(), 'uid=1337(istio-proxy) gid=1337(istio-proxy) groups=1337(istio-proxy)');
    assert.match(run(['--entrypoint', 'envoy', IMAGE, '--version']), /\/1\.40\.0\//);
    // Node.js 26 is inside the agent's own executable (no separate node, no npm)
    assert.match(run([IMAGE, 'version', '-o', 'json']), /"golang_version": "node26\./);
    // pilot-agent's name works too (images and charts that call it by path)
    assert.equal(run(['--entrypoint', '/usr/local/bin/pilot-agent', IMAGE, 'version']), fromCli);
    // what the runtime stage leaves out
    assert.equal(run(['--entrypoint', 'sh', IMAGE, '-c', 'for c in node npm npx python3 pip; do command -v $c; done; ls /opt/meshagent']).trim(), 'agent\nbootstrap\npackage.json');
  });

  void describe('a pod: istio-init and istio-proxy containers, real istiod, STRICT mTLS with a Go pilot-agent pod', { timeout: 20 * 60_000 }, () => {
    let mesh: Mesh | undefined;
    let img: MeshPod;
    let go: MeshPod;

    before(async () => {
      mesh = await startMesh({
        mtls: 'STRICT',
        pods: [
          { name: 'img', agent: 'image', proxyConfig: { terminationDrainDuration: TERMINATION_DRAIN } },
          { name: 'go-b', agent: 'go' },
        ],
      });
      img = mesh.pod('img');
      go = mesh.pod('go-b');
    }, { timeout: 180_000 });

    after(async () => {
      await mesh?.stop();
    }, { timeout: 120_000 });

    const diag = async (...pods: MeshPod[]): Promise<string> => {
      const parts: string[] = [];
      for (const p of pods) {
        const d = await p.diagnose();
        parts.push(`=== ${p.name} (${p.agentKind}): ${d.summary}\n${d.detail}`);
      }
      parts.push(`=== istiod (tail)\n${mesh!.istiod.logs().slice(-3000)}`);
      return parts.join('\n');
    };

    void it('istio-init captured the pod\'s traffic; istio-proxy reaches ready, on 15021 as the kubelet probes it and for `pilot-agent wait`, with its workload certificate from istiod', async () => {
      await Promise.all([img.ready(READY_MS), go.ready(READY_MS)]);
      // the kubelet's readiness probe: Envoy's 15021 (-> the agent's 15020), on the pod's IP
      const probe = await img.netns.fetch(`http://${img.ip}:15021/healthz/ready`);
      assert.equal(probe.status, 200, `15021/healthz/ready: ${probe.status} ${probe.body}`);
      const uris = await poll('a workload certificate in the container\'s Envoy', 30_000, async () => {
        const u = await img.certUris();
        return u.length ? u : undefined;
      }, () => diag(img));
      assert.deepEqual([...new Set(uris)], [img.spiffeId]);
      // holdApplicationUntilProxyStarts: the injector's postStart hook execs `pilot-agent wait` in the container
      const waited = spawnSync('podman', ['exec', containerName(img.netns.name), 'pilot-agent', 'wait', '--timeoutSeconds', '30'], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(waited.status, 0, `pilot-agent wait: ${waited.stdout}${waited.stderr}`);
      // the capture rules istio-init wrote (NAT table of the pod's namespace)
      const nat = spawnSync('ip', ['netns', 'exec', img.netns.name, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' }).stdout;
      assert.match(nat, /-A ISTIO_OUTPUT .*--uid-owner 1337 -j RETURN/);
      assert.match(nat, /-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001/);
    });

    void it('the app beside the container reaches a service through the container\'s Envoy (captured, mTLS to the Go agent\'s pod)', async () => {
      await Promise.all([img.ready(READY_MS), go.ready(READY_MS)]);
      const path = '/from-the-image-pod';
      const r = await poll(`img → ${go.host} answered by go-b's app`, 60_000, async () => {
        const x = await mesh!.request(img, go, { path });
        return x.status === 200 && (JSON.parse(x.body) as { app?: string }).app === 'go-b' ? x : undefined;
      }, () => diag(img, go));
      assert.equal(r.headers.server, 'envoy');
      const seen = JSON.parse(r.body) as { url: string; remoteAddress: string; headers: Record<string, string> };
      assert.equal(seen.url, path);
      assert.equal(seen.remoteAddress, '127.0.0.6');
      const xfcc = seen.headers['x-forwarded-client-cert'] ?? '';
      assert.match(xfcc, new RegExp(`(^|;)URI=${esc(img.spiffeId)}(;|$)`), `the client certificate is the container's identity: ${xfcc}`);
    });

    void it('inbound: the Go agent\'s pod reaches the app through the container\'s Envoy (mTLS terminated there)', async () => {
      await Promise.all([img.ready(READY_MS), go.ready(READY_MS)]);
      const path = '/to-the-image-pod';
      const r = await poll(`go-b → ${img.host} answered by img's app`, 60_000, async () => {
        const x = await mesh!.request(go, img, { path });
        return x.status === 200 && (JSON.parse(x.body) as { app?: string }).app === 'img' ? x : undefined;
      }, () => diag(img, go));
      const seen = JSON.parse(r.body) as { remoteAddress: string; headers: Record<string, string> };
      assert.equal(seen.remoteAddress, '127.0.0.6');
      const xfcc = seen.headers['x-forwarded-client-cert'] ?? '';
      assert.match(xfcc, new RegExp(`(^|;)By=${esc(img.spiffeId)}(;|$)`), xfcc);
      assert.match(xfcc, new RegExp(`(^|;)URI=${esc(go.spiffeId)}(;|$)`), xfcc);
    });

    void it('SIGTERM to the container (as the kubelet stops it): readiness fails while Envoy drains, then the container exits 0', async () => {
      await img.ready(READY_MS);
      const name = containerName(img.netns.name);
      assert.equal(podman(['inspect', '--format', '{{.State.Running}}', name]).trim(), 'true');
      podman(['kill', '--signal', 'TERM', name]);
      // draining: the container still runs, readiness is 503 (the kubelet takes the pod out of its endpoints)
      await poll('readiness to fail while the container drains', 10_000, async () => {
        const r = await img.netns.fetch(`http://${img.ip}:15021/healthz/ready`).catch(() => undefined);
        return r && r.status !== 200 ? r : undefined;
      }, () => img.agentOutput().slice(-3000), 50);
      assert.equal(podman(['inspect', '--format', '{{.State.Running}}', name]).trim(), 'true', 'still running during the drain');
      const code = podman(['wait', name], 120_000).trim();
      assert.equal(code, '0', `exit code; output:\n${img.agentOutput().slice(-3000)}`);
      assert.match(img.agentOutput(), /Agent draining Proxy for termination/);
      assert.match(img.agentOutput(), new RegExp(`Graceful termination period is ${TERMINATION_DRAIN}, starting`));
      await poll('podman run to return', 30_000, async () => (img.agentRunning() ? undefined : true));
    });
  });
});
