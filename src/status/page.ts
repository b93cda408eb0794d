// The status page, GET :15020/ (loopback only): the data of /debug/status as one small, self-contained
// HTML page (inline CSS, no script, no external asset), so that `kubectl port-forward` and a browser
// answer "why is this sidecar not ready / not updated" at a glance. Pure: data in, HTML out. Every value
// is escaped: much of it comes from peers (NACK messages, type URLs, versions).

/** The /debug/status document, as far as the page reads it (every part optional: sections may be null). */
export interface StatusDocument {
  readonly agent?: { readonly name?: string; readonly version?: string; readonly istioVersion?: string; readonly pid?: number; readonly uptimeSeconds?: number; readonly shuttingDown?: boolean };
  readonly envoy?: {
    readonly process?: { readonly epoch?: number; readonly pid?: number; readonly state?: string; readonly restarts?: number; readonly [k: string]: unknown } | null;
    readonly server?: { readonly state?: string; readonly version?: string; readonly error?: string; readonly [k: string]: unknown } | null;
  };
  readonly readiness?: { readonly ready?: boolean; readonly reason?: string; readonly blockers?: ReadonlyArray<{ readonly check: string; readonly reason: string }> };
  readonly xds?: {
    readonly upstreamAddress?: string;
    readonly connected?: boolean;
    readonly stream?: { readonly id?: number; readonly flavour?: string; readonly startedAt?: string; readonly upstreamState?: string };
    readonly types?: Readonly<Record<string, { readonly lastResponseVersion?: string; readonly lastAckedVersion?: string; readonly lastNack?: string; readonly lastResponseAt?: string; readonly lastResponseResources?: number; readonly requests?: number; readonly responses?: number }>>;
    readonly counts?: Readonly<Record<string, number>>;
    readonly lastError?: { readonly at?: string; readonly message?: string };
    readonly awaitingAnswer?: readonly string[];
  } | null;
  readonly identity?: {
    readonly spiffeId?: string;
    readonly state?: string;
    readonly certificate?: { readonly serial?: string; readonly notBefore?: string; readonly notAfter?: string; readonly nextRotation?: string };
    readonly lastError?: { readonly message?: string };
  } | null;
  /** Present only when DNS capture is on. */
  readonly dns?: {
    readonly tableReceived?: boolean;
    readonly names?: number;
    readonly lastUpdate?: string;
    readonly updates?: number;
    readonly rejectedUpdates?: number;
    readonly listening?: readonly string[];
    readonly upstreams?: readonly string[];
  } | null;
  readonly timeline?: {
    readonly startupPhasesMs?: Readonly<Record<string, number>>;
    readonly events?: ReadonlyArray<{ readonly at: string; readonly kind: string; readonly message: string }>;
    readonly dropped?: number;
  } | null;
}

export function escapeHtml(v: unknown): string {
  const s = v === undefined || v === null ? '' : String(v);
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}.ok{color:#0a7a2f;font-weight:600}.bad{color:#b00020;font-weight:600}.muted{color:#777}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff}.badge.ok{background:#0a7a2f}.badge.bad{background:#b00020}
code{font-family:ui-monospace,monospace;font-size:.95em}ul{margin:.3em 0}`;

const short = (typeUrl: string): string => {
  const last = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  const names: Record<string, string> = {
    'envoy.config.cluster.v3.Cluster': 'CDS',
    'envoy.config.listener.v3.Listener': 'LDS',
    'envoy.config.route.v3.RouteConfiguration': 'RDS',
    'envoy.config.endpoint.v3.ClusterLoadAssignment': 'EDS',
    'envoy.extensions.transport_sockets.tls.v3.Secret': 'SDS',
    'istio.networking.nds.v1.NameTable': 'NDS',
  };
  return names[last] ?? last;
};

function rows(pairs: ReadonlyArray<readonly [string, unknown]>): string {
  return pairs.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('');
}

/** Renders the page; `now` is shown as the time of the snapshot. */
export function renderStatusPage(d: StatusDocument, now: Date = new Date()): string {
  const a = d.agent ?? {};
  const ready = d.readiness?.ready === true;
  const blockers = d.readiness?.blockers ?? (d.readiness?.reason ? [{ check: 'envoy', reason: d.readiness.reason }] : []);
  const proc = d.envoy?.process ?? null;
  const server = d.envoy?.server ?? null;
  const xds = d.xds ?? null;
  const id = d.identity ?? null;
  const tl = d.timeline ?? null;

  const readiness = ready
    ? '<p><span class="badge ok">READY</span></p>'
    : `<p><span class="badge bad">NOT READY</span></p><ul id="blockers">${blockers.map((b) => `<li><b>${escapeHtml(b.check)}</b>: ${escapeHtml(b.reason)}</li>`).join('')}</ul>`;

  const types = Object.entries(xds?.types ?? {}).sort(([x], [y]) => short(x).localeCompare(short(y)));
  const xdsTable = types.length
    ? `<table id="xds-types"><tr><th>type</th><th>version (last response)</th><th>last ACKed</th><th>last NACK</th><th>resources</th><th>last update</th></tr>${types
        .map(
          ([t, v]) =>
            `<tr><td title="${escapeHtml(t)}">${escapeHtml(short(t))}</td><td><code>${escapeHtml(v.lastResponseVersion || '-')}</code></td><td><code>${escapeHtml(v.lastAckedVersion || '-')}</code></td><td class="${v.lastNack ? 'bad' : 'muted'}">${escapeHtml(v.lastNack ?? 'none')}</td><td>${escapeHtml(v.lastResponseResources)}</td><td>${escapeHtml(v.lastResponseAt)}</td></tr>`,
        )
        .join('')}</table>`
    : '<p class="muted">no xDS type seen yet</p>';

  const identity = id
    ? `<table id="identity">${rows([
        ['SPIFFE ID', id.spiffeId],
        ['state', id.state],
        ['serial', id.certificate?.serial ?? 'none yet'],
        ['not after', id.certificate?.notAfter],
        ['next rotation', id.certificate?.nextRotation],
        ['last CA error', id.lastError?.message ?? 'none'],
      ])}</table>`
    : '<p class="muted">no workload identity</p>';

  const dns = d.dns
    ? `<h2>DNS proxy</h2><table id="dns">${rows([
        ['name table', d.dns.tableReceived ? `${d.dns.names ?? 0} names` : 'not received yet'],
        ['last update', d.dns.lastUpdate ?? 'none'],
        ['updates (rejected)', `${d.dns.updates ?? 0} (${d.dns.rejectedUpdates ?? 0})`],
        ['listening', (d.dns.listening ?? []).join(', ')],
        ['upstreams', (d.dns.upstreams ?? []).join(', ') || 'none'],
      ])}</table>`
    : '';

  const phases = Object.entries(tl?.startupPhasesMs ?? {});
  const events = [...(tl?.events ?? [])].reverse();

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(a.name ?? 'agent')} status</title><style>${CSS}</style></head>
<body>
<h1>${escapeHtml(a.name ?? 'agent')} ${escapeHtml(a.version)} <span class="muted">(Istio ${escapeHtml(a.istioVersion)})</span></h1>
<p class="muted">snapshot ${escapeHtml(now.toISOString())} · JSON: <code>/debug/status</code>${a.shuttingDown ? ' · <span class="bad">shutting down</span>' : ''}</p>
<h2>Readiness</h2>
${readiness}
<h2>Agent and Envoy</h2>
<table id="processes">${rows([
    ['agent pid', a.pid],
    ['agent uptime (s)', a.uptimeSeconds],
    ['Envoy version', server?.version ?? server?.error ?? 'unknown'],
    ['Envoy state', server?.state ?? proc?.state ?? 'unknown'],
    ['Envoy epoch', proc?.epoch],
    ['Envoy pid', proc?.pid],
    ['Envoy restarts', proc?.restarts],
  ])}</table>
<h2>xDS</h2>
<p>upstream <code>${escapeHtml(xds?.upstreamAddress ?? 'none')}</code>: <span class="${xds?.connected ? 'ok' : 'bad'}">${xds?.connected ? 'connected' : 'not connected'}</span>${
    xds?.stream ? ` · stream ${escapeHtml(xds.stream.id)} (${escapeHtml(xds.stream.flavour)}) since ${escapeHtml(xds.stream.startedAt)}` : ''
  }${xds?.awaitingAnswer?.length ? ` · waiting for istiod to answer ${escapeHtml(xds.awaitingAnswer.map(short).join(', '))}` : ''}</p>
${xdsTable}
${xds?.lastError ? `<p>last error (${escapeHtml(xds.lastError.at)}): <span class="bad">${escapeHtml(xds.lastError.message)}</span></p>` : ''}
<h2>Workload identity</h2>
${identity}
${dns}
<h2>Start-up</h2>
${phases.length ? `<table id="startup">${rows(phases.map(([k, v]) => [k, `${Math.round(v)} ms`] as const))}</table>` : '<p class="muted">not ready yet</p>'}
<h2>Recent events</h2>
${
  events.length
    ? `<table id="events"><tr><th>time</th><th>kind</th><th>event</th></tr>${events
        .map((e) => `<tr><td>${escapeHtml(e.at)}</td><td>${escapeHtml(e.kind)}</td><td>${escapeHtml(e.message)}</td></tr>`)
        .join('')}</table>${tl?.dropped ? `<p class="muted">${escapeHtml(tl.dropped)} older events dropped</p>` : ''}`
    : '<p class="muted">none</p>'
}
</body></html>
`;
}
