// ProxyConfig.readinessProbe as the workload health checker uses it (pure, no I/O: read at start-up, before
// the checker in workload-health.ts is loaded).

export interface HealthProbeConfig {
  readonly initialDelayMs: number;
  readonly timeoutMs: number;
  readonly periodMs: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
  readonly method:
    | { readonly kind: 'http'; readonly scheme: 'http' | 'https'; readonly host: string; readonly port: number; readonly path: string; readonly headers: ReadonlyArray<readonly [string, string]> }
    | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
    | { readonly kind: 'exec'; readonly command: readonly string[] };
}

const num = (v: unknown, dflt: number): number => (typeof v === 'number' && Number.isFinite(v) && v !== 0 ? v : dflt);

/** ProxyConfig.readinessProbe (canonical JSON) with pilot-agent's defaults; undefined when absent; throws naming the problem. */
export function parseHealthProbe(rp: Record<string, unknown> | undefined): HealthProbeConfig | undefined {
  if (!rp || Object.keys(rp).length === 0) return undefined;
  const base = {
    initialDelayMs: (typeof rp.initialDelaySeconds === 'number' ? rp.initialDelaySeconds : 0) * 1000,
    timeoutMs: num(rp.timeoutSeconds, 1) * 1000,
    periodMs: num(rp.periodSeconds, 10) * 1000,
    successThreshold: num(rp.successThreshold, 1),
    failureThreshold: num(rp.failureThreshold, 1),
  };
  const http = rp.httpGet as Record<string, unknown> | undefined;
  const tcp = rp.tcpSocket as Record<string, unknown> | undefined;
  const exec = rp.exec as Record<string, unknown> | undefined;
  if (http) {
    const scheme = String(http.scheme || 'http').toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') throw new Error(`readinessProbe.httpGet.scheme: "${scheme}" is not HTTP or HTTPS`);
    const port = Number(http.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`readinessProbe.httpGet.port: ${JSON.stringify(http.port)} is not a port`);
    const headers = Array.isArray(http.httpHeaders) ? (http.httpHeaders as Array<{ name?: string; value?: string }>).map((h) => [String(h.name ?? ''), String(h.value ?? '')] as const) : [];
    return { ...base, method: { kind: 'http', scheme, host: String(http.host || 'localhost'), port, path: String(http.path || '/'), headers } };
  }
  if (tcp) {
    const port = Number(tcp.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`readinessProbe.tcpSocket.port: ${JSON.stringify(tcp.port)} is not a port`);
    return { ...base, method: { kind: 'tcp', host: String(tcp.host || 'localhost'), port } };
  }
  if (exec) {
    const command = Array.isArray(exec.command) ? exec.command.map(String) : [];
    if (!command.length) throw new Error('readinessProbe.exec.command: empty');
    return { ...base, method: { kind: 'exec', command } };
  }
  if (rp.grpc) throw new Error('readinessProbe.grpc: not supported for health reporting (pilot-agent has no gRPC health prober either)');
  return undefined;
}

