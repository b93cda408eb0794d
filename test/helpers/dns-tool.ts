// A DNS tool for the DNS proxy's tests and benchmark, run as a process inside a network namespace
// (node build/test/helpers/dns-tool.js <mode> ...):
//
//   upstream <port> [host]  a resolver for names outside the mesh, UDP and TCP on host:port (default
//                           127.0.0.1): outside.example.test A 192.0.2.10 / AAAA 2001:db8::10, txt.example.test
//                           TXT, giant.example.test 64 A records (sent over UDP untruncated: a non-compliant
//                           upstream), giant-tc.example.test the same truncated to 512 bytes with TC over UDP,
//                           drop-first.example.test answered only the second time a query (same ID) comes over
//                           UDP; NXDOMAIN for the rest. Prints "ready" once listening.
//   query <port> <json>     sends each query of the JSON list [{name, type, transport?, edns?, raw?}] to
//                           127.0.0.1:<port> one after the other; prints a JSON list of normalised replies.
//   load <port> <seconds> <concurrency> <name> [type]  UDP queries as fast as answers come back
//                           (`concurrency` outstanding); prints {queries, errors, qps, p50Ms, p99Ms}.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { tcpExchange, udpExchange } from './dns-exchange.js';
import type { Answer, Packet } from 'dns-packet';

type Decoded = Packet & { rcode?: string; flag_aa?: boolean; flag_tc?: boolean; flag_ra?: boolean; flag_rd?: boolean };

export interface QuerySpec {
  name: string;
  type: string;
  transport?: 'udp' | 'tcp';
  edns?: number;
  /** hex bytes sent as is (malformed queries) */
  raw?: string;
}

export interface NormalisedReply {
  query: string;
  /** 'no reply' when nothing came back within the timeout */
  rcode: string;
  aa?: boolean;
  tc?: boolean;
  ra?: boolean;
  rd?: boolean;
  /** "TYPE owner data" of the answer section, sorted (addresses are shuffled) */
  answers?: string[];
}

const giant: Answer[] = Array.from({ length: 64 }, (_, i) => ({ name: 'aaaaaaaaaaaa.aaaaaa', type: 'A', class: 'IN', ttl: 60, data: `240.0.0.${i}` }) as Answer);

function upstreamReply(q: Decoded, transport: 'udp' | 'tcp', seen: Map<number, number>): Buffer | undefined {
  const question = q.questions?.[0];
  if (!question) return undefined;
  const name = question.name.toLowerCase();
  const base: Packet = { id: q.id ?? 0, type: 'response', flags: (q.flags ?? 0) & 0x0100 | 0x0080, questions: q.questions ?? [] };
  if (name === 'drop-first.example.test' && transport === 'udp') {
    const n = (seen.get(q.id ?? 0) ?? 0) + 1;
    seen.set(q.id ?? 0, n);
    if (seen.size > 10_000) seen.clear();
    if (n === 1) return undefined;
  }
  if (name === 'outside.example.test' || name === 'drop-first.example.test') {
    const answers: Answer[] = [];
    if (question.type === 'A') answers.push({ name: question.name, type: 'A', class: 'IN', ttl: 60, data: '192.0.2.10' });
    if (question.type === 'AAAA') answers.push({ name: question.name, type: 'AAAA', class: 'IN', ttl: 60, data: '2001:db8::10' });
    return dnsPacket.encode({ ...base, answers });
  }
  if (name === 'txt.example.test' && question.type === 'TXT') return dnsPacket.encode({ ...base, answers: [{ name: question.name, type: 'TXT', class: 'IN', ttl: 60, data: 'hello' }] });
  if (name === 'giant.example.test') return dnsPacket.encode({ ...base, answers: giant });
  if (name === 'giant-tc.example.test') {
    if (transport === 'tcp') return dnsPacket.encode({ ...base, answers: giant });
    // what a compliant server sends when the answer does not fit 512 bytes: as many records as fit, and TC
    const truncated: Packet = { ...base, flags: (base.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [...giant] };
    while (dnsPacket.encodingLength(truncated) > 512) truncated.answers!.pop();
    return dnsPacket.encode(truncated);
  }
  return dnsPacket.encode({ ...base, flags: (base.flags ?? 0) | 3 });
}

function serveUpstream(port: number, host: string): void {
  const seen = new Map<number, number>();
  const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (msg, rinfo) => {
    let q: Decoded;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const r = upstreamReply(q, 'udp', seen);
    if (r) udp.send(r, rinfo.port, rinfo.address);
  });
  const tcp = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        let q: Decoded;
        try {
          q = dnsPacket.decode(msg);
        } catch {
          sock.destroy();
          return;
        }
        const r = upstreamReply(q, 'tcp', seen);
        if (!r) continue;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(r.length);
        sock.write(Buffer.concat([len, r]));
      }
    });
  });
  let pending = 2;
  const ready = (): void => {
    if (--pending === 0) process.stdout.write('ready\n');
  };
  udp.bind(port, host, ready);
  tcp.listen(port, host, ready);
}

let nextId = 1000;
function encodeQuery(q: QuerySpec): Buffer {
  if (q.raw) return Buffer.from(q.raw, 'hex');
  return dnsPacket.encode({
    id: nextId++,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: q.name, type: q.type as 'A', class: 'IN' }],
    ...(q.edns ? { additionals: [{ name: '.', type: 'OPT', udpPayloadSize: q.edns, flags: 0 } as Answer] } : {}),
  });
}

export function normalise(query: string, reply: Buffer | undefined): NormalisedReply {
  if (!reply) return { query, rcode: 'no reply' };
  let p: Decoded;
  try {
    p = dnsPacket.decode(reply);
  } catch (e) {
    return { query, rcode: `undecodable reply: ${e instanceof Error ? e.message : String(e)}` };
  }
  const answers = (p.answers ?? []).map((a) => `${a.type} ${a.name.toLowerCase()} ${JSON.stringify((a as { data?: unknown }).data)}`).sort();
  return { query, rcode: p.rcode ?? '', aa: p.flag_aa ?? false, tc: p.flag_tc ?? false, ra: p.flag_ra ?? false, rd: p.flag_rd ?? false, answers };
}

async function runQueries(port: number, specs: QuerySpec[]): Promise<NormalisedReply[]> {
  const out: NormalisedReply[] = [];
  for (const q of specs) {
    const msg = encodeQuery(q);
    const transport = q.transport ?? 'udp';
    const reply = transport === 'udp' ? await udpExchange(port, msg, 8000) : await tcpExchange(port, msg, 8000);
    out.push(normalise(`${q.raw ? `raw:${q.raw.slice(0, 16)}` : `${q.name} ${q.type}`} ${transport}${q.edns ? ` edns${q.edns}` : ''}`, reply));
  }
  return out;
}

async function load(port: number, seconds: number, concurrency: number, name: string, type: string): Promise<void> {
  const sock = createSocket('udp4');
  const pending = new Map<number, bigint>();
  const lat: number[] = [];
  let errors = 0;
  let id = 0;
  const end = Date.now() + seconds * 1000;
  const q = dnsPacket.encode({ id: 0, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as 'A', class: 'IN' }] });
  const send = (): void => {
    if (Date.now() >= end) return;
    id = (id + 1) & 0xffff;
    // a copy per query: send() reads its buffer later, after the next query has changed the ID
    const m = Buffer.from(q);
    m.writeUInt16BE(id, 0);
    pending.set(id, process.hrtime.bigint());
    sock.send(m, port, '127.0.0.1');
  };
  await new Promise<void>((resolve) => {
    sock.on('message', (m) => {
      const rid = m.readUInt16BE(0);
      const t0 = pending.get(rid);
      if (t0 === undefined) return;
      pending.delete(rid);
      if ((m[3]! & 0x0f) !== 0) errors++;
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      send();
      if (pending.size === 0 && Date.now() >= end) resolve();
    });
    for (let i = 0; i < concurrency; i++) send();
    // lost queries: stop waiting a second after the end
    setTimeout(resolve, seconds * 1000 + 1000).unref();
  });
  sock.close();
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN;
  process.stdout.write(`${JSON.stringify({ queries: lat.length, errors, lost: pending.size, qps: Math.round(lat.length / seconds), p50Ms: pct(50), p99Ms: pct(99) })}\n`);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'upstream') serveUpstream(Number(args[0] ?? 53), args[1] ?? '127.0.0.1');
else if (mode === 'query') {
  void runQueries(Number(args[0]), JSON.parse(args[1] ?? '[]') as QuerySpec[]).then((r) => process.stdout.write(`${JSON.stringify(r)}\n`));
} else if (mode === 'load') {
  void load(Number(args[0]), Number(args[1] ?? 5), Number(args[2] ?? 16), args[3] ?? 'example.com', args[4] ?? 'A');
} else if (mode !== undefined) {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exitCode = 2;
}
