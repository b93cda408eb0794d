// DNS capture end to end, as in a pod with ISTIO_META_DNS_CAPTURE=true: istio-init (our
// `agent istio-iptables`, REDIRECT mode) redirects the app's DNS to 15053, the agent (uid 1337) answers
// the mesh's names from istiod's name table and forwards the rest to the pod's nameserver (a resolver the
// test runs in istiod's namespace). An app process (uid 1000) resolves a mesh Service's name with the
// system resolver (`getent hosts`, glibc) and reaches the Service through Envoy by that name; a name
// outside the mesh resolves through the upstream. The same pod with the Go pilot-agent gives the same
// lookups.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PEER_PATH, runProc, startProc, type Proc } from '../helpers/go-agent.js';
import { APP_UID, ISTIOD_IP, startMesh, type Mesh, type MeshPod } from '../helpers/mesh.js';
import { REPO_ROOT } from '../helpers/peers.js';

const DNS_TOOL = join(REPO_ROOT, 'build', 'test', 'helpers', 'dns-tool.js');
const DNS_ENV = { ISTIO_META_DNS_CAPTURE: 'true' };

// the app's HTTP client: resolves the name with the system resolver (getaddrinfo), as applications do
const GET_BY_NAME = `
const http = require('node:http');
const [host, port] = process.argv.slice(1);
const req = http.get({ host, port: Number(port), path: '/by-name', timeout: 8000 }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c) => (body += c));
  res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, body })));
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (e) => { process.stderr.write(String(e)); process.exitCode = 1; });`;

const resolvConf = (ns: string): string => `nameserver ${ISTIOD_IP}\nsearch ${ns}.svc.cluster.local svc.cluster.local cluster.local\noptions timeout:2 attempts:2\n`;

void describe('DNS capture in a pod: the app resolves mesh names through the agent', { timeout: 300_000 }, () => {
  let mesh: Mesh | undefined;
  let upstream: Proc | undefined;

  const asApp = async (pod: MeshPod, cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
    const [c, a] = pod.netns.wrap('setpriv', [`--reuid=${APP_UID}`, `--regid=${APP_UID}`, '--clear-groups', cmd, ...args]);
    return runProc(c, a, { env: { PATH: PEER_PATH }, timeoutMs: 30_000 });
  };
  const getent = async (pod: MeshPod, name: string): Promise<string> => {
    const r = await asApp(pod, 'getent', ['ahostsv4', name]);
    // getent exits 2 when the name does not resolve
    return r.code === 0 ? [...new Set(r.stdout.split('\n').map((l) => l.split(/\s+/)[0]).filter(Boolean))].sort().join(',') : `exit ${r.code}`;
  };

  before(async () => {
    mesh = await startMesh({
      pods: [
        { name: 'server', agent: 'ours' },
        { name: 'client', agent: 'ours', env: DNS_ENV, initEnv: DNS_ENV, resolvConf: resolvConf('client-ns') },
        { name: 'goclient', agent: 'go', env: DNS_ENV, initEnv: DNS_ENV, resolvConf: resolvConf('goclient-ns') },
      ],
    });
    // the pods' nameserver: a resolver for names outside the mesh, in istiod's namespace
    const [c, a] = mesh.istiodNetns.wrap(process.execPath, [DNS_TOOL, 'upstream', '53', '0.0.0.0']);
    upstream = startProc(c, a, { env: { PATH: PEER_PATH } });
    assert.ok(await mesh.istiodNetns.waitTcp(53, 10_000), `the upstream resolver did not start: ${upstream.output()}`);
    // readiness includes the DNS name table (pilot-agent's rule)
    await Promise.all(mesh.pods.map((p) => p.ready(120_000)));
  });

  after(async () => {
    await upstream?.stop(1000);
    await mesh?.stop();
  });

  void it('the app resolves a mesh Service (FQDN and search-list spelling) with getent, through our agent', async () => {
    const client = mesh!.pod('client');
    const server = mesh!.pod('server');
    assert.equal(await getent(client, server.host), server.vip, mesh!.diag());
    assert.equal(await getent(client, `${server.name}.${server.namespace}`), server.vip);
    // a name outside the mesh: forwarded to the pod's nameserver
    assert.equal(await getent(client, 'outside.example.test'), '192.0.2.10');
    assert.equal(await getent(client, 'nothere.example.test'), 'exit 2');
    // answered by the agent: its counters moved
    const metrics = (await client.status('/stats/prometheus')).body;
    assert.ok(Number(/^istio_agent_dns_requests_total (\d+)/m.exec(metrics)?.[1]) >= 4, metrics.slice(0, 2000));
    assert.ok(Number(/^istio_agent_dns_upstream_requests_total (\d+)/m.exec(metrics)?.[1]) >= 2);
  });

  void it('the app reaches the Service by name, through Envoy', async () => {
    const client = mesh!.pod('client');
    const server = mesh!.pod('server');
    const r = await asApp(client, process.execPath, ['-e', GET_BY_NAME, server.host, String(server.servicePort)]);
    assert.equal(r.code, 0, `${r.stderr}\n${mesh!.diag()}`);
    const res = JSON.parse(r.stdout) as { status: number; body: string };
    assert.equal(res.status, 200);
    assert.match(res.body, /"app":"server"/);
    // through Envoy: the server's sidecar saw the request come from the client's Envoy (mTLS, XFCC)
    const seen = server.appRequests().find((q) => q.url === '/by-name');
    assert.ok(seen, 'the server app received the request');
    assert.match(String(seen.headers['x-forwarded-client-cert'] ?? ''), /client-ns\/sa\/client-sa/);
  });

  void it('the Go pilot-agent pod resolves the same names to the same addresses', async () => {
    const ours = mesh!.pod('client');
    const go = mesh!.pod('goclient');
    const server = mesh!.pod('server');
    for (const name of [server.host, 'outside.example.test', 'nothere.example.test']) {
      assert.equal(await getent(ours, name), await getent(go, name), name);
    }
  });
});
