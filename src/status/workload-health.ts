// Workload health for istiod (WorkloadEntry health, VMs): when ProxyConfig has a readinessProbe, the agent
// probes the application (httpGet, tcpSocket or exec) together with Envoy's readiness, and reports changes
// to istiod on the xDS stream. As pilot-agent: defaults period 10 s, timeout 1 s, thresholds 1, initial
// delay 0; HTTP path `/`, scheme http, host `localhost`; nothing is sent until the first healthy verdict
// (success threshold reached), then only on a change (failure threshold reached: unhealthy with the error).
// A gRPC readinessProbe (pilot-agent has no prober for it) is refused at start-up, naming it.
import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { Logger } from '../lib/log.js';

import type { HealthProbeConfig } from './health-probe-config.js';

export type { HealthProbeConfig } from './health-probe-config.js';
export { parseHealthProbe } from './health-probe-config.js';

/** One probe of the application: resolves to undefined when healthy, else the error. Never throws. */
export function probeOnce(cfg: HealthProbeConfig): Promise<string | undefined> {
  const m = cfg.method;
  if (m.kind === 'tcp') {
    return new Promise((resolve) => {
      const s = connect({ host: m.host, port: m.port, timeout: cfg.timeoutMs });
      s.once('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.once('timeout', () => {
        s.destroy();
        resolve(`dial tcp ${m.host}:${m.port}: i/o timeout`);
      });
      s.once('error', (e) => resolve(`dial tcp ${m.host}:${m.port}: ${e.message}`));
    });
  }
  if (m.kind === 'exec') {
    return new Promise((resolve) => {
      execFile(m.command[0]!, m.command.slice(1), { timeout: cfg.timeoutMs, maxBuffer: 10 * 1024 }, (err) => resolve(err ? `exec ${m.command.join(' ')}: ${err.message}` : undefined));
    });
  }
  return new Promise((resolve) => {
    const req = (m.scheme === 'https' ? httpsRequest : httpRequest)(
      { host: m.host, port: m.port, path: m.path, method: 'GET', timeout: cfg.timeoutMs, headers: Object.fromEntries(m.headers), ...(m.scheme === 'https' ? { rejectUnauthorized: false } : {}) },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        // kubelet's rule, as pilot-agent's HTTP prober: 2xx and 3xx are healthy
        resolve(code >= 200 && code < 400 ? undefined : `status code was not from [200,400), bad code ${code}`);
      },
    );
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', (e) => resolve(`HTTP probe ${m.scheme}://${m.host}:${m.port}${m.path}: ${e.message}`));
    req.end();
  });
}

/** The threshold logic (pure): feed results, get an event on a state change to report. */
export class HealthVerdict {
  private successes = 0;
  private failures = 0;
  private healthy = false;
  constructor(private readonly cfg: Pick<HealthProbeConfig, 'successThreshold' | 'failureThreshold'>) {}

  /** Returns the report to send, if this result changes the reported state. */
  next(error: string | undefined): { healthy: true } | { healthy: false; message: string } | undefined {
    if (error === undefined) {
      this.successes++;
      this.failures = 0;
      if (this.successes === this.cfg.successThreshold && !this.healthy) {
        this.successes = 0;
        this.healthy = true;
        return { healthy: true };
      }
      return undefined;
    }
    this.failures++;
    this.successes = 0;
    if (this.failures === this.cfg.failureThreshold && this.healthy) {
      this.failures = 0;
      this.healthy = false;
      return { healthy: false, message: error };
    }
    return undefined;
  }
}

/**
 * Runs the checker until stopped: Envoy's readiness first, then the application probe, every period;
 * reports changes through `report`.
 */
export function startWorkloadHealth(o: {
  readonly config: HealthProbeConfig;
  readonly envoyReady: () => Promise<string | undefined>;
  readonly report: (h: { healthy: true } | { healthy: false; message: string }) => void;
  readonly log: Logger;
}): { stop(): void } {
  const log = o.log.scope('healthcheck');
  const verdict = new HealthVerdict(o.config);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  const check = async (): Promise<void> => {
    if (running || stopped) return;
    running = true;
    try {
      const envoy = await o.envoyReady().catch((e: unknown) => (e instanceof Error ? e.message : String(e)));
      const err = envoy !== undefined ? `envoy not ready: ${envoy}` : await probeOnce(o.config);
      if (stopped) return;
      const ev = verdict.next(err);
      if (ev) {
        if (ev.healthy) log.info('success threshold hit, marking as healthy');
        else log.info(`failure threshold hit, marking as unhealthy: ${ev.message}`);
        o.report(ev);
      } else if (err !== undefined) log.debug(`probe completed with unhealthy status: ${err}`);
    } finally {
      running = false;
    }
  };
  log.info(`starting health check for ${o.config.method.kind} in ${o.config.initialDelayMs}ms`);
  const start = setTimeout(() => {
    void check();
    timer = setInterval(() => void check(), o.config.periodMs);
    timer.unref();
  }, o.config.initialDelayMs);
  start.unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(start);
      if (timer) clearInterval(timer);
    },
  };
}
