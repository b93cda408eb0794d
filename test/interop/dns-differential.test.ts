// The DNS proxy, differential against the Go pilot-agent 1.30: the real istiod serves the same
// ServiceEntries (static addresses IPv4/IPv6/dual, DNS resolution, auto-allocated, wildcard, resolution NONE
// with endpoints) to each agent in turn, in one network namespace whose resolv.conf names a local upstream
// resolver (test/helpers/dns-tool.ts) for the names outside the mesh. The same queries (every spelling a
// pod uses, each type, UDP and TCP, malformed ones) must get the same answers from both: rcode, the flags
// that matter (AA, TC, RD, RA) and the answer sets. Then the two documented differences: a lost UDP
// query and a truncated UDP answer (the Go agent retries neither).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createNetns, PEER_PATH, runProc, startProc, type Netns, type Proc } from '../helpers/go-agent.js';
import type { NormalisedReply } from '../helpers/dns-tool.js';
import { sidecarDir, startIstiod, type Istiod } from '../helpers/istiod.js';
import { createPod, type Pod } from '../helpers/pod.js';
import { AGENT_BIN, REPO_ROOT, envoyBin, istiodBin, pilotAgentBin } from '../helpers/peers.js';

const DNS_TOOL = join(REPO_ROOT, 'build', 'test', 'helpers', 'dns-tool.js');
const SEARCH = 'default.svc.cluster.local svc.cluster.local cluster.local';

const se = (name: string, spec: string): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ${name}
  namespace: default
spec:
${spec}`;

const CONFIGS: Record<string, string> = {
  'static.yaml': se('static', '  hosts: [static.example.test]\n  addresses: [10.50.0.1]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  location: MESH_EXTERNAL\n  endpoints: [{address: 127.0.0.1}]\n'),
  'dual.yaml': se('dual', '  hosts: [dual.example.test]\n  addresses: [10.50.0.2, "2001:db8::2"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  location: MESH_EXTERNAL\n  endpoints: [{address: 127.0.0.1}]\n'),
  'v6.yaml': se('v6', '  hosts: [v6.example.test]\n  addresses: ["2001:db8::6"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  location: MESH_EXTERNAL\n  endpoints: [{address: 127.0.0.1}]\n'),
  'dnsres.yaml': se('dnsres', '  hosts: [dnsres.example.test]\n  addresses: [10.50.0.4]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n  location: MESH_EXTERNAL\n'),
  'auto.yaml': se('auto', '  hosts: [auto.example.test]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n  location: MESH_EXTERNAL\n'),
  'wild.yaml': se('wild', '  hosts: ["*.wild.example.test"]\n  addresses: [10.50.0.5]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n  location: MESH_EXTERNAL\n'),
  'headless.yaml': se('headless', '  hosts: [headless.example.test]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  location: MESH_INTERNAL\n  endpoints: [{address: 10.50.1.1}, {address: 10.50.1.2}]\n'),
};

interface Q {
  name: string;
  type: string;
  transport?: 'udp' | 'tcp';
  edns?: number;
  raw?: string;
}
type Reply = NormalisedReply;

const MESH_NAMES = ['static.example.test', 'dual.example.test', 'v6.example.test', 'dnsres.example.test', 'auto.example.test', 'headless.example.test', 'foo.wild.example.test', 'a.b.wild.example.test'];
const QUERIES: Q[] = [
  ...MESH_NAMES.flatMap((n) => ['A', 'AAAA'].flatMap((type) => (['udp', 'tcp'] as const).map((transport) => ({ name: n, type, transport })))),
  // the spellings a resolver with the pod's search list sends, and case
  ...MESH_NAMES.map((n) => ({ name: `${n}.default.svc.cluster.local`, type: 'A' })),
  { name: 'static.example.test.svc.cluster.local', type: 'A' },
  { name: 'STATIC.Example.Test', type: 'A' },
  { name: 'static.example.test.', type: 'AAAA' },
  // wildcard parent, other types for mesh names, names outside the mesh
  { name: 'wild.example.test', type: 'A' },
  { name: 'static.example.test', type: 'MX' },
  { name: 'static.example.test', type: 'TXT' },
  { name: 'outside.example.test', type: 'A' },
  { name: 'outside.example.test', type: 'AAAA', transport: 'tcp' },
  { name: 'txt.example.test', type: 'TXT' },
  { name: 'nothere.example.test', type: 'A' },
  { name: 'nothere.example.test', type: 'A', transport: 'tcp' },
  { name: 'giant.example.test', type: 'A', transport: 'tcp' },
  { name: 'giant.example.test', type: 'A', edns: 65535 },
  // malformed: a body that does not parse, two questions, a response
  { name: '', type: '', raw: '12340100000100000000000003616263' },
  { name: '', type: '', raw: '1235010000020000000000000161000001000101620000010001' },
];

void describe('DNS proxy: ours and the Go pilot-agent on the same NameTable from the real istiod', { timeout: 300_000 }, () => {
  let netns: Netns | undefined;
  let istiod: Istiod | undefined;
  let upstream: Proc | undefined;
  let etcDir: string | undefined;
  const results: Record<'go' | 'ours', Reply[]> = { go: [], ours: [] };
  const extra: Record<'go' | 'ours', Reply[]> = { go: [], ours: [] };
  const metrics: Record<'go' | 'ours', string> = { go: '', ours: '' };
  let ourStatus = '';
  /** GET /debug/ndsz of each agent once its table arrived. */
  const ndsz: Record<'go' | 'ours', { status: number; body: string }> = { go: { status: 0, body: '' }, ours: { status: 0, body: '' } };
  /** Our agent with a resolv.conf naming no usable nameserver: its output and the answers it gave. */
  let noServer: { output: string; replies: Reply[] } | undefined;
  /** Both agents started while 127.0.0.1:15053 is taken. */
  const clash: Record<'go' | 'ours', { code: number | null; output: string }> = { go: { code: null, output: '' }, ours: { code: null, output: '' } };

  const query = async (qs: Q[]): Promise<Reply[]> => {
    const [c, a] = netns!.wrap(process.execPath, [DNS_TOOL, 'query', '15053', JSON.stringify(qs)]);
    const r = await runProc(c, a, { env: { PATH: PEER_PATH }, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`dns-tool query failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Reply[];
  };
  /** Waits for the first NameTable: a mesh name answered from the table. */
  const waitTable = async (agent: Proc): Promise<void> => {
    const deadline = Date.now() + 90_000;
    let last: Reply[] = [];
    while (Date.now() < deadline) {
      last = await query([{ name: 'static.example.test', type: 'A' }]).catch(() => []);
      if (last[0]?.aa && last[0].answers?.length) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`no name table after 90 s: ${JSON.stringify(last)}\n--- agent ---\n${agent.output().slice(-6000)}\n--- istiod ---\n${(istiod?.logs() ?? '').slice(-3000)}`);
  };
  const runBattery = async (who: 'go' | 'ours', agent: Proc): Promise<void> => {
    await waitTable(agent);
    results[who] = await query(QUERIES);
    extra[who] = await query([
      { name: 'drop-first.example.test', type: 'A' },
      { name: 'giant-tc.example.test', type: 'A', edns: 4096 },
      { name: 'giant-tc.example.test', type: 'A' },
      { name: 'giant.example.test', type: 'A' },
    ]);
    metrics[who] = (await netns!.fetch('http://127.0.0.1:15020/stats/prometheus')).body;
    const nd = await netns!.fetch('http://127.0.0.1:15020/debug/ndsz');
    ndsz[who] = { status: nd.status, body: nd.body };
    if (who === 'ours') ourStatus = (await netns!.fetch('http://127.0.0.1:15020/debug/status')).body;
  };

  before(async () => {
    assert.doesNotThrow(istiodBin, 'istiod-local must be installed: bash scripts/peers.sh istio');
    assert.doesNotThrow(pilotAgentBin, 'the Go pilot-agent must be installed: bash scripts/peers.sh istio');
    netns = await createNetns('mdns');
    // `ip netns exec` shows /etc/netns/<name>/resolv.conf as /etc/resolv.conf to everything in the namespace
    etcDir = join('/etc/netns', netns.name);
    await mkdir(etcDir, { recursive: true });
    await writeFile(join(etcDir, 'resolv.conf'), `nameserver 127.0.0.1\nsearch ${SEARCH}\n`);
    istiod = await startIstiod({ netns, configs: CONFIGS, env: { PILOT_ENABLE_IP_AUTOALLOCATE: 'false' } });
    const [c, a] = netns.wrap(process.execPath, [DNS_TOOL, 'upstream', '53']);
    upstream = startProc(c, a, { env: { PATH: PEER_PATH } });
    assert.ok(await netns.waitTcp(53, 10_000), `the upstream resolver did not start: ${upstream.output()}`);

    const dnsEnv = { ISTIO_META_DNS_CAPTURE: 'true', ISTIO_META_DNS_AUTO_ALLOCATE: 'true', DNS_FORWARD_TIMEOUT: '2s' };

    // 1. the Go agent
    const dir = await mkdtemp(join(tmpdir(), 'go-dns-'));
    try {
      const env = await sidecarDir(istiod, dir, { outputCerts: true, proxyConfig: { drainDuration: '5s' }, env: dnsEnv });
      const [gc, ga] = netns.wrap(pilotAgentBin(), ['proxy', 'sidecar', '--domain', 'default.svc.cluster.local', '--proxyLogLevel=warning', '--log_output_level=default:info']);
      const go = startProc(gc, ga, { cwd: dir, env });
      try {
        await runBattery('go', go);
      } finally {
        await go.stop(10_000);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    // 2. ours, as the injector starts it
    const withOurs = async (fn: (agent: Proc) => Promise<void>): Promise<void> => {
      let pod: Pod | undefined;
      try {
        pod = await createPod({
          name: 'sleep-0',
          serviceAccount: 'sleep',
          rootCert: istiod!.rootCertPem,
          token: istiod!.mintToken('default', 'sleep'),
          proxyConfig: { discoveryAddress: istiod!.discoveryAddress, concurrency: 1, drainDuration: '5s', terminationDrainDuration: '1s' },
          env: { CA_ADDR: istiod!.discoveryAddress, INSTANCE_IP: '127.0.0.1', CLOUD_PLATFORM: 'none', ...dnsEnv },
        });
        const [oc, oa] = netns!.wrap(AGENT_BIN, pod.args);
        const ours = startProc(oc, oa, { cwd: pod.cwd, env: pod.env });
        try {
          await fn(ours);
        } finally {
          await ours.stop(10_000);
        }
      } finally {
        await pod?.cleanup();
      }
    };
    await withOurs((ours) => runBattery('ours', ours));

    // 3. ours with a resolv.conf without a usable nameserver: a clear start-up log, SERVFAIL at once
    await writeFile(join(etcDir, 'resolv.conf'), `nameserver not-an-address\nsearch ${SEARCH}\n`);
    await withOurs(async (ours) => {
      await waitTable(ours);
      noServer = { replies: await query([{ name: 'outside.example.test', type: 'A' }, { name: 'static.example.test', type: 'A', transport: 'tcp' }]), output: ours.output() };
    });
    await writeFile(join(etcDir, 'resolv.conf'), `nameserver 127.0.0.1\nsearch ${SEARCH}\n`);

    // 4. the DNS port already taken (the test's resolver on 127.0.0.1:15053): both agents stop start-up
    const [hc, ha] = netns.wrap(process.execPath, [DNS_TOOL, 'upstream', '15053']);
    const holder = startProc(hc, ha, { env: { PATH: PEER_PATH } });
    try {
      assert.ok(await netns.waitTcp(15053, 10_000), `could not take 15053: ${holder.output()}`);
      await withOurs(async (ours) => {
        const f = await Promise.race([ours.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000))]);
        clash.ours = { code: f?.code ?? null, output: ours.output() };
      });
      const gdir = await mkdtemp(join(tmpdir(), 'go-dns-clash-'));
      try {
        await mkdir(join(gdir, 'var/run/secrets/istio'), { recursive: true });
        await writeFile(join(gdir, 'var/run/secrets/istio/root-cert.pem'), istiod.rootCertPem);
        const [gc, ga] = netns.wrap(pilotAgentBin(), ['proxy', 'sidecar', '--domain', 'default.svc.cluster.local']);
        const go = startProc(gc, ga, {
          cwd: gdir,
          env: { PATH: PEER_PATH, HOME: gdir, POD_NAME: 'sleep-0', POD_NAMESPACE: 'default', INSTANCE_IP: '127.0.0.1', CLOUD_PLATFORM: 'none', PROXY_CONFIG: JSON.stringify({ discoveryAddress: istiod.discoveryAddress, binaryPath: envoyBin() }), ...dnsEnv },
        });
        const f = await Promise.race([go.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000))]);
        clash.go = { code: f?.code ?? null, output: go.output() };
        await go.stop(5000);
      } finally {
        await rm(gdir, { recursive: true, force: true });
      }
    } finally {
      await holder.stop(1000);
    }
  });

  after(async () => {
    await upstream?.stop(1000);
    await istiod?.stop();
    await netns?.dispose();
    if (etcDir) await rm(etcDir, { recursive: true, force: true });
  });

  void it('the table holds the mesh names (not a trivial match of two failures)', () => {
    const byQuery = new Map(results.ours.map((r) => [r.query, r]));
    assert.deepEqual(byQuery.get('static.example.test A udp')?.answers, ['A static.example.test "10.50.0.1"']);
    assert.deepEqual(byQuery.get('dual.example.test AAAA tcp')?.answers, ['AAAA dual.example.test "2001:db8::2"']);
    assert.deepEqual(byQuery.get('foo.wild.example.test A udp')?.answers, ['A foo.wild.example.test "10.50.0.5"']);
    assert.match(byQuery.get('auto.example.test A udp')?.answers?.[0] ?? '', /^A auto\.example\.test "240\.240\./);
    assert.deepEqual(byQuery.get('outside.example.test A udp')?.answers, ['A outside.example.test "192.0.2.10"']);
    assert.equal(byQuery.get('nothere.example.test A udp')?.rcode, 'NXDOMAIN');
  });

  void it('/debug/ndsz shows the same table as the Go agent: istiod entries and every generated name', () => {
    assert.equal(ndsz.go.status, 200, ndsz.go.body);
    assert.equal(ndsz.ours.status, 200, ndsz.ours.body);
    type Table = { table?: Record<string, { ips?: string[] } & Record<string, unknown>> };
    // address order within an entry carries no meaning (answers are shuffled): compared as sets
    const norm = (body: string): Table => {
      const t = JSON.parse(body) as Table;
      for (const e of Object.values(t.table ?? {})) e.ips?.sort();
      return t;
    };
    const go = norm(ndsz.go.body);
    const ours = norm(ndsz.ours.body);
    assert.ok(Object.keys(go.table ?? {}).length > 10, ndsz.go.body);
    // a generated Kubernetes-style name is among them (an entry's FQDN with the trailing dot)
    assert.ok(ours.table?.['static.example.test.'], ndsz.ours.body);
    assert.deepEqual(ours, go);
  });

  void it('gives the same answers as the Go agent: rcode, AA/TC/RD/RA, answer sets', () => {
    assert.equal(results.ours.length, QUERIES.length);
    assert.equal(results.go.length, QUERIES.length);
    const diffs = results.ours.flatMap((o, i) => {
      const g = results.go[i]!;
      return JSON.stringify(o) === JSON.stringify(g) ? [] : [`${o.query}\n   go:   ${JSON.stringify(g)}\n   ours: ${JSON.stringify(o)}`];
    });
    assert.deepEqual(diffs, [], `answers differ:\n${diffs.join('\n')}`);
  });

  void it('exposes the DNS metrics under the same names, and the table in /debug/status', () => {
    for (const name of ['istio_agent_dns_requests_total', 'istio_agent_dns_upstream_requests_total', 'istio_agent_dns_upstream_failures_total', 'istio_agent_dns_upstream_request_duration_seconds_bucket']) {
      assert.match(metrics.go, new RegExp(`^${name}`, 'm'), `Go agent: ${name}`);
      assert.match(metrics.ours, new RegExp(`^${name}`, 'm'), `ours: ${name}`);
    }
    const dns = (JSON.parse(ourStatus) as { dns: { tableReceived: boolean; entries: number; names: number; lastUpdate?: string } }).dns;
    assert.equal(dns.tableReceived, true);
    assert.ok(dns.entries >= 6, JSON.stringify(dns));
    assert.ok(dns.names > dns.entries, JSON.stringify(dns));
    assert.ok(dns.lastUpdate);
  });

  void it('a resolv.conf without a usable nameserver: a clear start-up log, SERVFAIL for outside names, the table still answers', () => {
    assert.ok(noServer);
    assert.match(noServer.output, /has no usable nameserver: names outside the mesh get SERVFAIL/);
    assert.match(noServer.output, /not IP addresses: not-an-address/);
    assert.equal(noServer.replies[0]?.rcode, 'SERVFAIL', JSON.stringify(noServer.replies));
    assert.deepEqual(noServer.replies[1]?.answers, ['A static.example.test "10.50.0.1"']);
  });

  void it('the DNS port already taken: start-up stops with an error naming it, as the Go agent', () => {
    assert.notEqual(clash.go.code, 0, clash.go.output.slice(-3000));
    assert.notEqual(clash.go.code, null, `the Go agent kept running: ${clash.go.output.slice(-3000)}`);
    assert.match(clash.go.output, /failed to start local DNS server/);
    assert.equal(clash.ours.code, 255, clash.ours.output.slice(-3000));
    assert.match(clash.ours.output, /failed to start local DNS server: Failed to listen on udp port 127\.0\.0\.1:15053: .*EADDRINUSE/);
    // both bind the DNS sockets first: Envoy is never started
    assert.doesNotMatch(clash.go.output, /Envoy command/);
    assert.doesNotMatch(clash.ours.output, /Envoy command/);
  });

  void it('differences (README): a lost UDP query and a truncated UDP answer', () => {
    const [goDrop, goTcEdns, goTc, goGiant] = extra.go;
    const [drop, tcEdns, tc, giant] = extra.ours;
    // the Go agent sends one UDP query per upstream and waits DNS_FORWARD_TIMEOUT: SERVFAIL
    assert.equal(goDrop?.rcode, 'SERVFAIL', JSON.stringify(goDrop));
    // we send it again within the timeout
    assert.equal(drop?.rcode, 'NOERROR', JSON.stringify(drop));
    assert.deepEqual(drop?.answers, ['A drop-first.example.test "192.0.2.10"']);
    // a truncated upstream answer: the Go agent passes it on truncated (the client must retry over TCP);
    // we fetch it over TCP and answer in full when the client's EDNS size allows
    assert.equal(goTcEdns?.tc, true, JSON.stringify(goTcEdns));
    assert.ok((goTcEdns?.answers?.length ?? 0) < 64, JSON.stringify(goTcEdns));
    assert.equal(tcEdns?.tc, false, JSON.stringify(tcEdns));
    assert.equal(tcEdns?.answers?.length, 64);
    // without EDNS both answer truncated (TC): the client retries over TCP
    assert.equal(goTc?.tc, true, JSON.stringify(goTc));
    assert.equal(tc?.tc, true, JSON.stringify(tc));
    // an over-size UDP answer (non-compliant upstream): the Go agent fails to read it (SERVFAIL); we pass it
    // on truncated to the client's 512 bytes, with TC
    assert.equal(goGiant?.rcode, 'SERVFAIL', JSON.stringify(goGiant));
    assert.equal(giant?.rcode, 'NOERROR', JSON.stringify(giant));
    assert.equal(giant?.tc, true);
  });
});
