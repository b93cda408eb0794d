// The composition root: the only place that knows every component. Starts what Envoy needs (the XDS and
// SDS sockets, the bootstraps), then Envoy, then, while Envoy initializes, the components behind those
// sockets (xDS proxy, workload identity) and the status server: the larger part of the agent's code, loaded
// only then. Then waits for the first of: a termination signal, /quitquitquit, or Envoy going away for
// good. Hot restarts (SIGHUP, POST /restart, a change of the bootstrap inputs on disk) and crash restarts
// happen in between without the agent exiting. docs/performance.md explains the order.
import { rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AgentConfig } from '../config/agent-config.js';
import type { CliContext, ExitCode } from '../lib/context.js';
import { buildBootstrap, bootstrapOverrideJson, commitBootstrap, generateBootstrap, prepareBootstrap, probeBootstrapRuntime, templatePathFor, writeGrpcBootstrap, type BootstrapRuntime } from '../bootstrap/index.js';
import { buildEnvoyArgs, parentShutdownSeconds, type HotRestartArgs } from '../envoy/args.js';
import { createEnvoyAdmin } from '../envoy/admin.js';
import { drainForTermination } from '../envoy/drain.js';
import { createEnvoySupervisor, type SupervisorOutcome } from '../envoy/supervisor.js';
import { validateBootstrap } from '../envoy/validate.js';
// types and the settings resolvers only (no gRPC, prom-client or chokidar): the components themselves are
// imported once Envoy has been spawned
import type { StatusServer } from '../status/server.js';
import { parseStatusEnv, type StatusEnvConfig } from '../status/config.js';
import { parseHealthProbe, type HealthProbeConfig } from '../status/health-probe-config.js';
import type { XdsProxy } from '../xds/proxy.js';
import { resolveXdsProxySettings, type XdsProxySettings } from '../xds/options.js';
import type { Identity } from '../identity/index.js';
import type { EarlyKey } from '../identity/keys.js';
import { resolveIdentitySettings, sdsSocketToBind, type IdentitySettings } from '../identity/options.js';
import type { DnsProxy } from '../dns/index.js';
import type { PreparedDns } from '../dns/listen.js';
import { resolveDnsSettings, type DnsSettings } from '../dns/options.js';
import { AgentError, ConfigError, errorMessage } from '../lib/errors.js';
import type { AgentMetrics } from '../lib/metrics.js';
import type { Logger } from '../lib/log.js';
import type { FileWatch } from '../lib/watch.js';
import { OWNER_ONLY_SOCKET_MODE, listenUds, type UdsListener } from '../lib/uds.js';
import { releaseMemorySoon, releaseMemoryWhenGrown } from '../lib/gc.js';
import { writeFileAtomic } from '../lib/files.js';
import { changesNeedingPodRestart } from './reload.js';
import { EventLog, StartupPhases, STARTUP_PHASES } from '../lib/timeline.js';
import { CLUSTER_TYPE, LISTENER_TYPE, shortType } from '../xds/types.js';

export interface AgentRunOptions {
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly ctx: CliContext;
  /** Loads the configuration again from the same flags and environment (throws ConfigError). */
  readonly reload: () => Promise<AgentConfig>;
  readonly processStartMs?: number;
  /** The first workload key, generated since the command started. */
  readonly earlyKey?: EarlyKey;
}

type Stop = { readonly kind: 'signal'; readonly signal: string } | { readonly kind: 'quit' } | { readonly kind: 'envoy'; readonly outcome: SupervisorOutcome };

export async function runAgent(o: AgentRunOptions): Promise<ExitCode> {
  const { log, ctx } = o;
  let cfg = o.config;
  const sidecar = cfg.proxyType === 'sidecar';
  // settings first (pure): a bad value stops start-up before anything runs
  let identitySettings: IdentitySettings;
  let statusEnv: StatusEnvConfig | undefined;
  let healthProbe: HealthProbeConfig | undefined;
  // ISTIO_META_DNS_CAPTURE & co, from the environment with ProxyConfig.proxyMetadata over it (pilot-agent
  // sets the metadata as environment variables); the DNS proxy itself is loaded only when enabled
  const dnsSettings: DnsSettings = resolveDnsSettings({
    env: { ...cfg.processEnv, ...cfg.proxy.proxyMetadata },
    proxyType: cfg.proxyType,
    podNamespace: cfg.env.podNamespace,
    dnsDomain: cfg.dnsDomain,
    uid: process.getuid?.() ?? -1,
  });
  try {
    identitySettings = resolveIdentitySettings(cfg);
    try {
      healthProbe = parseHealthProbe(cfg.proxyConfig.readinessProbe);
    } catch (e) {
      throw new ConfigError([{ source: 'proxyConfig', message: errorMessage(e) }]);
    }
    if (cfg.proxy.statusPort !== 0) {
      statusEnv = parseStatusEnv({
        kubeAppProbers: cfg.env.kubeAppProbers || undefined,
        prometheusAnnotations: sidecar ? cfg.env.prometheusAnnotations || undefined : undefined,
        statusPort: cfg.proxy.statusPort,
      });
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      ctx.stderr.write(`Error: ${e.message}\n`);
      return 255;
    }
    throw e;
  }
  // what operators see: start-up phases (logged once at ready, exported as metrics) and recent events
  const processStartMs = o.processStartMs ?? Date.now();
  const phases = new StartupPhases(processStartMs);
  const events = new EventLog();
  /** When the identity component was created (its timings are relative to that). */
  let identityCreatedMs: number | undefined;
  /** The last workload certificate serial seen (to put rotations on the timeline). */
  let lastSerial: string | undefined;
  // the components, created once Envoy has been spawned (startComponents below)
  let metrics: AgentMetrics | undefined;
  let identity: Identity | undefined;
  let dns: DnsProxy | undefined;
  /** DNS capture: resolv.conf and the sockets, bound before Envoy is spawned (as pilot-agent binds them first). */
  let dnsPrepared: PreparedDns | undefined;
  /** Set once every component runs: restarts are refused before. */
  let started = false;
  /** Resolved the first time Envoy is ready (onReady in startComponents). */
  let markReady: () => void = () => undefined;
  const readyOnce = new Promise<void>((r) => (markReady = r));
  /** The first readiness, or `ms` from now if that comes first: what waits for Envoy's start-up to be over. */
  const firstReady = (ms: number): Promise<void> => Promise.race([readyOnce, new Promise<void>((r) => setTimeout(r, ms).unref())]);
  const proxyless = cfg.env.disableEnvoy;
  const ipv6 = cfg.ipMode === 'IPv6';
  const admin = createEnvoyAdmin({
    port: cfg.proxy.proxyAdminPort,
    host: ipv6 ? '::1' : '127.0.0.1',
    envoyStatusPort: cfg.env.envoyStatusPort,
    prometheusPort: cfg.env.envoyPrometheusPort,
  });
  const cleanups: Array<() => Promise<void>> = [];
  let stopRequested: ((s: Stop) => void) | undefined;
  const stopped = new Promise<Stop>((r) => (stopRequested = r));
  let drained = false;
  let quitting = false;
  const hotRestartEnabled = !cfg.disableHotRestart;

  // the supervisor is created below; the status server's callbacks reach it through these
  const envoy: { sup?: ReturnType<typeof createEnvoySupervisor> } = {};
  let xds: XdsProxy | undefined;
  let restartChain: Promise<unknown> = Promise.resolve();
  /** Hot restarts asked for and not finished yet; the last one's outcome (for the status view). */
  let pendingRestarts = 0;
  /**
   * Why a new Envoy epoch could not start now, if it could not: it needs the control plane (its
   * configuration comes from there), and Envoy refuses a hot restart while the running epoch is still
   * initializing ("previous envoy process is still initializing").
   */
  const restartBlocker = async (): Promise<string | undefined> => {
    if (xds && !xds.getStatus().connected) return 'the control plane is unreachable, so a new Envoy could not get its configuration';
    const info = await admin.serverInfo({ timeoutMs: 1000 }).catch(() => undefined);
    if (info?.state !== 'LIVE') return `the running Envoy is not live yet (${info?.state ?? 'admin not answering'})`;
    return undefined;
  };
  /** A restart put off while a new epoch could not start, run once it can. */
  let deferred: { reason: string; timer: NodeJS.Timeout } | undefined;
  const deferRestart = (reason: string, why: string): void => {
    if (deferred) return;
    log.warn(`restart deferred (${why}): ${reason}`);
    let checking = false;
    const timer = setInterval(() => {
      if (checking || terminating || quitting) return;
      checking = true;
      void restartBlocker()
        .then((blocked) => {
          if (blocked || !deferred) return;
          clearInterval(timer);
          deferred = undefined;
          hotRestart(`deferred: ${reason}`).catch(() => undefined);
        })
        .finally(() => (checking = false));
    }, 1000);
    timer.unref();
    deferred = { reason, timer };
  };
  cleanups.push(async () => {
    if (deferred) clearInterval(deferred.timer);
  });
  let lastRestart: { reason: string; at: string; outcome: string } | undefined;

  // signals first, so a SIGTERM during start-up is never lost: SIGTERM/SIGINT terminate (a second one
  // forces Envoy down), SIGHUP hot-restarts
  let terminating = false;
  const onTerm = (sig: string) => () => {
    if (terminating) {
      log.warn(`received ${sig} again; stopping Envoy now`);
      quitting = true;
      void envoy.sup?.stop();
      return;
    }
    terminating = true;
    // termination wins over every restart path from this moment
    envoy.sup?.beginShutdown();
    stopRequested?.({ kind: 'signal', signal: sig });
  };
  const onTermSig = onTerm('SIGTERM');
  const onIntSig = onTerm('SIGINT');
  const onHup = () => {
    if (!hotRestartEnabled) {
      log.warn('received SIGHUP: hot restart is disabled (--disable-hot-restart); ignoring');
      return;
    }
    if (!envoy.sup || !started || terminating || quitting) {
      log.warn(`received SIGHUP ${terminating || quitting ? 'while shutting down' : 'before the agent finished starting'}; ignoring`);
      return;
    }
    hotRestart('SIGHUP').catch(() => undefined);
  };
  ctx.signals.on('SIGTERM', onTermSig);
  ctx.signals.on('SIGINT', onIntSig);
  ctx.signals.on('SIGHUP', onHup);
  cleanups.push(async () => {
    ctx.signals.off('SIGTERM', onTermSig);
    ctx.signals.off('SIGINT', onIntSig);
    ctx.signals.off('SIGHUP', onHup);
  });

  let status: StatusServer | undefined;

  const shutdown = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log.warn(`cleanup failed: ${errorMessage(e)}`));
  };

  let runtime: BootstrapRuntime;
  let envoyConfigArg: string;
  let overrideJson: string | undefined;
  /** The bootstrap the serving Envoy runs: what a crash restart uses, and what a failed hot restart restores. */
  let committed: { path: string; text: string } | undefined;
  let xdsListener: UdsListener | undefined;
  let sdsListener: UdsListener | undefined;
  let xdsSettings: XdsProxySettings;
  try {
    // 1. what Envoy needs before it starts, side by side: the XDS socket ./etc/istio/proxy/XDS, the SDS
    // socket ./var/run/secrets/workload-spiffe-uds/socket (unless another SDS server already answers there,
    // which pilot-agent checks first), the gRPC and Envoy bootstraps. The sockets listen from here on:
    // Envoy never finds them missing (it would back off before retrying); what it sends waits, unread,
    // until the xDS proxy and the SDS server take the connections over (startComponents).
    runtime = await probeBootstrapRuntime(cfg);
    xdsSettings = resolveXdsProxySettings({
      cwd: cfg.paths.cwd,
      env: cfg.processEnv,
      discoveryAddress: cfg.proxy.discoveryAddress,
      controlPlaneAuthPolicy: cfg.proxy.controlPlaneAuthPolicy,
      proxyMetadata: cfg.proxy.proxyMetadata,
      configPath: cfg.proxy.configPath,
    });
    const sdsPath = sdsSocketToBind(identitySettings, runtime.workloadSocketExists ?? false);
    const rt = runtime;
    const xdsPath = xdsSettings.udsPath;
    const steps = await Promise.allSettled([
      listenUds(xdsPath, cfg.paths.cwd, xdsSettings.socketMode ?? OWNER_ONLY_SOCKET_MODE).then(
        (l) => {
          xdsListener = l;
          cleanups.push(() => l.close());
        },
        (e: unknown) => {
          throw new AgentError('AGENT_ERR_XDS', `failed to listen on unix socket "${xdsPath}": ${errorMessage(e)}`, { cause: e });
        },
      ),
      sdsPath === undefined
        ? undefined
        : listenUds(sdsPath, cfg.paths.cwd).then(
            (l) => {
              sdsListener = l;
              cleanups.push(() => l.close());
            },
            (e: unknown) => {
              throw new AgentError('AGENT_ERR_IO', `SDS grpc server for workload proxies failed to set up UDS: ${sdsPath}: ${errorMessage(e)}`, { cause: e });
            },
          ),
      writeGrpcBootstrap(cfg, rt),
      dnsSettings.enabled
        ? import('../dns/listen.js')
            .then((m) => m.prepareDns(dnsSettings, log.scope('dns')))
            .then((p) => {
              dnsPrepared = p;
              cleanups.push(() => p.listeners.close());
            })
        : undefined,
      proxyless
        ? Promise.resolve((envoyConfigArg = ''))
        : (async () => {
            const gen = await generateBootstrap(cfg, log, rt);
            envoyConfigArg = gen.envoyConfigArg;
            if (gen.generated && gen.text !== undefined) {
              committed = { path: gen.path, text: gen.text };
              cleanups.push(() => rm(gen.path, { force: true }));
            }
            overrideJson = cfg.paths.bootstrapOverride ? await bootstrapOverrideJson(cfg.paths.bootstrapOverride, cfg.env.hostIp, log) : undefined;
          })(),
    ]);
    const failed = steps.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (e) {
    await shutdown();
    const msg = errorMessage(e);
    log.error(`failed to start the agent: ${msg}`);
    ctx.stderr.write(`Error: ${msg}\n`);
    return 255;
  }

  /**
   * 3. the components behind the sockets, and the status server: loaded and started while Envoy
   * initializes (in proxyless mode, at once). Returns an exit code when start-up must stop (having stopped
   * what had started, Envoy included).
   */
  const startComponents = async (): Promise<ExitCode | undefined> => {
    try {
      const [{ createAgentMetrics }, { createIdentity }, { createXdsProxy }, { createStatusServer }, dnsModule] = await Promise.all([
        import('../lib/metrics.js'),
        import('../identity/index.js'),
        import('../xds/proxy.js'),
        import('../status/server.js'),
        dnsSettings.enabled ? import('../dns/index.js') : undefined,
      ]);
      const noteRotation = (): void => {
        const serial = identity?.status()?.certificate?.serial;
        if (serial === undefined || serial === lastSerial) return;
        events.add(lastSerial === undefined ? 'certificate' : 'rotation', `workload certificate serial ${serial}`);
        lastSerial = serial;
      };
      const onReady = (): void => {
        const served = identity?.status()?.timings.firstServedMs;
        if (served !== undefined && identityCreatedMs !== undefined) phases.mark('certificate_served', identityCreatedMs + served);
        phases.mark('ready');
        const snap = phases.snapshot();
        for (const p of STARTUP_PHASES) {
          const v = snap[p];
          if (v !== undefined) metrics?.startupPhaseSeconds.set({ phase: p }, v / 1000);
        }
        noteRotation();
        events.add('ready', `ready: ${phases.text()}`);
        log.info(`start-up phases (since the process started): ${phases.text()}`);
        markReady();
      };
      const m = createAgentMetrics();
      metrics = m;
      if (dnsModule) {
        // serves on the sockets bound before Envoy was spawned (queries sent meanwhile were kept)
        const d = dnsModule.createDnsProxy({ settings: dnsSettings, log, registry: m.registry, ...(dnsPrepared ? { prepared: dnsPrepared } : {}) });
        await d.start();
        dns = d;
        cleanups.push(() => d.close());
      }
      if (statusEnv) {
        status = createStatusServer({
          parsedEnv: statusEnv,
          log,
          metrics: m,
          statusPort: cfg.proxy.statusPort,
          admin,
          envoyPrometheusPort: cfg.env.envoyPrometheusPort,
          mergeEnvoyStats: cfg.env.mergeEnvoyStats,
          metricsLocalhostOnly: cfg.env.metricsLocalhostAccessOnly,
          kubeAppProbers: cfg.env.kubeAppProbers || undefined,
          prometheusAnnotations: sidecar ? cfg.env.prometheusAnnotations || undefined : undefined,
          podIP: cfg.env.instanceIp || undefined,
          ipv6,
          legacyLocalhostProbeDestination: cfg.env.rewriteProbeLegacyLocalhostDestination,
          // the readiness blockers after Envoy's own; other components add theirs with addReadinessCheck
          readinessChecks: [
            { name: 'grpc-bootstrap', check: () => (existsSync(cfg.paths.grpcBootstrap) ? undefined : `gRPC bootstrap ${cfg.paths.grpcBootstrap} not written yet`) },
            // never ready without a running Envoy (e.g. during a crash-restart back-off)
            {
              name: 'envoy-process',
              check: () => {
                if (proxyless) return undefined;
                const sup = envoy.sup;
                const st = sup?.status();
                if (!sup || !st) return 'Envoy is not started';
                if (st.state !== 'running' && st.state !== 'draining') return `Envoy is not running (${st.state})`;
                return sup.currentAlive() ? undefined : 'Envoy is not running (its process has exited)';
              },
            },
            { name: 'workload-certificate', check: () => identity?.readinessBlocker() },
            // pilot-agent: not ready until the first DNS name table arrived
            { name: 'dns-table', check: () => dns?.notReady() },
          ],
          lastNacks: () => {
            const types = xds?.getStatus().types;
            return { cds: types?.[CLUSTER_TYPE]?.lastNack, lds: types?.[LISTENER_TYPE]?.lastNack };
          },
          onFirstReady: onReady,
          getTimeline: () => {
            noteRotation();
            return { startupPhasesMs: phases.snapshot(), ...events.list() };
          },
          onQuit: () => {
            quitting = true;
            envoy.sup?.beginShutdown();
            stopRequested?.({ kind: 'quit' });
          },
          onDrain: () => {
            log.info('Agent draining proxy');
            void admin.drainListeners({ inboundOnly: sidecar, graceful: true, skipExit: true }).catch((e: unknown) => log.warn(`Error in invoking drain listeners endpoint: ${errorMessage(e)}`));
            drained = true;
          },
          onRestart: () => hotRestart('POST /restart'),
          getEnvoyStatus: () => {
            const s = envoy.sup?.status();
            return s && { ...s, restarts: s.hotRestarts + s.crashRestarts, hotRestartEnabled, pendingRestarts, ...(deferred ? { deferredRestart: deferred.reason } : {}), ...(lastRestart ? { lastRestart } : {}) };
          },
          getXdsStatus: () => xds?.getStatus(),
          getIdentityStatus: () => identity?.status() ?? null,
          ...(dnsSettings.enabled ? { getDnsStatus: () => dns?.status() ?? null, getDnsTable: () => dns?.nameTable() } : {}),
          noEnvoy: proxyless,
          onServeError: (err) => {
            log.error(`status server failed: ${err.message}; terminating`);
            stopRequested?.({ kind: 'signal', signal: 'status server failure' });
          },
          processStartMs,
        });
      }
      identityCreatedMs = Date.now();
      const ident = createIdentity({
        settings: identitySettings,
        log,
        registry: m.registry,
        processCwd: cfg.paths.cwd,
        ...(o.earlyKey ? { earlyKey: o.earlyKey } : {}),
        // its directory scan waits for Envoy's start-up to be over, as the hot-restart watchers' (below)
        meshRootWatchAfter: firstReady(2000),
      });
      identity = ident;
      // pilot-agent keeps one Envoy stream: a new one closes the previous; during a hot-restart hand-over
      // (beginHandover) both epochs keep theirs
      const proxy = createXdsProxy({
        ...xdsSettings,
        log: log.scope('xdsproxy'),
        metrics: m,
        preconnect: !proxyless,
        onLargeResponse: () => releaseMemorySoon(),
        onEvent: (e) => {
          switch (e.kind) {
            case 'connected':
              phases.mark('xds_connected');
              events.add('xds', `stream ${e.stream} connected to ${xdsSettings.discoveryAddress}`);
              break;
            case 'ack':
              if (e.typeUrl === CLUSTER_TYPE) phases.mark('first_cds_ack');
              if (e.typeUrl === LISTENER_TYPE) phases.mark('first_lds_ack');
              break;
            case 'nack':
              events.add('nack', `Envoy rejected ${shortType(e.typeUrl)}: ${e.message}`);
              break;
            case 'response':
              events.add('push', `${shortType(e.typeUrl)} version ${e.version || '-'}, ${e.resources} resources`);
              break;
            case 'stuck':
              events.add('stuck-stream', `istiod did not answer ${shortType(e.typeUrl)} within ${e.waitedMs}ms; stream ${e.stream} re-opened`);
              break;
            default:
              break;
          }
        },
        ...(dns ? { agentTypes: [dns.agentType] } : {}),
        ...(xdsListener ? { listener: xdsListener } : {}),
      });
      xds = proxy;
      const st = status;
      const steps = await Promise.allSettled([
        st?.start().then(() => {
          phases.mark('status_server_up');
          cleanups.push(() => st.close());
        }),
        ident.start(runtime.workloadSocketExists ?? false, sdsListener).then(() => cleanups.push(() => ident.close())),
        proxy.start().then(() => cleanups.push(() => proxy.close())),
      ]);
      const failed = steps.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      // memory left by bursts of scrapes, probes, pushes or DNS queries is returned once it has grown
      const memory = releaseMemoryWhenGrown();
      cleanups.push(async () => memory.stop());
      // health reporting to istiod (WorkloadEntry health) when ProxyConfig has a readinessProbe
      if (healthProbe) {
        const { startWorkloadHealth } = await import('../status/workload-health.js');
        const checker = startWorkloadHealth({
          config: healthProbe,
          envoyReady: async () => {
            if (proxyless || !st) return undefined;
            const r = await st.readiness();
            return r.ready ? undefined : (r.reason ?? 'not ready');
          },
          report: (h) => {
            events.add('health', h.healthy ? 'reported healthy to istiod' : `reported unhealthy to istiod: ${h.message}`);
            proxy.reportHealth(h);
          },
          log,
        });
        cleanups.push(async () => checker.stop());
      }
      return undefined;
    } catch (e) {
      await shutdown();
      const msg = errorMessage(e);
      if (!(e instanceof ConfigError)) log.error(`failed to start the agent: ${msg}`);
      ctx.stderr.write(`Error: ${msg}\n`);
      return 255;
    }
  };

  if (proxyless) {
    // DISABLE_ENVOY (proxyless gRPC): no Envoy; the xDS proxy and the certificates in OUTPUT_CERTS serve
    // the application until the agent is told to stop
    log.info('DISABLE_ENVOY is set: running without Envoy (proxyless mode)');
    const failed = await startComponents();
    if (failed !== undefined) return failed;
    started = true;
    const why = await stopped;
    status?.setShuttingDown(why.kind === 'signal' ? `received signal: ${why.signal}` : 'received quitquitquit');
    await shutdown();
    log.info('Agent has successfully terminated');
    return 0;
  }

  if (terminating || quitting) {
    log.info('terminated before Envoy was started');
    await shutdown();
    return 0;
  }

  // 2. Envoy
  const buildArgs = (hot: HotRestartArgs): string[] =>
    buildEnvoyArgs(
      {
        configFile: envoyConfigArg,
        drainDurationMs: cfg.proxy.drainDurationMs,
        nodeIPs: cfg.nodeIPs,
        fileFlushIntervalMs: cfg.proxy.fileFlushIntervalMs,
        fileFlushMinSizeKb: cfg.proxy.fileFlushMinSizeKb,
        proxyLogLevel: cfg.proxyLogLevel,
        proxyComponentLogLevel: cfg.proxyComponentLogLevel,
        skipDeprecatedLogs: cfg.env.envoySkipDeprecatedLogs,
        enableCoreDump: cfg.env.envoyEnableCoreDump,
        configYaml: overrideJson,
        concurrency: cfg.proxy.concurrency,
      },
      hot,
    );
  const envoyEnv: Record<string, string | undefined> = { ...cfg.processEnv };
  if (cfg.env.compliancePolicy === 'fips-140-2') {
    envoyEnv.GRPC_SSL_CIPHER_SUITES = 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384';
  }
  const sup = createEnvoySupervisor({
    binaryPath: cfg.proxy.binaryPath,
    cwd: cfg.paths.cwd,
    env: envoyEnv,
    buildArgs,
    hotRestart: hotRestartEnabled,
    baseIdPath: join(cfg.paths.configDir, 'envoy-hot-restart-base-id'),
    parentShutdownS: () => parentShutdownSeconds(cfg.proxy.drainDurationMs),
    budget: { max: cfg.restartBudget, windowMs: cfg.restartBudgetWindowMs },
    log,
    onRestart: (epoch, reason) => {
      metrics?.envoyRestartsTotal.inc({ reason: reason === 'crash' ? 'crash' : 'hot' });
      events.add('restart', `Envoy ${reason === 'crash' ? 'crash restart' : `hot restart (${reason})`}: epoch ${epoch}`);
    },
    // the Envoy that earned readiness is gone: readiness must be earned again by the next one
    onCrash: (exit) => {
      events.add('crash', `Envoy exited: ${JSON.stringify(exit)}`);
      status?.resetReadiness();
    },
    // a fresh Envoy after a crash starts from the last good bootstrap, whatever else is on disk
    beforeCrashRestart: async () => {
      if (committed) await writeFileAtomic(committed.path, committed.text, 0o644);
    },
    awaitLive: async (epoch, signal) => {
      while (!signal.aborted) {
        const i = await admin.serverInfo({ timeoutMs: 1000 }).catch(() => undefined);
        if (i && i.restartEpoch === epoch && i.state === 'LIVE') return;
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  });
  envoy.sup = sup;
  cleanups.push(() => sup.stop());
  try {
    await sup.start();
    phases.mark('envoy_spawned');
  } catch (e) {
    await shutdown();
    const msg = errorMessage(e);
    log.error(msg);
    ctx.stderr.write(`Error: ${msg}\n`);
    return 255;
  }
  void sup.done.then((outcome) => stopRequested?.({ kind: 'envoy', outcome }));
  {
    const failed = await startComponents();
    if (failed !== undefined) return failed;
  }
  started = true;

  // hot restart: reload the configuration, write the new bootstrap, start the next epoch
  async function hotRestart(reason: string, changed?: readonly string[]): Promise<number> {
    pendingRestarts++;
    const run = restartChain.then(async () => {
      if (quitting || terminating) throw new AgentError('AGENT_ERR_USAGE', 'the agent is shutting down');
      if (!started) throw new AgentError('AGENT_ERR_USAGE', 'the agent is still starting');
      let next: AgentConfig;
      try {
        next = await o.reload();
      } catch (e) {
        metrics?.configRejectionsTotal.inc({ source: changed?.length ? 'file' : 'reload' });
        log.error(`rejected new configuration (${reason}); keeping the running configuration: ${errorMessage(e)}`);
        throw e;
      }
      const blocked = changesNeedingPodRestart(cfg, next);
      if (blocked.length) {
        metrics?.configRejectionsTotal.inc({ source: 'restart-required' });
        const msg = `rejected new configuration (${reason}): changing ${blocked.join(', ')} needs a pod restart; keeping the running configuration`;
        log.error(msg);
        throw new AgentError('AGENT_ERR_CONFIG', msg);
      }
      if (changed?.length && templatePathFor(next) === '' && templatePathFor(cfg) === '' && next.proxy.customConfigFile === '') {
        const before = buildBootstrap(cfg, runtime).text;
        const after = buildBootstrap(next, runtime).text;
        if (before === after) {
          log.info(`bootstrap inputs changed (${changed.join(', ')}) but the bootstrap is the same; Envoy keeps running`);
          cfg = next;
          return sup.status().epoch;
        }
      }
      const prepared = await prepareBootstrap(next, log, runtime);
      const nextOverride = next.paths.bootstrapOverride ? await bootstrapOverrideJson(next.paths.bootstrapOverride, next.env.hostIp, log) : undefined;
      if (prepared.built) {
        // Envoy's own judgement first, on a candidate file next to the real one
        const candidate = join(dirname(prepared.path), `.candidate-${prepared.built.fileName}`);
        await writeFileAtomic(candidate, prepared.built.text, 0o644);
        const problem = await validateBootstrap({ binaryPath: next.proxy.binaryPath, cwd: next.paths.cwd, env: envoyEnv, configPath: candidate, configYaml: nextOverride }).finally(() => rm(candidate, { force: true }));
        if (problem) {
          metrics?.configRejectionsTotal.inc({ source: 'envoy' });
          const msg = `rejected new configuration (${reason}): ${problem}; keeping the running configuration`;
          log.error(msg);
          throw new AgentError('AGENT_ERR_CONFIG', msg);
        }
      }
      // a new epoch (or a cold restart) must be able to start: while it could not, the change waits (the
      // running Envoy keeps serving) and is applied as soon as it can
      const notNow = await restartBlocker();
      if (notNow) {
        deferRestart(reason, notNow);
        throw new AgentError('AGENT_ERR_XDS', `not restarting Envoy now (${reason}): ${notNow}; the change is applied as soon as it can be`);
      }
      const before = { cfg, envoyConfigArg, overrideJson, committed };
      const gen = await commitBootstrap(next, prepared);
      cfg = next;
      envoyConfigArg = gen.envoyConfigArg;
      overrideJson = nextOverride;
      try {
        // the old epoch keeps its xDS stream until it exits (parent shutdown time) beside the new one's
        xds?.beginHandover(parentShutdownSeconds(cfg.proxy.drainDurationMs) * 1000 + 5000);
        const epoch = await sup.hotRestart(reason);
        if (prepared.built) committed = { path: gen.path, text: prepared.built.text };
        return epoch;
      } catch (e) {
        // the new epoch never served: the last good bootstrap goes back on disk (for crash restarts too)
        xds?.endHandover();
        ({ cfg, envoyConfigArg, overrideJson, committed } = before);
        if (committed) await writeFileAtomic(committed.path, committed.text, 0o644);
        metrics?.configRejectionsTotal.inc({ source: 'envoy' });
        const msg = `hot restart failed (${reason}): ${errorMessage(e)}; restored the last good bootstrap`;
        log.error(msg);
        throw new AgentError('AGENT_ERR_ENVOY_EXIT', msg, { cause: e });
      }
    });
    restartChain = run.catch(() => undefined);
    void run.then(
      (epoch) => (lastRestart = { reason, at: new Date().toISOString(), outcome: `epoch ${epoch}` }),
      (e: unknown) => {
        lastRestart = { reason, at: new Date().toISOString(), outcome: `failed: ${errorMessage(e)}` };
        events.add('rejection', `restart (${reason}) not done: ${errorMessage(e)}`);
      },
    ).finally(() => pendingRestarts--);
    return run;
  }

  // watch the bootstrap inputs (pod annotations and labels, mesh config) for hot restart. Their contents
  // are taken now; the directories are watched once Envoy is ready (at the latest 2 s from now), and a
  // change made before is seen then (src/lib/watch.ts startAfter).
  let watcher: FileWatch | undefined;
  if (hotRestartEnabled) {
    const inputs = [cfg.paths.podAnnotations, cfg.paths.podLabels, cfg.paths.meshConfig].filter((p) => existsSync(dirname(p)));
    const { watchFiles } = await import('../lib/watch.js');
    watcher = await watchFiles(
      inputs,
      (changed) => {
        log.info(`bootstrap inputs changed: ${changed.join(', ')}`);
        hotRestart(`changed ${changed.join(', ')}`, changed).catch(() => undefined);
      },
      { startAfter: firstReady(2000), onError: (e) => log.error(`watching the bootstrap inputs for hot restart: ${e.message}`) },
    );
    cleanups.push(() => watcher!.close());
  }

  const why = await stopped;
  if (why.kind === 'envoy') {
    await shutdown();
    if (why.outcome.kind === 'gave-up') {
      ctx.stderr.write(`Error: ${why.outcome.message}\n`);
      return 1;
    }
    return 0;
  }
  // termination: readiness fails at once, then drain (unless /quitquitquit), then stop Envoy
  status?.setShuttingDown(why.kind === 'quit' ? 'received quitquitquit' : `received signal: ${why.signal}`);
  if (why.kind === 'signal') {
    log.info(`received signal ${why.signal}, shutting down`);
    await drainForTermination({
      admin,
      envoyExited: () => sup.currentExited(),
      log,
      sidecar,
      terminationDrainMs: cfg.proxy.terminationDrainDurationMs,
      minDrainMs: cfg.env.minimumDrainDurationMs,
      exitOnZeroActiveConnections: cfg.env.exitOnZeroActiveConnections,
      alreadyDrained: drained || quitting,
    });
  } else {
    log.info('quitquitquit: stopping Envoy without draining');
  }
  await shutdown();
  log.info('Agent has successfully terminated');
  return 0;
}
