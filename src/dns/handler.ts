// One DNS query in, one reply out (or none): pilot-agent's answer rules over the wire format of the
// `dns-packet` library. No sockets here: the server (server.ts) feeds it datagrams and TCP frames.
//
// - shorter than a header, or a response: dropped;
// - opcode other than QUERY/NOTIFY: NOTIMP; not exactly one question, or more records than a query
//   carries, or a body that does not parse: FORMERR (header echoed, sections empty), as the Go agent's
//   DNS library does;
// - before the first name table: SERVFAIL (or forwarded, in root `:53` mode);
// - a name of the table: its answer (AA, NOERROR, maybe empty), addresses shuffled;
// - anything else: forwarded; the upstream's reply as it came, or SERVFAIL when no upstream answered;
// - every reply fits the client's limit (UDP: its EDNS size, at least 512; TCP: 64 KiB), records dropped
//   and TC set when not.
import * as dnsPacket from 'dns-packet';
import type { Answer, Packet } from 'dns-packet';
import { lookup, shuffleAddresses, type LookupTable } from './table.js';
import type { DnsMetrics } from './metrics.js';
import type { Forwarder, ForwardResult } from './upstream.js';
import { MAX_DNS_MESSAGE } from './upstream.js';

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const CD = 0x0010;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export type Transport = 'udp' | 'tcp';

export interface HandlerDeps {
  /** The current table (undefined until the first NDS update). */
  table(): LookupTable | undefined;
  readonly forwarder: Forwarder;
  readonly metrics: DnsMetrics;
  /** Root `:53` mode: forward everything until the first table arrives. */
  readonly respondBeforeSync: boolean;
  /** Called for each forwarded query no upstream answered (the caller logs, rate-limited). */
  onUpstreamFailure(errors: readonly string[]): void;
  /** Called for each query that could not be parsed (counted, logged rate-limited). */
  onMalformed(reason: string): void;
}

/** A reply of the 12-byte header only: the query's header with QR set and `rcode`, as the Go library rejects. */
function headerOnly(query: Buffer, rcode: number, keepOpcode: boolean): Buffer {
  const out = Buffer.alloc(12);
  query.copy(out, 0, 0, 4);
  let flags = query.readUInt16BE(2);
  // opcode cleared for FORMERR (kept for NOTIMP), AA and Z cleared, rcode replaced
  flags &= ~(0x0400 | 0x0040 | 0x000f | (keepOpcode ? 0 : 0x7800));
  out.writeUInt16BE(flags | QR | rcode, 2);
  return out;
}

/** The client's reply size limit (UDP: the request's EDNS size, at least 512; TCP: 64 KiB). */
export function replyLimit(req: Packet, transport: Transport): number {
  if (transport === 'tcp') return MAX_DNS_MESSAGE;
  for (const a of req.additionals ?? []) {
    if (a.type === 'OPT') return Math.max(512, Math.min((a as { udpPayloadSize?: number }).udpPayloadSize ?? 512, MAX_DNS_MESSAGE));
  }
  return 512;
}

function replyTo(req: Packet, flags: number, answers: Answer[]): Packet {
  const reqFlags = req.flags ?? 0;
  const opcode = reqFlags & 0x7800;
  const copied = opcode === 0 ? reqFlags & (RD | CD) : 0;
  return { id: req.id ?? 0, type: 'response', flags: opcode | copied | flags, questions: req.questions?.slice(0, 1) ?? [], answers };
}

/** Encodes `p`; when it does not fit `limit`, keeps the answers, then authorities, then additionals that fit (in that order), keeps the OPT record, and sets TC. */
export function encodeWithin(p: Packet, limit: number): Buffer {
  const full = dnsPacket.encodingLength(p);
  if (full <= limit) return dnsPacket.encode(p);
  // no name compression in the encoder: a message's length is the sum of its records' lengths
  const opt = (p.additionals ?? []).filter((a) => a.type === 'OPT');
  const t: Packet = { ...p, flags: (p.flags ?? 0) | TC, answers: [], authorities: [], additionals: opt };
  let size = dnsPacket.encodingLength(t);
  const recordLength = (r: Answer): number => dnsPacket.encodingLength({ answers: [r] }) - 12;
  const fill = (from: readonly Answer[], into: Answer[]): boolean => {
    for (const r of from) {
      const n = recordLength(r);
      if (size + n > limit) return false;
      into.push(r);
      size += n;
    }
    return true;
  };
  const extra: Answer[] = [];
  if (fill(p.answers ?? [], t.answers!) && fill(p.authorities ?? [], t.authorities!)) fill((p.additionals ?? []).filter((a) => a.type !== 'OPT'), extra);
  t.additionals = [...extra, ...opt];
  // the OPT record alone may not fit a tiny limit: then it goes too
  if (size > limit) t.additionals = extra;
  return dnsPacket.encode(t);
}

/** Fits an upstream reply to the client's limit (as is when it fits). */
function fitReply(reply: Buffer, limit: number): Buffer {
  if (reply.length <= limit) return reply;
  try {
    return encodeWithin(dnsPacket.decode(reply), limit);
  } catch {
    // an over-size reply we cannot parse: the header with TC, so the client asks again over TCP
    const out = Buffer.alloc(12);
    reply.copy(out, 0, 0, 4);
    out.writeUInt16BE(reply.readUInt16BE(2) | TC, 2);
    return out;
  }
}

/** Handles one query; resolves to the reply bytes, or undefined to send nothing. Never rejects. */
export async function handleQuery(msg: Buffer, transport: Transport, d: HandlerDeps): Promise<Buffer | undefined> {
  if (msg.length < 12) {
    d.onMalformed(`${msg.length}-byte message is shorter than a DNS header`);
    return undefined;
  }
  const flags = msg.readUInt16BE(2);
  if (flags & QR) return undefined;
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0 && opcode !== 4) return headerOnly(msg, RCODE.NOTIMP, true);
  const qd = msg.readUInt16BE(4);
  if (qd !== 1 || msg.readUInt16BE(6) > 1 || msg.readUInt16BE(8) > 1 || msg.readUInt16BE(10) > 2) {
    d.onMalformed(`query with ${qd} questions`);
    return headerOnly(msg, RCODE.FORMERR, false);
  }
  let req: Packet;
  try {
    req = dnsPacket.decode(msg);
  } catch (e) {
    d.onMalformed(e instanceof Error ? e.message : String(e));
    return headerOnly(msg, RCODE.FORMERR, false);
  }
  d.metrics.requests.inc();
  const q = req.questions?.[0];
  const limit = replyLimit(req, transport);
  if (!q) return encodeWithin(replyTo(req, RCODE.SERVFAIL, []), limit);
  const table = d.table();
  if (table) {
    const r = lookup(table, q.type, q.name);
    if (r.found) {
      if (r.answers.length > 1) shuffleAddresses(r.answers);
      return encodeWithin(replyTo(req, AA, r.answers), limit);
    }
  } else if (!d.respondBeforeSync) {
    return encodeWithin(replyTo(req, RCODE.SERVFAIL, []), limit);
  }
  d.metrics.upstreamRequests.inc();
  const stop = d.metrics.upstreamDuration.startTimer();
  let res: ForwardResult;
  try {
    res = await d.forwarder.forward(msg, transport);
  } catch (e) {
    res = { ok: false, errors: [e instanceof Error ? e.message : String(e)] };
  }
  stop();
  if (res.ok) return fitReply(res.reply, limit);
  d.metrics.upstreamFailures.inc();
  d.onUpstreamFailure(res.errors);
  return encodeWithin(replyTo(req, RCODE.SERVFAIL, []), limit);
}
