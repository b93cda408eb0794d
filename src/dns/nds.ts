// Decodes istiod's NameTable (NDS, protos/istio/networking/nds/v1/nds.proto) with the small wire reader
// the agent uses for its other few messages (src/lib/protowire.ts says why not protobufjs). Pure.
import { WT_LEN, forEachField } from '../lib/protowire.js';

export interface NameInfo {
  readonly ips: readonly string[];
  readonly registry: string;
  readonly shortname: string;
  readonly namespace: string;
  readonly altHosts: readonly string[];
}

/** hostname -> entry, in the order the message carried them. */
export type NameTable = ReadonlyMap<string, NameInfo>;

/** Names and addresses longer than this are not DNS names: a table carrying one is rejected (NACKed). */
const MAX_STRING = 1024;

function str(buf: Uint8Array, start: number, end: number, what: string): string {
  if (end - start > MAX_STRING) throw new Error(`name table: ${what} is ${end - start} bytes long (limit ${MAX_STRING})`);
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('utf8');
}

function decodeInfo(buf: Uint8Array, start: number, end: number): NameInfo {
  const ips: string[] = [];
  const altHosts: string[] = [];
  let registry = '';
  let shortname = '';
  let namespace = '';
  forEachField(
    buf,
    (f) => {
      if (f.wireType !== WT_LEN) return;
      if (f.field === 1) ips.push(str(buf, f.start, f.end, 'an address'));
      else if (f.field === 2) registry = str(buf, f.start, f.end, 'registry');
      else if (f.field === 3) shortname = str(buf, f.start, f.end, 'shortname');
      else if (f.field === 4) namespace = str(buf, f.start, f.end, 'namespace');
      else if (f.field === 5) altHosts.push(str(buf, f.start, f.end, 'an alt host'));
    },
    start,
    end,
  );
  return { ips, registry, shortname, namespace, altHosts };
}

/** Decodes a serialized NameTable; throws on malformed bytes (the caller NACKs). */
export function decodeNameTable(buf: Uint8Array): NameTable {
  const table = new Map<string, NameInfo>();
  forEachField(buf, (f) => {
    if (f.field !== 1 || f.wireType !== WT_LEN) return;
    let key = '';
    let info: NameInfo = { ips: [], registry: '', shortname: '', namespace: '', altHosts: [] };
    forEachField(
      buf,
      (e) => {
        if (e.wireType !== WT_LEN) return;
        if (e.field === 1) key = str(buf, e.start, e.end, 'a hostname');
        else if (e.field === 2) info = decodeInfo(buf, e.start, e.end);
      },
      f.start,
      f.end,
    );
    // a map entry repeated on the wire: the last one wins (protobuf semantics)
    table.set(key, info);
  });
  return table;
}
