// The DNS proxy over real sockets on loopback: a mock upstream (UDP and TCP on one port) answers
// www.bing.com, NXDOMAIN for the rest, 64 records for giant. (over-size, untruncated: a non-compliant
// upstream), the same truncated with TC for giant-tc., and drops the first UDP query for drop-first.
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as dnsPacket from 'dns-packet';
import type { Answer, Packet } from 'dns-packet';
import { Registry } from 'prom-client';
import { memoryLogger } from '../lib/log.js';
import { encodeWithin } from './handler.js';
import { createDnsProxy, type DnsProxy } from './index.js';
import { resolveDnsSettings } from './options.js';
import { prepareDns } from './listen.js';
import { decodeNameTable } from './nds.js';
import { loadProtos, messageCodec } from '../lib/proto.js';
import { tcpExchange, udpExchange } from '../../test/helpers/dns-exchange.js';

const ndsCodec = messageCodec(loadProtos(['istio/networking/nds/v1/nds.proto']), 'istio.networking.nds.v1.NameTable');

interface Upstream {
  port: number;
  udpQueries: number;
  tcpQueries: number;
  close(): Promise<void>;
}

const giant: Answer[] = Array.from({ length: 64 }, (_, i) => ({ name: 'aaaaaaaaaaaa.aaaaaa', type: 'A', class: 'IN', ttl: 60, data: `240.0.0.${i}` }) as Answer);

function answerFor(q: Packet, transport: 'udp' | 'tcp', seen: Map<number, number>): Buffer | undefined {
  const question = q.questions![0]!;
  const name = question.name.toLowerCase();
  const base = { id: q.id!, type: 'response' as const, flags: 0x0100 | 0x0080, questions: q.questions! };
  if (name === 'drop-first' && transport === 'udp') {
    const n = (seen.get(q.id!) ?? 0) + 1;
    seen.set(q.id!, n);
    if (n === 1) return undefined;
  }
  if (name === 'www.bing.com' || name === 'drop-first') return dnsPacket.encode({ ...base, answers: [{ name: question.name, type: 'A', class: 'IN', ttl: 60, data: '1.1.1.1' }] });
  if (name === 'giant') return dnsPacket.encode({ ...base, answers: giant });
  if (name === 'giant-tc') return transport === 'udp' ? encodeWithin({ ...base, answers: giant }, 512) : dnsPacket.encode({ ...base, answers: giant });
  return dnsPacket.encode({ ...base, flags: base.flags | 3 });
}

async function startUpstream(): Promise<Upstream> {
  const tcp: Server = createServer();
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const port = (tcp.address() as { port: number }).port;
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(port, '127.0.0.1', r));
  const seen = new Map<number, number>();
  const u: Upstream = {
    port,
    udpQueries: 0,
    tcpQueries: 0,
    async close() {
      udp.close();
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
  udp.on('message', (msg, rinfo) => {
    u.udpQueries++;
    const reply = answerFor(dnsPacket.decode(msg), 'udp', seen);
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  });
  tcp.on('connection', (sock) => {
    sock.on('data', (d: Buffer) => {
      u.tcpQueries++;
      const reply = answerFor(dnsPacket.decode(d.subarray(2)), 'tcp', seen)!;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(reply.length);
      sock.end(Buffer.concat([len, reply]));
    });
    sock.on('error', () => undefined);
  });
  return u;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

const udpQuery = (port: number, msg: Buffer, timeoutMs = 8000): Promise<Buffer | undefined> => udpExchange(port, msg, timeoutMs);
async function tcpQuery(port: number, msg: Buffer): Promise<Buffer> {
  const r = await tcpExchange(port, msg, 8000);
  assert.ok(r, `a reply over TCP from port ${port}`);
  return r;
}

let nextId = 1;
function query(name: string, type: string, opts: { edns?: number; flags?: number } = {}): Buffer {
  return dnsPacket.encode({
    id: nextId++,
    type: 'query',
    flags: opts.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as 'A', class: 'IN' }],
    ...(opts.edns ? { additionals: [{ name: '.', type: 'OPT', udpPayloadSize: opts.edns, flags: 0 } as Answer] } : {}),
  });
}

async function ask(port: number, name: string, type: string, transport: 'udp' | 'tcp' = 'udp', opts: { edns?: number } = {}): Promise<Reply> {
  const q = query(name, type, opts);
  const r = transport === 'udp' ? await udpQuery(port, q) : await tcpQuery(port, q);
  assert.ok(r, `reply to ${name} ${type} over ${transport}`);
  const p: Reply = dnsPacket.decode(r);
  assert.equal(p.id, q.readUInt16BE(0));
  return p;
}

type Reply = Packet & { flag_aa?: boolean; flag_ra?: boolean; flag_rd?: boolean; flag_tc?: boolean; rcode?: string };
const dataOf = (a: Answer): string => String((a as { data?: unknown }).data);
const rcode = (p: Packet): string => (p as { rcode?: string }).rcode ?? '';
const ips = (p: Packet): string[] => (p.answers ?? []).filter((a) => a.type === 'A' || a.type === 'AAAA').map((a) => dataOf(a)).sort();

const tableBytes = ndsCodec.encode({
  table: {
    'productpage.ns1.svc.cluster.local': { ips: ['9.9.9.9'], registry: 'Kubernetes', shortname: 'productpage', namespace: 'ns1' },
    'www.google.com': { ips: ['1.1.1.1'], registry: 'External' },
    'dual.localhost': { ips: ['2.2.2.2', '2001:db8::1'], registry: 'External' },
    'big.example.com': { ips: Array.from({ length: 100 }, (_, i) => `10.0.${i >> 8}.${i & 255}`), registry: 'External' },
  },
});

void describe('dns proxy over loopback sockets', { timeout: 120_000 }, () => {
  let upstream: Upstream;
  let dir: string;
  let proxy: DnsProxy;
  let registry: Registry;
  let port: number;

  const startProxy = async (resolvConf: string, env: Record<string, string> = {}): Promise<{ proxy: DnsProxy; port: number; registry: Registry }> => {
    const p = await freePort();
    const path = join(dir, `resolv-${p}.conf`);
    await writeFile(path, resolvConf);
    const settings = { ...resolveDnsSettings({ env: { ISTIO_META_DNS_CAPTURE: 'true', DNS_PROXY_ADDR: `127.0.0.1:${p}`, ...env }, proxyType: 'sidecar', podNamespace: 'ns1', dnsDomain: 'ns1.svc.cluster.local', uid: 1000 }), resolvConfPaths: [path] };
    const reg = new Registry();
    const d = createDnsProxy({ settings, log: memoryLogger().log, registry: reg, upstreamPort: upstream.port });
    await d.start();
    return { proxy: d, port: p, registry: reg };
  };

  before(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(join(tmpdir(), 'dns-test-'));
    ({ proxy, port, registry } = await startProxy('nameserver 127.0.0.1\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions timeout:1 attempts:3\n', { DNS_FORWARD_TIMEOUT: '4s' }));
  });
  after(async () => {
    await proxy?.close();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  void it('answers SERVFAIL before the first name table, and is not ready', async () => {
    assert.equal(proxy.notReady(), 'istio DNS capture is turned ON and DNS lookup table is not ready yet');
    assert.equal(rcode(await ask(port, 'www.bing.com', 'A')), 'SERVFAIL');
    assert.equal(proxy.status().tableReceived, false);
  });

  void it('applies a name table from NDS and answers from it over UDP and TCP (AA, RA=0, TTL 30)', async () => {
    await proxy.agentType.onResource({ typeUrl: proxy.agentType.typeUrl, value: tableBytes });
    assert.equal(proxy.notReady(), undefined);
    const st = proxy.status();
    assert.equal(st.tableReceived, true);
    assert.equal(st.entries, 4);
    assert.ok(st.lastUpdate);
    for (const t of ['udp', 'tcp'] as const) {
      const r = await ask(port, 'productpage.ns1.ns1.svc.cluster.local', 'A', t);
      assert.equal(rcode(r), 'NOERROR');
      assert.equal(r.flag_aa, true);
      assert.equal(r.flag_ra, false);
      assert.equal(r.flag_rd, true);
      assert.deepEqual(r.answers!.map((a) => [a.type, a.name, dataOf(a), (a as { ttl: number }).ttl]), [
        ['CNAME', 'productpage.ns1.ns1.svc.cluster.local', 'productpage.ns1', 30],
        ['A', 'productpage.ns1', '9.9.9.9', 30],
      ]);
      assert.deepEqual(ips(await ask(port, 'dual.localhost', 'AAAA', t)), ['2001:db8::1']);
      const nodata = await ask(port, 'productpage', 'AAAA', t);
      assert.equal(rcode(nodata), 'NOERROR');
      assert.equal(nodata.answers!.length, 0);
    }
  });

  void it('rejects a malformed name table (NACK) and keeps the last good one', async () => {
    await assert.rejects(async () => proxy.agentType.onResource({ typeUrl: proxy.agentType.typeUrl, value: Buffer.from([0x0a, 0xff, 0xff]) }));
    assert.equal(proxy.status().rejectedUpdates, 1);
    assert.deepEqual(ips(await ask(port, 'www.google.com', 'A')), ['1.1.1.1']);
  });

  void it('forwards other names and types, with the upstream rcode', async () => {
    for (const t of ['udp', 'tcp'] as const) {
      const r = await ask(port, 'www.bing.com', 'A', t);
      assert.equal(rcode(r), 'NOERROR');
      assert.deepEqual(ips(r), ['1.1.1.1']);
      assert.equal(rcode(await ask(port, 'nothere.example', 'A', t)), 'NXDOMAIN');
      assert.equal(rcode(await ask(port, 'productpage', 'MX', t)), 'NXDOMAIN');
    }
  });

  void it('truncates to the client size: a large table answer over UDP has TC, all of it over TCP and with EDNS', async () => {
    const small = await ask(port, 'big.example.com', 'A', 'udp');
    assert.equal(small.flag_tc, true);
    assert.ok(small.answers!.length < 100 && small.answers!.length > 0);
    assert.equal((await ask(port, 'big.example.com', 'A', 'tcp')).answers!.length, 100);
    const edns = await ask(port, 'big.example.com', 'A', 'udp', { edns: 4096 });
    assert.equal(edns.answers!.length, 100);
    assert.equal(edns.flag_tc, false);
  });

  void it('an over-size UDP reply from the upstream reaches the client truncated (pilot-agent: SERVFAIL)', async () => {
    const r = await ask(port, 'giant', 'A', 'udp');
    assert.equal(rcode(r), 'NOERROR');
    assert.equal(r.flag_tc, true);
    assert.equal((await ask(port, 'giant', 'A', 'tcp')).answers!.length, 64);
    assert.equal((await ask(port, 'giant', 'A', 'udp', { edns: 65535 })).answers!.length, 64);
  });

  void it('a truncated UDP reply is fetched again over TCP (pilot-agent passes the TC on)', async () => {
    const before = upstream.tcpQueries;
    const r = await ask(port, 'giant-tc', 'A', 'udp', { edns: 4096 });
    assert.equal(r.flag_tc, false);
    assert.equal(r.answers!.length, 64);
    assert.equal(upstream.tcpQueries, before + 1);
  });

  void it('a lost UDP query is sent again within the timeout (pilot-agent: SERVFAIL after the timeout)', async () => {
    const r = await ask(port, 'drop-first', 'A', 'udp');
    assert.equal(rcode(r), 'NOERROR');
    assert.deepEqual(ips(r), ['1.1.1.1']);
  });

  void it('malformed queries: dropped when shorter than a header, FORMERR/NOTIMP otherwise; no crash', async () => {
    assert.equal(await udpQuery(port, Buffer.from([1, 2, 3]), 1000), undefined);
    const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0x3f, 0x61])]);
    const formerr = dnsPacket.decode((await udpQuery(port, garbage))!);
    assert.equal(formerr.id, 0x1234);
    assert.equal(rcode(formerr), 'FORMERR');
    const two = dnsPacket.encode({ id: 7, type: 'query', questions: [{ name: 'a', type: 'A' }, { name: 'b', type: 'A' }] });
    assert.equal(rcode(dnsPacket.decode((await udpQuery(port, two))!)), 'FORMERR');
    const notify = Buffer.from(query('x', 'A'));
    notify.writeUInt16BE((5 << 11) | 0x0100, 2);
    assert.equal(rcode(dnsPacket.decode((await tcpQuery(port, notify))!)), 'NOTIMP');
    // a response is ignored
    assert.equal(await udpQuery(port, dnsPacket.encode({ id: 9, type: 'response', questions: [{ name: 'a', type: 'A' }] }), 1000), undefined);
    assert.ok(proxy.status().malformedQueries >= 3);
    assert.deepEqual(ips(await ask(port, 'www.google.com', 'A')), ['1.1.1.1']);
  });

  void it('counts under pilot-agent metric names', async () => {
    const text = await registry.metrics();
    const v = (n: string): number => Number(new RegExp(`^${n} (\\d+)`, 'm').exec(text)?.[1]);
    assert.ok(v('istio_agent_dns_requests_total') > 10, text);
    assert.ok(v('istio_agent_dns_upstream_requests_total') >= 8, text);
    assert.equal(v('istio_agent_dns_upstream_failures_total'), 0, text);
    assert.match(text, /istio_agent_dns_upstream_request_duration_seconds_bucket\{le="0.001"\}/);
  });

  void it('a resolv.conf without a usable nameserver: SERVFAIL at once, counted', async () => {
    const p = await startProxy('nameserver not-an-address\nsearch x\n');
    try {
      await p.proxy.agentType.onResource({ typeUrl: p.proxy.agentType.typeUrl, value: tableBytes });
      assert.equal(rcode(await ask(p.port, 'www.bing.com', 'A')), 'SERVFAIL');
      assert.deepEqual(ips(await ask(p.port, 'www.google.com', 'A')), ['1.1.1.1']);
      assert.match(await p.registry.metrics(), /^istio_agent_dns_upstream_failures_total 1$/m);
    } finally {
      await p.proxy.close();
    }
  });

  void it('an upstream that never answers gives SERVFAIL after DNS_FORWARD_TIMEOUT, in parallel mode too', async () => {
    for (const parallel of ['false', 'true']) {
      // 127.0.0.2 has nothing on the upstream port: the queries are lost
      const p = await startProxy('nameserver 127.0.0.2\n', { DNS_FORWARD_TIMEOUT: '300ms', DNS_FORWARD_PARALLEL: parallel });
      try {
        await p.proxy.agentType.onResource({ typeUrl: p.proxy.agentType.typeUrl, value: tableBytes });
        assert.equal(rcode(await ask(p.port, 'www.bing.com', 'A')), 'SERVFAIL');
        assert.equal(p.proxy.status().upstreamFailures, 1);
      } finally {
        await p.proxy.close();
      }
    }
  });

  void it('listens where the nameservers are: [::1] for an IPv6 nameserver, both families for both (localhost address)', async () => {
    const p6 = await freePort();
    const p = await startProxy('nameserver ::1\nnameserver 127.0.0.1\n', { DNS_PROXY_ADDR: `localhost:${p6}` });
    try {
      assert.deepEqual([...p.proxy.status().listening].sort(), [`tcp 127.0.0.1:${p6}`, `tcp [::1]:${p6}`, `udp 127.0.0.1:${p6}`, `udp [::1]:${p6}`]);
      await p.proxy.agentType.onResource({ typeUrl: p.proxy.agentType.typeUrl, value: tableBytes });
      const r = await new Promise<Buffer>((resolve, reject) => {
        const s6 = createSocket('udp6');
        s6.on('error', reject);
        s6.on('message', (m) => {
          s6.close();
          resolve(m);
        });
        s6.send(query('www.google.com', 'A'), p6, '::1');
      });
      assert.deepEqual(ips(dnsPacket.decode(r)), ['1.1.1.1']);
    } finally {
      await p.proxy.close();
    }
  });

  void it('sockets bound before start (as the agent binds them before spawning Envoy): queries sent meanwhile are answered once it serves', async () => {
    const p = await freePort();
    const path = join(dir, `resolv-early-${p}.conf`);
    await writeFile(path, 'nameserver 127.0.0.1\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\n');
    const settings = { ...resolveDnsSettings({ env: { ISTIO_META_DNS_CAPTURE: 'true', DNS_PROXY_ADDR: `127.0.0.1:${p}` }, proxyType: 'sidecar', podNamespace: 'ns1', dnsDomain: 'ns1.svc.cluster.local', uid: 1000 }), resolvConfPaths: [path] };
    const prepared = await prepareDns(settings, memoryLogger().log);
    assert.deepEqual(prepared.listeners.bound, [`udp 127.0.0.1:${p}`, `tcp 127.0.0.1:${p}`]);
    // bound: a second bind of the port fails now, before anything serves
    await assert.rejects(prepareDns(settings, memoryLogger().log), /Failed to listen on udp port/);
    const overUdp = udpQuery(p, query('productpage', 'A'));
    const overTcp = tcpQuery(p, query('productpage.ns1', 'A'));
    await new Promise((r) => setTimeout(r, 200));
    const d = createDnsProxy({ settings, log: memoryLogger().log, registry: new Registry(), upstreamPort: upstream.port, prepared });
    try {
      await d.agentType.onResource({ typeUrl: d.agentType.typeUrl, value: tableBytes });
      await d.start();
      assert.deepEqual(d.status().listening, [`udp 127.0.0.1:${p}`, `tcp 127.0.0.1:${p}`]);
      assert.deepEqual(ips(dnsPacket.decode((await overUdp)!)), ['9.9.9.9']);
      assert.deepEqual(ips(dnsPacket.decode(await overTcp)), ['9.9.9.9']);
      assert.deepEqual(ips(await ask(p, 'productpage.ns1.svc.cluster.local', 'A')), ['9.9.9.9']);
    } finally {
      await d.close();
    }
    // closed: the port is free again
    const again = await prepareDns(settings, memoryLogger().log);
    await again.listeners.close();
  });

  void it('a port already taken stops start-up with an error naming it', async () => {
    const settings = { ...resolveDnsSettings({ env: { ISTIO_META_DNS_CAPTURE: 'true', DNS_PROXY_ADDR: `127.0.0.1:${port}` }, proxyType: 'sidecar', podNamespace: 'ns1', dnsDomain: 'ns1.svc.cluster.local', uid: 1000 }), resolvConfPaths: [join(dir, `resolv-${port}.conf`)] };
    const d = createDnsProxy({ settings, log: memoryLogger().log, registry: new Registry() });
    await assert.rejects(d.start(), new RegExp(`failed to start local DNS server: Failed to listen on udp port 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
  });

  void it('the NameTable decoder reads what the schema encodes', () => {
    const t = decodeNameTable(tableBytes);
    assert.deepEqual(t.get('productpage.ns1.svc.cluster.local'), { ips: ['9.9.9.9'], registry: 'Kubernetes', shortname: 'productpage', namespace: 'ns1', altHosts: [] });
    assert.equal(t.get('big.example.com')!.ips.length, 100);
    assert.throws(() => decodeNameTable(Buffer.from([0x0a, 0x05, 0x0a])));
  });
});
