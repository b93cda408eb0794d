// The DNS proxy component (pilot-agent's local DNS server): answers the mesh's names from istiod's name
// table (NDS, consumed on the xDS stream through `agentType`) and forwards the rest to the resolv.conf
// nameservers. Loaded by the agent only when DNS capture is on.
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log.js';
import { AgentError, errorMessage } from '../lib/errors.js';
import { NAME_TABLE_TYPE } from '../xds/types.js';
import type { AgentTypeHandler } from '../xds/proxy.js';
import { decodeNameTable } from './nds.js';
import { buildLookupTable, nameTableJson, type LookupTable, type TableContext } from './table.js';
import type { NameTable } from './nds.js';
import { dnsMetrics } from './metrics.js';
import type { ResolvConf } from './resolvconf.js';
import { createForwarder } from './upstream.js';
import { startDnsServer, type DnsServer } from './server.js';
import { formatAddress, prepareDns, type PreparedDns } from './listen.js';
import type { DnsSettings } from './options.js';

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
  /**
   * Serves on the sockets bound by `prepareDns` (listen.ts; before Envoy is spawned), or binds them now;
   * rejects with an AgentError naming the address when one cannot be bound.
   */
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
  /** resolv.conf and the sockets, from listen.ts prepareDns (else `start` prepares them). */
  readonly prepared?: PreparedDns;
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
      const p = o.prepared ?? (await prepareDns(s, log));
      resolv = p.resolv;
      const conf = p.resolv.conf;
      const attempts = conf.attempts ?? 2;
      const retransmitMs = Math.min(s.timeoutMs, conf.timeoutS !== undefined ? conf.timeoutS * 1000 : Math.ceil(s.timeoutMs / attempts));
      const forwarder = createForwarder({ servers: conf.servers, port: o.upstreamPort ?? 53, timeoutMs: s.timeoutMs, retransmitMs, parallel: s.parallel, rotate: conf.rotate });
      log.debug('initialized DNS', { search: conf.search.join(','), servers: conf.servers.join(',') });
      try {
        server = await startDnsServer(
          p.listeners,
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
      log.info(`DNS proxy listening on ${p.listeners.udp.map((u) => formatAddress(u.address)).join(', ')} (udp, tcp); upstreams ${conf.servers.join(', ') || 'none'} from ${resolv.path}`);
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
