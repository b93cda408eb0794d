// The DNS proxy component (pilot-agent's local DNS server): answers the mesh's names from istiod's name
// table (NDS, consumed on the xDS stream through `agentType`) and forwards the rest to the resolv.conf
// nameservers. Loaded by the agent only when DNS capture is on.
import { isIPv4, isIPv6 } from 'node:net';
import { open } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log.js';
import { AgentError, errorMessage } from '../lib/errors.js';
import { NAME_TABLE_TYPE } from '../xds/types.js';
import type { AgentTypeHandler } from '../xds/proxy.js';
import { decodeNameTable } from './nds.js';
import { buildLookupTable, nameTableJson, type LookupTable, type TableContext } from './table.js';
import type { NameTable } from './nds.js';
import { dnsMetrics } from './metrics.js';
import { MAX_RESOLV_CONF_BYTES, parseResolvConf, type ResolvConf } from './resolvconf.js';
import { createForwarder } from './upstream.js';
import { formatAddress, startDnsServer, type DnsServer, type ListenAddress } from './server.js';
import { splitHostPort, type DnsSettings } from './options.js';

export { resolveDnsSettings } from './options.js';
export type { DnsSettings } from './options.js';

/** pilot-agent's readiness message while no table has arrived. */
export const DNS_NOT_READY = 'istio DNS capture is turned ON and DNS lookup table is not ready yet';

export interface DnsStatus {
  readonly listening: readonly string[];
  /** A name table arrived (readiness waits for it, as pilot-agent's). */
  readonly tableReceived: boolean;
  /** Entries in the last NameTable, and names answered (all spellings). */
  readonly entries: number;
  readonly names: number;
  readonly lastUpdate?: string;
  readonly updates: number;
  readonly rejectedUpdates: number;
  readonly resolvConf: string;
  readonly upstreams: readonly string[];
  readonly search: readonly string[];
  readonly parallel: boolean;
  readonly forwardTimeoutMs: number;
  readonly malformedQueries: number;
  readonly upstreamFailures: number;
  readonly dropped: { readonly udp: number; readonly tcp: number };
}

export interface DnsProxy {
  /** Binds every socket; rejects with an AgentError naming the address when one cannot be bound. */
  start(): Promise<void>;
  close(): Promise<void>;
  status(): DnsStatus;
  /** Why the agent is not ready (no table yet), or undefined. */
  notReady(): string | undefined;
  /** The table as `/debug/ndsz` shows it (table.ts nameTableJson); undefined before the first one. */
  nameTable(): unknown;
  /** NDS on the xDS stream (the proxy requests it after Envoy's first LDS request, and ACKs/NACKs). */
  readonly agentType: AgentTypeHandler;
}

export interface DnsProxyOptions {
  readonly settings: DnsSettings;
  readonly log: Logger;
  readonly registry: Registry;
  /** Upstream port (53; tests and benchmarks only). */
  readonly upstreamPort?: number;
}

/** Reads the first existing resolv.conf of `paths` (bounded). */
async function readResolvConf(paths: readonly string[]): Promise<{ path: string; conf: ResolvConf }> {
  let lastErr: unknown;
  for (const path of paths) {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      lastErr = e;
      continue;
    }
    try {
      const buf = Buffer.alloc(MAX_RESOLV_CONF_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return { path, conf: parseResolvConf(buf.toString('utf8', 0, bytesRead)) };
    } finally {
      await fh.close();
    }
  }
  throw new AgentError('AGENT_ERR_CONFIG', `failed to start local DNS server: failed to load ${paths.at(-1)}: ${errorMessage(lastErr)}`);
}

/** A logger call at most every `everyMs`, with the number suppressed since. */
function rateLimited(everyMs: number, emit: (msg: string) => void): (msg: string) => void {
  let last = 0;
  let suppressed = 0;
  return (msg) => {
    const now = Date.now();
    if (now - last < everyMs) {
      suppressed++;
      return;
    }
    emit(suppressed ? `${msg} (${suppressed} more since the last report)` : msg);
    suppressed = 0;
    last = now;
  };
}

export function createDnsProxy(o: DnsProxyOptions): DnsProxy {
  const log = o.log.scope('dns');
  const s = o.settings;
  const metrics = dnsMetrics(o.registry);
  let table: LookupTable | undefined;
  /** The NameTable `table` was built from, and its context (/debug/ndsz). */
  let source: { nt: NameTable; ctx: TableContext } | undefined;
  let lastUpdate: Date | undefined;
  let updates = 0;
  let rejectedUpdates = 0;
  let malformed = 0;
  let upstreamFailures = 0;
  let server: DnsServer | undefined;
  let resolv: { path: string; conf: ResolvConf } | undefined;
  const warnFailure = rateLimited(10_000, (m) => log.warn(m));
  const warnMalformed = rateLimited(10_000, (m) => log.warn(m));

  const agentType: AgentTypeHandler = {
    typeUrl: NAME_TABLE_TYPE,
    onResource(res) {
      let next: LookupTable;
      let nt: NameTable;
      const ctx: TableContext = { proxyNamespace: s.proxyNamespace, proxyDomain: s.proxyDomain, search: resolv?.conf.search ?? [] };
      try {
        nt = decodeNameTable(res.value);
        next = buildLookupTable(nt, ctx);
      } catch (e) {
        rejectedUpdates++;
        log.error(`failed to unmarshal name table: ${errorMessage(e)}`);
        throw e;
      }
      // swapped whole: a query sees the old table or the new one
      table = next;
      source = { nt, ctx };
      lastUpdate = new Date();
      updates++;
      log.debug(`updated lookup table with ${next.entries} hosts`);
      if (updates === 1) log.info(`received the first DNS name table: ${next.entries} hosts, ${next.allHosts.size} names`);
    },
  };

  return {
    agentType,
    async start() {
      for (const w of s.warnings) log.warn(w);
      for (const e of s.errors) log.error(e);
      resolv = await readResolvConf(s.resolvConfPaths);
      const conf = resolv.conf;
      if (conf.unusable.length) log.warn(`ignoring nameserver entries of ${resolv.path} that are not IP addresses: ${conf.unusable.join(', ')}`);
      if (conf.servers.length === 0) log.error(`${resolv.path} has no usable nameserver: names outside the mesh get SERVFAIL`);
      let hp: { host: string; port: number };
      try {
        hp = splitHostPort(s.addr);
      } catch (e) {
        throw new AgentError('AGENT_ERR_CONFIG', `failed to start local DNS server: ${errorMessage(e)}`);
      }
      let addrs: ListenAddress[];
      const bare = (x: string): string => x.split('%')[0] ?? x;
      if (hp.host === 'localhost' && conf.servers.length > 0) {
        // both families when the nameservers have both (pilot-agent's choice)
        addrs = [];
        if (conf.servers.some((x) => isIPv4(x))) addrs.push({ host: '127.0.0.1', port: hp.port });
        if (conf.servers.some((x) => isIPv6(bare(x)))) addrs.push({ host: '::1', port: hp.port });
      } else if (hp.host === 'localhost') addrs = [{ host: '127.0.0.1', port: hp.port }];
      else if (hp.host === '') addrs = [{ host: '::', port: hp.port }];
      else addrs = [{ host: hp.host, port: hp.port }];
      const attempts = conf.attempts ?? 2;
      const retransmitMs = Math.min(s.timeoutMs, conf.timeoutS !== undefined ? conf.timeoutS * 1000 : Math.ceil(s.timeoutMs / attempts));
      const forwarder = createForwarder({ servers: conf.servers, port: o.upstreamPort ?? 53, timeoutMs: s.timeoutMs, retransmitMs, parallel: s.parallel, rotate: conf.rotate });
      log.debug('initialized DNS', { search: conf.search.join(','), servers: conf.servers.join(',') });
      try {
        server = await startDnsServer(
          addrs,
          {
            table: () => table,
            forwarder,
            metrics,
            respondBeforeSync: s.respondBeforeSync,
            onUpstreamFailure: (errors) => {
              upstreamFailures++;
              warnFailure(`upstream failure: ${errors.join('; ')}`);
            },
            onMalformed: (reason) => {
              malformed++;
              warnMalformed(`rejected a malformed DNS query: ${reason}`);
            },
          },
          log,
        );
      } catch (e) {
        const msg = errorMessage(e);
        log.error(msg);
        throw new AgentError('AGENT_ERR_IO', `failed to start local DNS server: ${msg}`, { cause: e });
      }
      log.info(`DNS proxy listening on ${addrs.map(formatAddress).join(', ')} (udp, tcp); upstreams ${conf.servers.join(', ') || 'none'} from ${resolv.path}`);
    },
    async close() {
      await server?.close();
      server = undefined;
    },
    notReady: () => (table ? undefined : DNS_NOT_READY),
    nameTable: () => (source ? nameTableJson(source.nt, source.ctx) : undefined),
    status(): DnsStatus {
      return {
        listening: server?.bound ?? [],
        tableReceived: table !== undefined,
        entries: table?.entries ?? 0,
        names: table?.allHosts.size ?? 0,
        ...(lastUpdate ? { lastUpdate: lastUpdate.toISOString() } : {}),
        updates,
        rejectedUpdates,
        resolvConf: resolv?.path ?? '',
        upstreams: resolv?.conf.servers ?? [],
        search: resolv?.conf.search ?? [],
        parallel: s.parallel,
        forwardTimeoutMs: s.timeoutMs,
        malformedQueries: malformed,
        upstreamFailures,
        dropped: { ...(server?.dropped ?? { udp: 0, tcp: 0 }) },
      };
    },
  };
}
