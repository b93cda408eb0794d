// The workload identity component: the secret cache (CA client, keys, rotation, file certificates,
// OUTPUT_CERTS) and the SDS server Envoy reads them from, in the mode pilot-agent would pick:
//   - another SDS server already answers on the workload socket (e.g. SPIRE): we serve only file
//     certificates, on ./var/run/secrets/credential-uds/files-socket;
//   - certificates come from files (FILE_MOUNTED_CERTS, workload-spiffe-credentials, GKE): no CA;
//   - otherwise the CA (istiod) issues them;
//   - proxyless (DISABLE_ENVOY): no SDS server, certificates are written to OUTPUT_CERTS and kept fresh.
import { workloadCertificateBlocker } from './readiness.js';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log.js';
import { SecretCache, type IdentityStatus } from './cache.js';
import { createCaClient } from './ca-client.js';
import { preloadCsrEncoder } from './csr.js';
import { KeyPool, describeKeySpec, sameKeySpec, type EarlyKey } from './keys.js';
import { identityMetrics, type IdentityMetrics } from './metrics.js';
import { sdsSocketToBind, type IdentitySettings } from './options.js';
import type { UdsListener } from '../lib/uds.js';
import { createSdsServer, type SdsServer, type SdsStatus } from './sds-server.js';

export { resolveIdentitySettings } from './options.js';
export type { IdentitySettings } from './options.js';
export type { IdentityStatus, SecretItem } from './cache.js';
export { startEarlyKey, type EarlyKey } from './keys.js';

export interface IdentityOptions {
  readonly settings: IdentitySettings;
  /** The default scope; the component logs in `sds`, `ads`, `cache`, `citadelclient` and `ca`. */
  readonly log: Logger;
  /** The agent's metrics registry. */
  readonly registry: Registry;
  readonly processCwd?: string;
  /** A key generation started before the configuration was read (used when its spec matches). */
  readonly earlyKey?: EarlyKey;
  /** When to start watching the mesh root certificates' directory (CacheDeps.meshRootWatchAfter). */
  readonly meshRootWatchAfter?: Promise<unknown>;
}

export interface Identity {
  /**
   * Starts serving. `externalSocket` says whether a healthy SDS server already answers on the workload
   * socket (checked by the caller before anything binds it). `listener`: the SDS socket, already bound at
   * `sdsSocketToBind(settings, externalSocket)` (so that Envoy can start before gRPC is loaded).
   */
  start(externalSocket: boolean, listener?: UdsListener): Promise<void>;
  close(): Promise<void>;
  status(): (IdentityStatus & { mode: string; sds: SdsStatus | null; caEndpoint?: string }) | null;
  readonly metrics: IdentityMetrics;
  /** Why the workload certificate blocks readiness (readiness.ts), cheaply: no certificate is parsed. */
  readinessBlocker(): string | undefined;
}

/**
 * Creates the component. The first key is generated from here on, on the thread pool, so it is ready by
 * the time the CA can be asked (call this as early in start-up as possible).
 */
export function createIdentity(o: IdentityOptions): Identity {
  const s = o.settings;
  const early = o.earlyKey && sameKeySpec(o.earlyKey.spec, s.key) ? o.earlyKey.key : undefined;
  const keys = s.fileMounted ? undefined : new KeyPool(s.key, undefined, early);
  keys?.fill();
  if (keys) preloadCsrEncoder().catch(() => undefined);
  let cache: SecretCache | undefined;
  let sds: SdsServer | undefined;
  let mode = 'starting';
  const metrics = identityMetrics(o.registry, () => cache?.expirySeconds() ?? {});

  return {
    metrics,
    async start(externalSocket, listener) {
      const log = o.log;
      const filesOnly = externalSocket;
      const socketPath = sdsSocketToBind(s, externalSocket);
      if (externalSocket) log.info(`Existing workload SDS socket found at ${s.workloadSocketPath}. Default Istio SDS Server will only serve files`);
      const useCa = !filesOnly && !s.fileMounted && s.ca !== undefined;
      let ca;
      if (!useCa) {
        if (s.fileMounted) log.info(`workload certificate files detected (${s.fileMountedReason}), creating secret manager without caClient`);
        log.info('Workload is using file mounted certificates. Skipping connecting to CA');
      } else {
        const c = s.ca!;
        log.info(`CA Endpoint ${c.endpoint}, provider ${c.provider}`);
        log.info(c.tls ? `Using CA ${c.endpoint} cert with certs: ${c.tls.rootCertPath ?? 'system'} (${c.rootSource})` : 'Debug mode or IP-secure network');
        log.info(`workload identity ${s.spiffeId}, ${describeKeySpec(s.key)} key, certificate TTL ${Math.round(s.cache.secretTtlMs / 1000)}s`);
        ca = createCaClient({
          endpoint: c.endpoint,
          tls: c.tls,
          tokenPath: s.tokenPath,
          clusterId: s.clusterId,
          headers: s.caHeaders,
          certSigner: s.certSigner,
          keepaliveTimeMs: s.keepaliveTimeMs,
          keepaliveTimeoutMs: s.keepaliveTimeoutMs,
          log: log.scope('citadelclient'),
          retryLog: log.scope('ca'),
          onRetry: () => metrics.outgoingRetries.inc({ request_type: 'csr' }),
        });
      }
      cache = new SecretCache({
        settings: s.cache,
        log: log.scope('cache'),
        metrics,
        ...(ca ? { ca } : {}),
        ...(useCa && keys ? { keys } : {}),
        ...(o.meshRootWatchAfter ? { meshRootWatchAfter: o.meshRootWatchAfter } : {}),
      });
      mode = s.proxyless ? 'proxyless' : filesOnly ? 'files-only (external workload SDS socket)' : useCa ? 'ca' : 'file-mounted';
      if (socketPath !== undefined) {
        sds = createSdsServer({
          socketPath,
          ...(listener ? { listener } : {}),
          source: cache,
          log: log.scope('sds'),
          adsLog: log.scope('ads'),
          metrics,
          osRootCertPath: s.cache.osRootCertPath,
          ...(s.keyProvider ? { keyProvider: s.keyProvider } : {}),
          crlEnabled: s.crlEnabled,
          filesOnly,
          ...(o.processCwd ? { processCwd: o.processCwd } : {}),
        });
        await sds.start();
      }
      await cache.start();
    },
    async close() {
      await sds?.close();
      await cache?.close();
    },
    readinessBlocker() {
      if (!cache) return undefined;
      return workloadCertificateBlocker({ ...cache.brief(), sds: sds?.status() ?? null });
    },
    status() {
      if (!cache) return null;
      return { mode, ...cache.status(), sds: sds?.status() ?? null, ...(s.ca ? { caEndpoint: s.ca.endpoint } : {}) };
    },
  };
}
