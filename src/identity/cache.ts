// The secret cache: every secret the SDS server (or, in proxyless mode, OUTPUT_CERTS) hands out, with
// pilot-agent's resolution rules, and what we do better:
// - the workload certificate is fetched at start (pre-warm) and renewed *before* it is due, in the
//   background, with the next key already generated: the certificate being served is replaced only by a
//   validated new one, so a CA outage never reaches Envoy; retries back off, but never past a quarter of
//   the remaining lifetime; an expired certificate is never served silently;
// - the trust bundle (ROOTCA) is the union of the CA's root, the mesh root file (the istio-ca-root-cert
//   ConfigMap) and, after the CA moved to a new root, the previous root for one certificate lifetime, so
//   workloads on the old and the new root keep talking during a root rotation, without a restart;
// - file certificates are re-read when their content changes (events and a slow poll, compared by
//   content); a bad change is rejected and the last good certificate kept.
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelayMs, DEFAULT_BACKOFF } from '../lib/backoff.js';
import { errorMessage } from '../lib/errors.js';
import { writeFileAtomic } from '../lib/files.js';
import type { Logger } from '../lib/log.js';
import { watchPaths, type FileWatch } from '../lib/watch.js';
import { CaCallError, type CaClient } from './ca-client.js';
import { buildCsr } from './csr.js';
import { FileSecretError, nonEmptyFile, readKeyCertFiles, readRootFile } from './file-secrets.js';
import { KeyPool, privateKeyPem } from './keys.js';
import type { IdentityMetrics } from './metrics.js';
import { mergeTrustBundles, pemBlockDer, pemCertBlocks } from './pem.js';
import { parseResourceName, ROOT_RESOURCE, WORKLOAD_RESOURCE } from './resources.js';
import { rotationDelayMs } from './rotation.js';
import { CaResponseError, fingerprint, validateIssuedChain, type IssuedCert } from './validate.js';

/** One secret as handed to the SDS server: a certificate and key, or a trust bundle. */
export interface SecretItem {
  readonly resourceName: string;
  readonly certificateChain?: string;
  readonly privateKey?: string;
  readonly rootCert?: string;
  readonly expireMs?: number;
  readonly createdMs?: number;
}

export interface CacheSettings {
  /** `spiffe://<trust domain>/ns/<ns>/sa/<sa>`. */
  readonly spiffeId: string;
  /** SECRET_TTL (requested validity). */
  readonly secretTtlMs: number;
  readonly graceRatio: number;
  readonly graceRatioJitter: number;
  readonly pkcs8Key: boolean;
  /** The well-known certificate files (./etc/certs/..., or the workload-spiffe-credentials ones), absolute. */
  readonly certChainPath: string;
  readonly keyPath: string;
  readonly rootCertPath: string;
  /** OUTPUT_CERTS, absolute ('' = none). */
  readonly outputCertsDir: string;
  /** Mode of the key written to OUTPUT_CERTS. */
  readonly outputKeyMode: number;
  /** The OS trust bundle `file-root:system` stands for ('' = none found). */
  readonly osRootCertPath: string;
  /** The mesh root file merged into ROOTCA (istiod's root-cert.pem), absolute, or '' for none. */
  readonly meshRootCertPath: string;
  /** Poll interval of the file watchers' safety net. */
  readonly filePollMs: number;
  readonly fileDebounceMs: number;
}

export interface CacheDeps {
  readonly settings: CacheSettings;
  /** Scope `cache`. */
  readonly log: Logger;
  readonly metrics: IdentityMetrics;
  /** The CA; undefined when certificates come only from files. */
  readonly ca?: CaClient;
  readonly keys?: KeyPool;
  readonly now?: () => number;
  readonly random?: () => number;
  /**
   * The mesh root certificates' directory is watched once this settles (src/lib/watch.ts startAfter): the
   * agent passes its first readiness, so that the watcher's scan stays out of Envoy's start-up. Default:
   * at once.
   */
  readonly meshRootWatchAfter?: Promise<unknown>;
}

export type WorkloadState = 'pending' | 'ready' | 'renewing' | 'expired';

export interface IdentityStatus {
  readonly spiffeId: string;
  readonly source: 'ca' | 'files';
  readonly state: WorkloadState;
  readonly certificate?: {
    readonly source: 'ca' | 'file';
    readonly spiffeId: string;
    readonly serial: string;
    readonly notBefore: string;
    readonly notAfter: string;
    readonly issuedAt: string;
    readonly nextRotation?: string;
  };
  readonly roots: ReadonlyArray<{ readonly sha256: string; readonly subject: string; readonly notAfter: string }>;
  readonly lastError?: { readonly at: string; readonly message: string; readonly reason: string };
  readonly consecutiveFailures: number;
  readonly fileResources: ReadonlyArray<{ readonly resource: string; readonly paths: readonly string[]; readonly lastRead?: string; readonly lastError?: string }>;
  readonly timings: { readonly firstCsrSignedMs?: number; readonly firstServedMs?: number };
}

interface Workload {
  readonly issued: IssuedCert;
  readonly keyPem: string;
  readonly createdMs: number;
  readonly rotateAtMs: number;
}

interface FileEntry {
  readonly name: string;
  readonly kind: 'tls' | 'root';
  readonly paths: readonly string[];
  /** ROOTCA from a file is merged with the other trust anchors. */
  readonly merge: boolean;
  item?: SecretItem;
  digest?: string;
  lastReadMs?: number;
  lastError?: string;
  watch?: Promise<FileWatch | undefined>;
  checking: Promise<void>;
}

interface CaRoot {
  readonly pem: string;
  readonly der: string;
  /** Trusted until (previous roots only). */
  readonly untilMs?: number;
}

/** Failures that are the CA refusing us, not the CA being away: retried slowly. */
function failureReason(e: unknown): { reason: string; transient: boolean } {
  if (e instanceof CaResponseError) return { reason: 'invalid_response', transient: false };
  if (e instanceof CaCallError) {
    if (e.code === -1) return { reason: 'setup', transient: true };
    return { reason: e.codeName.toLowerCase(), transient: e.transient };
  }
  return { reason: 'internal', transient: true };
}

export class SecretCache {
  private readonly s: CacheSettings;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly listeners = new Set<(name: string) => void>();
  private workload: Workload | undefined;
  private issuing: Promise<Workload> | undefined;
  private rotationTimer: NodeJS.Timeout | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  private rootExpiryTimer: NodeJS.Timeout | undefined;
  private caRoots: CaRoot[] = [];
  private meshRoots = '';
  private configTrustBundle = '';
  private bundle = '';
  private readonly files = new Map<string, FileEntry>();
  private meshRootWatch: Promise<FileWatch | undefined> | undefined;
  private lastError: { atMs: number; message: string; reason: string } | undefined;
  private failures = 0;
  private expiredLogged = false;
  private closed = false;
  private readonly abort = new AbortController();
  private readonly startMs: number;
  private firstCsrSignedMs: number | undefined;
  private firstServedMs: number | undefined;
  /** The first read of the mesh root certificates (start()); it never rejects (a bad file is logged). */
  private meshRootsRead: Promise<void> = Promise.resolve();

  constructor(private readonly d: CacheDeps) {
    this.s = d.settings;
    this.log = d.log;
    this.now = d.now ?? Date.now;
    this.random = d.random ?? Math.random;
    this.startMs = this.now();
  }

  /** Registers a listener for "secret `name` changed: push it to whoever watches it". */
  onUpdate(listener: (name: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(name: string): void {
    this.log.debug(`Trigger on secret update, resource name: ${name}`);
    for (const l of this.listeners) l(name);
  }

  /**
   * Starts what does not wait for a request: the mesh root watch and, with a CA, the first certificate.
   * The CSR does not need the mesh roots, only the trust bundle installed with its certificate does: the
   * first certificate is requested at once, and installed once they were read.
   */
  async start(): Promise<void> {
    if (this.s.meshRootCertPath) this.meshRootsRead = this.loadMeshRoots(true);
    if (this.d.ca) {
      this.issue().catch(() => undefined); // retried inside until it works or the cache closes
    }
    await this.meshRootsRead;
  }

  /** Stops timers, retries and watchers. Pending generateSecret calls reject. */
  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    if (this.rotationTimer) clearTimeout(this.rotationTimer);
    if (this.refillTimer) clearTimeout(this.refillTimer);
    if (this.rootExpiryTimer) clearTimeout(this.rootExpiryTimer);
    const watches = [this.meshRootWatch, ...[...this.files.values()].map((f) => f.watch)];
    await Promise.all(watches.map(async (w) => (await w?.catch(() => undefined))?.close()));
    this.d.ca?.close();
  }

  // ---------------------------------------------------------------------------------------------
  // the SDS entry point

  /**
   * The secret for `name`, resolved as pilot-agent does: the well-known certificate files first (when they
   * exist and are not our own OUTPUT_CERTS), then `file-root:` / `file-cert:` resources, then the workload
   * certificate from the CA (waiting for it if none has been issued yet).
   */
  async generateSecret(name: string): Promise<SecretItem> {
    const s = this.s;
    const outputIsInput = s.outputCertsDir !== '' && dirOf(s.certChainPath) === s.outputCertsDir;
    if (name === ROOT_RESOURCE && !outputIsInput && (await nonEmptyFile(s.rootCertPath))) {
      return this.fileSecret(name, 'root', [s.rootCertPath], true);
    }
    if (name === WORKLOAD_RESOURCE && !outputIsInput && (await nonEmptyFile(s.certChainPath)) && (await nonEmptyFile(s.keyPath))) {
      return this.fileSecret(name, 'tls', [s.certChainPath, s.keyPath], false);
    }
    const ref = parseResourceName(name, s.osRootCertPath);
    switch (ref.kind) {
      case 'file-root':
        return this.fileSecret(name, 'root', [ref.caPath], false);
      case 'file-cert':
        return this.fileSecret(name, 'tls', [ref.certPath, ref.keyPath], false);
      case 'invalid-file':
        throw new Error(ref.reason);
      case 'rootca':
      case 'workload':
        break;
    }
    if (!this.d.ca) throw new Error('attempted to fetch secret, but ca client is nil');
    const w = this.workload ?? (await this.issue());
    if (this.now() >= w.issued.notAfterMs) {
      this.log.error(`serving an expired workload certificate to ${name}: it expired at ${iso(w.issued.notAfterMs)} and could not be renewed${this.lastError ? `: ${this.lastError.message}` : ''}`);
    }
    this.firstServedMs ??= this.now() - this.startMs;
    if (name === ROOT_RESOURCE) {
      this.log.info('returned workload trust anchor from cache', { ttl: ttlText(w.issued.notAfterMs - this.now()) });
      return { resourceName: name, rootCert: this.bundle };
    }
    this.log.info('returned workload certificate from cache', { ttl: ttlText(w.issued.notAfterMs - this.now()) });
    return { resourceName: name, certificateChain: w.issued.chainPem, privateKey: w.keyPem, expireMs: w.issued.notAfterMs, createdMs: w.createdMs };
  }

  /** The trust bundle pushed as ROOTCA (CA mode). */
  trustBundle(): string {
    return this.bundle;
  }

  /** The current workload certificate and key, if any (proxyless mode, tests). */
  current(): { chainPem: string; keyPem: string; notAfterMs: number; serial: string } | undefined {
    const w = this.workload;
    return w && { chainPem: w.issued.chainPem, keyPem: w.keyPem, notAfterMs: w.issued.notAfterMs, serial: w.issued.serial };
  }

  /** Seconds to expiry per resource, for `istio_agent_cert_expiry_seconds` (CA-issued certificates only, as pilot-agent). */
  expirySeconds(): Record<string, number> {
    const w = this.workload;
    return w ? { [WORKLOAD_RESOURCE]: (w.issued.notAfterMs - this.now()) / 1000 } : {};
  }

  /** PCDS trust anchors (ProxyConfig.caCertificatesPem): merged into ROOTCA; a change re-issues the workload certificate. */
  setConfigTrustBundle(pem: string): void {
    if (pem === this.configTrustBundle) return;
    this.configTrustBundle = pem;
    this.recomputeBundle();
    for (const f of this.files.values()) if (f.merge && f.item) f.item = { ...f.item, rootCert: mergeTrustBundles([f.item.rootCert ?? '', pem]) };
    if (this.files.get(ROOT_RESOURCE)?.merge) this.notify(ROOT_RESOURCE);
  }

  // ---------------------------------------------------------------------------------------------
  // the workload certificate

  /** The single in-flight issuance (started if none): resolves with the new certificate. */
  private issue(): Promise<Workload> {
    if (this.closed) return Promise.reject(new Error('the secret cache is closed'));
    this.issuing ??= this.issueUntilDone().finally(() => (this.issuing = undefined));
    return this.issuing;
  }

  private async issueUntilDone(): Promise<Workload> {
    for (;;) {
      try {
        return await this.issueOnce();
      } catch (e) {
        if (this.closed) throw e;
        const { reason, transient } = failureReason(e);
        this.failures++;
        this.lastError = { atMs: this.now(), message: errorMessage(e), reason };
        this.d.metrics.certRefreshFailures.inc({ reason });
        const w = this.workload;
        const remaining = w ? w.issued.notAfterMs - this.now() : Infinity;
        const base = transient ? backoffDelayMs(DEFAULT_BACKOFF, this.failures - 1, this.random) : DEFAULT_BACKOFF.maxMs;
        const wait = Math.round(Math.max(1000, Math.min(base, remaining > 0 ? remaining / 4 : 1000)));
        const what = transient ? 'the CA is unavailable' : 'the CA refused the request';
        if (w && remaining <= 0) {
          if (!this.expiredLogged) this.log.error(`the workload certificate expired at ${iso(w.issued.notAfterMs)} and could not be renewed (${what}: ${errorMessage(e)}); Envoy still holds it`);
          this.expiredLogged = true;
        }
        this.log.warn(`resource:${WORKLOAD_RESOURCE} failed to sign: ${errorMessage(e)}; ${what}, retrying in ${wait}ms${w ? ` (current certificate valid until ${iso(w.issued.notAfterMs)})` : ''}`);
        try {
          await sleep(wait, undefined, { signal: this.abort.signal });
        } catch {
          throw e;
        }
      }
    }
  }

  private async issueOnce(): Promise<Workload> {
    const keys = this.d.keys!;
    const ca = this.d.ca!;
    ca.prepare?.();
    const key = await keys.take();
    let certified = false;
    const t0 = this.now();
    try {
      const csr = await buildCsr(key, [this.s.spiffeId]);
      this.log.debug(`resource:${WORKLOAD_RESOURCE} constructed host name for CSR: ${this.s.spiffeId}`);
      this.d.metrics.outgoingRequests.inc({ request_type: 'csr' });
      let chain: string[];
      try {
        chain = await ca.sign(csr, Math.floor(this.s.secretTtlMs / 1000));
      } finally {
        this.d.metrics.outgoingLatency.inc({ request_type: 'csr' }, this.now() - t0);
      }
      await this.meshRootsRead;
      const issued = validateIssuedChain(chain, { privateKey: key.privateKey, spiffeId: this.s.spiffeId, trustedRoots: this.trustedRoots(), nowMs: this.now() });
      certified = true;
      if (issued.spiffeId !== this.s.spiffeId) this.log.warn(`the CA issued ${issued.spiffeId} for the requested ${this.s.spiffeId} (check TRUST_DOMAIN)`);
      return this.install(issued, privateKeyPem(key, this.s.pkcs8Key), this.now() - t0);
    } catch (e) {
      this.d.metrics.failedOutgoingRequests.inc({ request_type: 'csr' });
      throw e;
    } finally {
      // a key that was never certified was never exposed: use it for the next attempt
      if (!certified) keys.giveBack(key);
    }
  }

  private install(issued: IssuedCert, keyPem: string, latencyMs: number): Workload {
    const createdMs = this.now();
    this.firstCsrSignedMs ??= createdMs - this.startMs;
    const delay = rotationDelayMs({ createdMs, expireMs: issued.notAfterMs, graceRatio: this.s.graceRatio, graceRatioJitter: this.s.graceRatioJitter }, createdMs, this.random);
    const w: Workload = { issued, keyPem, createdMs, rotateAtMs: createdMs + delay };
    const previous = this.workload;
    this.workload = w;
    this.failures = 0;
    this.expiredLogged = false;
    if (this.lastError) this.log.info(`workload certificate renewed after ${ttlText(createdMs - this.lastError.atMs)} of CA errors`);
    this.lastError = undefined;
    this.d.metrics.certLastRefresh.set(createdMs / 1000);
    this.d.metrics.certNextRotation.set(w.rotateAtMs / 1000);
    this.log.info('generated new workload certificate', { resourceName: WORKLOAD_RESOURCE, latency: ttlText(latencyMs), ttl: ttlText(issued.notAfterMs - createdMs), serial: issued.serial });
    const rootChanged = this.adoptCaRoot(issued.rootPem, previous);
    this.scheduleRotation(delay);
    if (rootChanged) this.notify(ROOT_RESOURCE);
    if (previous) this.notify(WORKLOAD_RESOURCE);
    this.writeOutput('key').catch(() => undefined);
    // the next key, made once start-up is over so it does not compete with Envoy for the CPU
    if (this.refillTimer) clearTimeout(this.refillTimer);
    this.refillTimer = setTimeout(() => this.d.keys?.fill(), Math.min(5000, delay / 2));
    this.refillTimer.unref();
    return w;
  }

  private scheduleRotation(delayMs: number): void {
    if (this.rotationTimer) clearTimeout(this.rotationTimer);
    this.log.debug(`scheduled certificate for rotation in ${ttlText(delayMs)}`);
    // setTimeout holds at most ~24.8 days; re-arm until due
    const step = Math.min(delayMs, 2 ** 31 - 1);
    this.rotationTimer = setTimeout(() => {
      if (step < delayMs) return this.scheduleRotation(delayMs - step);
      this.log.debug('rotating certificate');
      this.issue().catch(() => undefined);
    }, step);
    this.rotationTimer.unref();
  }

  /** Roots a chain without its own root may end at. */
  private trustedRoots(): X509Certificate[] {
    const out: X509Certificate[] = [];
    for (const text of [this.bundle, this.meshRoots]) {
      for (const b of pemCertBlocks(text)) {
        try {
          out.push(new X509Certificate(pemBlockDer(b)));
        } catch {
          // not a certificate
        }
      }
    }
    return out;
  }

  /** Makes `rootPem` the current CA root; a replaced root stays trusted for one certificate lifetime. Returns whether ROOTCA changed. */
  private adoptCaRoot(rootPem: string, previous: Workload | undefined): boolean {
    const now = this.now();
    let der: string;
    try {
      der = pemBlockDer(pemCertBlocks(rootPem)[0] ?? '').toString('base64');
    } catch {
      der = rootPem;
    }
    const current = this.caRoots.find((r) => r.untilMs === undefined);
    let roots = this.caRoots.filter((r) => r.untilMs === undefined || r.untilMs > now);
    if (current?.der !== der) {
      const keepFor = Math.max(this.s.secretTtlMs, previous ? previous.issued.notAfterMs - previous.createdMs : 0);
      roots = roots.filter((r) => r.der !== der).map((r) => (r.untilMs === undefined ? { ...r, untilMs: now + keepFor } : r));
      roots.unshift({ pem: rootPem, der });
      if (current) this.log.info(`Root cert has changed, start rotating root cert; the previous root stays trusted until ${iso(now + keepFor)}`);
    }
    this.caRoots = roots;
    return this.recomputeBundle();
  }

  /** Recomputes ROOTCA from its sources; returns whether it changed (and schedules the expiry of previous roots). */
  private recomputeBundle(): boolean {
    const now = this.now();
    this.caRoots = this.caRoots.filter((r) => r.untilMs === undefined || r.untilMs > now);
    const next = mergeTrustBundles([...this.caRoots.map((r) => r.pem), this.meshRoots, this.configTrustBundle]);
    const nextExpiry = Math.min(...this.caRoots.map((r) => r.untilMs ?? Infinity));
    if (this.rootExpiryTimer) clearTimeout(this.rootExpiryTimer);
    this.rootExpiryTimer = undefined;
    if (Number.isFinite(nextExpiry)) {
      this.rootExpiryTimer = setTimeout(() => {
        if (!this.closed && this.recomputeBundle()) this.notify(ROOT_RESOURCE);
      }, Math.min(2 ** 31 - 1, Math.max(0, nextExpiry - now) + 10));
      this.rootExpiryTimer.unref();
    }
    if (next === this.bundle) return false;
    const first = this.bundle === '';
    this.bundle = next;
    if (!first) this.log.info(`trust bundle changed: ${pemCertBlocks(next).length} root(s)`);
    this.writeOutput('root').catch(() => undefined);
    return true;
  }

  /** Reads the mesh root file (istio-ca-root-cert) and watches it; a change is pushed as a new ROOTCA. */
  private async loadMeshRoots(watch: boolean): Promise<void> {
    const path = this.s.meshRootCertPath;
    try {
      const text = (await readRootFile(path)).rootCert;
      if (text !== this.meshRoots) {
        const first = this.meshRoots === '';
        this.meshRoots = text;
        if (!first) this.log.info(`mesh root certificates changed in ${path}`);
        if (this.workload && this.recomputeBundle()) this.notify(ROOT_RESOURCE);
      }
    } catch (e) {
      // keep what we had: a half-written or removed ConfigMap file must not drop trust
      if (!(e instanceof FileSecretError && /no such file/.test(e.message) && this.meshRoots === '')) {
        this.log.warn(`ignoring the mesh root certificates in ${path}: ${errorMessage(e)}; keeping the previous ones`);
      }
    }
    if (watch && !this.meshRootWatch) {
      this.meshRootWatch = watchPaths([path], () => void this.loadMeshRoots(false), {
        debounceMs: this.s.fileDebounceMs,
        pollMs: this.s.filePollMs,
        onError: (e) => this.watcherFailed(path, e),
        ...(this.d.meshRootWatchAfter ? { startAfter: this.d.meshRootWatchAfter } : {}),
      }).catch((e: unknown) => {
        this.watcherFailed(path, e);
        return undefined;
      });
    }
  }

  private watcherFailed(path: string, e: unknown): void {
    this.d.metrics.fileWatcherFailures.inc();
    this.log.error(`certificate watch error: ${errorMessage(e)}`, { path });
  }

  // ---------------------------------------------------------------------------------------------
  // file certificates

  private async fileSecret(name: string, kind: 'tls' | 'root', paths: readonly string[], merge: boolean): Promise<SecretItem> {
    let f = this.files.get(name);
    if (!f || f.paths.join('\0') !== paths.join('\0')) {
      f = { name, kind, paths, merge, checking: Promise.resolve() };
      this.files.set(name, f);
    }
    if (f.item) return f.item;
    // first read: a file being written may need a moment (pilot-agent retries for up to 10 s)
    let lastErr: unknown;
    for (const wait of [0, 100, 200, 400]) {
      if (wait) await sleep(wait);
      try {
        await this.readFileSecret(f, false);
        break;
      } catch (e) {
        lastErr = e;
      }
    }
    if (!f.item) {
      this.d.metrics.fileSecretFailures.inc();
      this.log.error(`resource:${name} failed to generate secret for proxy from file: ${errorMessage(lastErr)}`);
      this.files.delete(name);
      throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
    }
    this.log.info('read certificate from file', { resource: name });
    f.watch ??= watchPaths(f.paths, () => this.recheckFile(f), { debounceMs: this.s.fileDebounceMs, pollMs: this.s.filePollMs, onError: (e) => this.watcherFailed(f.paths[0]!, e) }).catch((e: unknown) => {
      this.watcherFailed(f.paths[0]!, e);
      return undefined;
    });
    return f.item;
  }

  /** Reads the entry's files; sets its item when valid. Returns whether the content changed. */
  private async readFileSecret(f: FileEntry, strict: boolean): Promise<boolean> {
    const now = this.now();
    let item: SecretItem;
    let digest: string;
    if (f.kind === 'tls') {
      const r = await readKeyCertFiles(f.paths[0]!, f.paths[1]!);
      if (r.notAfterMs <= now) this.log.warn(`the certificate in ${f.paths[0]} expired at ${iso(r.notAfterMs)}; serving it as the files hold nothing newer`);
      item = { resourceName: f.name, certificateChain: r.certificateChain, privateKey: r.privateKey, expireMs: r.notAfterMs, createdMs: now };
      digest = r.digest;
    } else {
      const r = await readRootFile(f.paths[0]!);
      if (r.skipped.length) this.log.warn(`failed to parse some certs from file ${f.paths[0]}: ${r.skipped.join('; ')}`);
      item = { resourceName: f.name, rootCert: f.merge ? mergeTrustBundles([r.rootCert, this.configTrustBundle]) : r.rootCert };
      digest = r.digest;
    }
    f.lastReadMs = now;
    f.lastError = undefined;
    if (strict && digest === f.digest) return false;
    f.item = item;
    f.digest = digest;
    return true;
  }

  /** A watched file may have changed: re-read it, push a valid change, keep the last good item on a bad one. */
  private recheckFile(f: FileEntry): void {
    f.checking = f.checking.then(async () => {
      if (this.closed || this.files.get(f.name) !== f) return;
      try {
        if (await this.readFileSecret(f, true)) {
          this.log.info(`event for file certificate ${f.paths[0]} : content changed, pushing to proxy`, { resource: f.name });
          this.notify(f.name);
        }
      } catch (e) {
        const msg = errorMessage(e);
        if (msg !== f.lastError) {
          this.d.metrics.fileSecretFailures.inc();
          this.log.error(`resource:${f.name} rejected a change of its files, keeping the last good certificate: ${msg}`);
        }
        f.lastError = msg;
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // OUTPUT_CERTS

  private outputChain: Promise<void> = Promise.resolve();
  private readonly written = new Map<string, string>();

  /** Atomic write, skipped when we already wrote the same content there (pilot-agent writes only changes). */
  private async writeIfChanged(path: string, content: string, mode: number): Promise<void> {
    if (this.written.get(path) === content) return;
    await writeFileAtomic(path, content, mode, 0o755);
    this.written.set(path, content);
  }

  private writeOutput(what: 'key' | 'root'): Promise<void> {
    const dir = this.s.outputCertsDir;
    if (!dir) return Promise.resolve();
    this.outputChain = this.outputChain.then(async () => {
      const w = this.workload;
      try {
        if (what === 'key' && w) {
          await this.writeIfChanged(`${dir}/key.pem`, w.keyPem, this.s.outputKeyMode);
          await this.writeIfChanged(`${dir}/cert-chain.pem`, w.issued.chainPem, 0o644);
        }
        if (this.bundle) await this.writeIfChanged(`${dir}/root-cert.pem`, this.bundle, 0o644);
      } catch (e) {
        this.log.error(`error when output the resource: ${errorMessage(e)}`);
      }
    });
    return this.outputChain;
  }

  // ---------------------------------------------------------------------------------------------

  /** What readiness needs, without parsing any certificate (status() parses the roots: for status views only). */
  brief(): Pick<IdentityStatus, 'state' | 'lastError' | 'timings'> & { readonly certificate?: object } {
    const w = this.workload;
    const now = this.now();
    let state: WorkloadState = 'pending';
    if (w) state = now >= w.issued.notAfterMs ? 'expired' : this.issuing ? 'renewing' : 'ready';
    const hasFile = this.files.get(WORKLOAD_RESOURCE)?.item?.certificateChain !== undefined;
    return {
      state: !w && hasFile ? 'ready' : state,
      ...(w || hasFile ? { certificate: {} } : {}),
      ...(this.lastError ? { lastError: { at: iso(this.lastError.atMs), message: this.lastError.message, reason: this.lastError.reason } } : {}),
      timings: this.firstServedMs !== undefined ? { firstServedMs: this.firstServedMs } : {},
    };
  }

  status(): IdentityStatus {
    const w = this.workload;
    const now = this.now();
    let state: WorkloadState = 'pending';
    if (w) state = now >= w.issued.notAfterMs ? 'expired' : this.issuing ? 'renewing' : 'ready';
    const fileDefault = this.files.get(WORKLOAD_RESOURCE)?.item;
    const roots: IdentityStatus['roots'][number][] = [];
    for (const b of pemCertBlocks(this.bundle || (this.files.get(ROOT_RESOURCE)?.item?.rootCert ?? ''))) {
      try {
        const c = new X509Certificate(pemBlockDer(b));
        roots.push({ sha256: fingerprint(c), subject: (c.subject ?? '').replace(/\n/g, ', '), notAfter: iso(Date.parse(c.validTo)) });
      } catch {
        // skip
      }
    }
    let certificate: IdentityStatus['certificate'];
    if (w) {
      certificate = {
        source: 'ca',
        spiffeId: w.issued.spiffeId,
        serial: w.issued.serial,
        notBefore: iso(w.issued.notBeforeMs),
        notAfter: iso(w.issued.notAfterMs),
        issuedAt: iso(w.createdMs),
        nextRotation: iso(w.rotateAtMs),
      };
    } else if (fileDefault?.certificateChain) {
      try {
        const c = new X509Certificate(pemBlockDer(pemCertBlocks(fileDefault.certificateChain)[0] ?? ''));
        certificate = { source: 'file', spiffeId: c.subjectAltName ?? '', serial: c.serialNumber, notBefore: iso(Date.parse(c.validFrom)), notAfter: iso(Date.parse(c.validTo)), issuedAt: iso(fileDefault.createdMs ?? now) };
        state = Date.parse(c.validTo) <= now ? 'expired' : 'ready';
      } catch {
        // skip
      }
    }
    return {
      spiffeId: this.s.spiffeId,
      source: this.d.ca ? 'ca' : 'files',
      state,
      ...(certificate ? { certificate } : {}),
      roots,
      ...(this.lastError ? { lastError: { at: iso(this.lastError.atMs), message: this.lastError.message, reason: this.lastError.reason } } : {}),
      consecutiveFailures: this.failures,
      fileResources: [...this.files.values()].map((f) => ({
        resource: f.name,
        paths: f.paths,
        ...(f.lastReadMs ? { lastRead: iso(f.lastReadMs) } : {}),
        ...(f.lastError ? { lastError: f.lastError } : {}),
      })),
      timings: {
        ...(this.firstCsrSignedMs !== undefined ? { firstCsrSignedMs: this.firstCsrSignedMs } : {}),
        ...(this.firstServedMs !== undefined ? { firstServedMs: this.firstServedMs } : {}),
      },
    };
  }
}

function dirOf(p: string): string {
  return p.slice(0, p.lastIndexOf('/')) || '/';
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A duration as Go prints one (`1h2m3.5s`, `250ms`), for logs operators compare with pilot-agent's. */
export function ttlText(ms: number): string {
  const neg = ms < 0;
  let rest = Math.abs(ms);
  if (rest < 1000) return `${neg ? '-' : ''}${Math.round(rest)}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = Math.round(rest) / 1000;
  return `${neg ? '-' : ''}${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s}s`;
}

