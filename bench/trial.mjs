// One benchmark trial for one agent, run INSIDE a fresh network namespace by run.mjs:
//   ip netns exec <ns> node bench/trial.mjs '<json config>'
// It starts, in this process, the in-repo control plane (TLS on localhost:15012 with the Istio-compatible
// CA and a required bearer token, as istiod) and an HTTP upstream, lays out a pod working directory as the
// istio-proxy container has it, then spawns the agent (the Go pilot-agent or our `agent`) with the
// injector's args and env and the same real Envoy, and measures. Progress goes to stderr; the result is
// one JSON line on stdout.
//
// kinds:
//   startup  spawn -> first 200 on :15021/healthz/ready (through Envoy) and :15020/healthz/ready, `reps` times
//   steady   one agent: idle CPU/RSS, sequential and burst CDS churn (push -> Envoy ACK), large CDS responses
//   cert     one agent: first workload certificate over SDS and its rotations (short SECRET_TTL), with the
//            in-repo CA (cfg.ca 'in-repo', default) or the real istiod as the CA (cfg.ca 'istiod')
//   istiod   against the real istiod: spawn -> ready, `reps` times, then ServiceEntry pushes
//   dns      against the real istiod, DNS capture on: UDP queries/s and latency on :15053 for a name of the
//            table and for a name forwarded to a local upstream (run.mjs gives the namespace a resolv.conf)
//   soak     one agent: after a warm-up, `scrapes` scrapes of :15020/stats/prometheus (plain, gzip, gzip cut
//            mid-body), `probes` app probe calls (HTTP and gRPC health) and `pushes` route pushes, each ACKed;
//            agent RSS after each phase and after an idle, the peak, and whether every request succeeded
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { agentPids, clockTicks, envoyPids, httpGet, pollUntil, pool, readRssSplitKb, scrape, sleep, startSampler, summarize, usage } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const B = (p) => join(ROOT, 'build', p);
const { startControlPlane } = await import(B('test/controlplane/server.js'));
const { CLUSTER_TYPE, ROUTE_TYPE, httpConfigMessages } = await import(B('test/controlplane/resources.js'));
const { startHttpUpstream } = await import(B('test/controlplane/http-upstream.js'));
const { createPod } = await import(B('test/helpers/pod.js'));
const { envoyBin, pilotAgentBin, istioBootstrapTemplate, AGENT_BIN } = await import(B('test/helpers/peers.js'));
const { loadProtos, messageCodec } = await import(B('src/lib/proto.js'));

const cfg = JSON.parse(process.argv[2] ?? '{}');
const AGENT = cfg.agent; // 'go' | 'ours'
const TOKEN = 'bench-token-not-a-secret';
const XDS_PORT = 15012;
const LISTENER_PORT = 18080;
const log = (msg) => process.stderr.write(`[${AGENT}/${cfg.kind}] ${msg}\n`);

if (AGENT !== 'go' && AGENT !== 'ours') throw new Error(`trial: agent must be go or ours, got ${AGENT}`);

// What to undo if run.mjs stops this trial early (SIGTERM/SIGINT): agents and istiod run in their own
// process groups, so they would not get the signal otherwise.
const undo = new Set();
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.once(sig, () => {
    const all = [...undo].map((f) => Promise.resolve().then(f).catch(() => {}));
    void Promise.race([Promise.all(all), sleep(10_000)]).then(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// resources

/** Minimal protobuf writer for the two TLS messages not in protos/ (UpstreamTlsContext, CommonTlsContext). */
function varint(n) {
  const b = [];
  while (n > 127) {
    b.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  b.push(n);
  return Buffer.from(b);
}
const lenField = (no, buf) => Buffer.concat([varint((no << 3) | 2), varint(buf.length), buf]);

function makeResources(cp) {
  const sdsCodec = messageCodec(loadProtos(['envoy/extensions/transport_sockets/tls/v3/secret.proto']), 'envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig');
  const encode = (msgs) => cp.protos.encodeResources(CLUSTER_TYPE, msgs);
  const staticCluster = (name, extra = {}) => ({
    name,
    type: 'STATIC',
    connect_timeout: { seconds: 1 },
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9 } } } }] }] },
    ...extra,
  });
  const meta = (k, v) => ({ metadata: { filter_metadata: { bench: { fields: { [k]: { stringValue: v } } } } } });
  // Istio-style SDS references: the workload identity "default" and the trust bundle "ROOTCA",
  // fetched from the agent over the bootstrap's sds-grpc cluster.
  const sdsRef = (name) =>
    sdsCodec.encode({
      name,
      sds_config: {
        api_config_source: { api_type: 'GRPC', set_node_on_first_message_only: true, transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }] },
        resource_api_version: 'V3',
      },
    });
  const common = Buffer.concat([lenField(6, sdsRef('default')), lenField(7, sdsRef('ROOTCA'))]);
  const upstreamTls = Buffer.concat([lenField(1, common), lenField(2, Buffer.from('outbound_.8443_._.mtls.bench.test'))]);
  return {
    /** The served listener/route's cluster + `base` plain clusters (what every phase starts from). */
    base: (httpClusters, n) => [...httpClusters, ...encode(Array.from({ length: n }, (_, i) => staticCluster(`bench-base-${i}`)))],
    /** One cluster whose content changes with `i`. */
    churn: (i) => encode([staticCluster('bench-churn', meta('version', `v${i}`))])[0],
    /** n clusters of about `bytes` each; `tag` makes every resource new. */
    large: (n, bytes, tag) => {
      const pad = 'x'.repeat(bytes);
      return encode(Array.from({ length: n }, (_, i) => staticCluster(`bench-large-${i}`, meta('blob', `${tag}-${i}-${pad}`))));
    },
    /** A cluster that needs the workload certificate (as Istio's mTLS clusters do). */
    mtls: () =>
      encode([
        staticCluster('outbound|8443||mtls.bench.test', {
          transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: { type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', value: upstreamTls } },
        }),
      ])[0],
  };
}

// ---------------------------------------------------------------------------------------------
// control plane bookkeeping: when did Envoy (through the agent) ACK a CDS (or `typeUrl`) nonce

function trackAcks(cp, typeUrl = CLUSTER_TYPE) {
  const seen = new Map(); // nonce -> { t, kind, error }
  const waiters = new Map();
  let idx = 0;
  cp.on('event', () => {
    const now = performance.now();
    for (; idx < cp.requests.length; idx++) {
      const r = cp.requests[idx];
      if (r.typeUrl !== typeUrl || !r.nonce) continue;
      const rec = { t: now, kind: r.kind, error: r.error };
      seen.set(r.nonce, rec);
      waiters.get(r.nonce)?.(rec);
    }
  });
  return {
    /** The nonce of the last CDS (`typeUrl`) response sent. */
    lastNonce() {
      for (let i = cp.responses.length - 1; i >= 0; i--) if (cp.responses[i].typeUrl === typeUrl) return cp.responses[i].nonce;
      return undefined;
    },
    wait(nonce, timeoutMs) {
      const got = seen.get(nonce);
      if (got) return Promise.resolve(got);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.delete(nonce);
          reject(new Error(`no ACK/NACK for ${typeUrl.split('.').pop()} nonce ${nonce} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.set(nonce, (rec) => {
          clearTimeout(t);
          waiters.delete(nonce);
          resolve(rec);
        });
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the agent

async function makePod(cp, who = { rootCert: cp?.ca.rootCertPem, token: TOKEN }, extraEnv = {}) {
  const pod = await createPod({
    rootCert: who.rootCert,
    token: who.token,
    proxyConfig: { binaryPath: envoyBin(), discoveryAddress: `localhost:${XDS_PORT}`, terminationDrainDuration: '1s' },
    // BENCH_AGENT_ARGS: extra arguments for the agent (e.g. a log level, to see where start-up goes)
    extraArgs: (process.env.BENCH_AGENT_ARGS ?? '').split(' ').filter(Boolean),
  });
  // The Istio bootstrap template where pilot-agent looks for it (ours may use its own copy).
  await mkdir(join(pod.cwd, 'var/lib/istio/envoy'), { recursive: true });
  await copyFile(istioBootstrapTemplate(), join(pod.cwd, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json'));
  const env = { ...pod.env };
  // CA = discoveryAddress (istiod), as in the default injected pod with a localhost address
  delete env.CA_ADDR;
  // BENCH_AGENT_ENV: extra environment for the agent, as JSON (e.g. {"GRPC_TRACE":"subchannel"})
  return { pod, env: { ...env, ...extraEnv, ...JSON.parse(process.env.BENCH_AGENT_ENV || '{}') } };
}

// The allocator setting the image ships (Dockerfile `ENV MALLOC_*`): our agent is measured as it runs there.
const IMAGE_ENV = Object.fromEntries([...readFileSync(join(ROOT, 'Dockerfile'), 'utf8').matchAll(/^ENV (MALLOC_[A-Z_]+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));

function spawnAgent(pod, env) {
  // our agent is the single executable the image runs (build/agent, or BENCH_AGENT_BIN: another build of
  // it, to compare two); BENCH_NODE_ARGS: Node.js options for it, passed in NODE_OPTIONS (e.g. --cpu-prof,
  // for scripts/profile-startup.sh)
  const nodeOptions = process.env.BENCH_NODE_ARGS ? { NODE_OPTIONS: process.env.BENCH_NODE_ARGS } : {};
  const [cmd, args] = AGENT === 'go' ? [pilotAgentBin(), pod.args] : [process.env.BENCH_AGENT_BIN || AGENT_BIN, pod.args];
  const t0 = performance.now();
  const child = spawn(cmd, args, { cwd: pod.cwd, env: AGENT === 'go' ? env : { ...IMAGE_ENV, ...env, ...nodeOptions }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d) => {
    out += d;
    if (out.length > 400_000) out = out.slice(-200_000);
    if (process.env.BENCH_VERBOSE) process.stderr.write(d);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  let alive = true;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => ((alive = false), resolve({ code, signal }))));
  const group = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {
      /* gone */
    }
  };
  const kill = () => group('SIGKILL');
  undo.add(kill);
  void exited.then(() => undo.delete(kill));
  return {
    t0,
    pid: child.pid,
    alive: () => alive,
    output: () => out,
    exited,
    /**
     * SIGTERM to the agent (as the kubelet does), SIGKILL to its group after graceMs; then reap leftovers,
     * and remove the hot-restart shared memory of this agent's Envoys if they left it behind.
     */
    async stop(graceMs = 15_000) {
      const shm = new Set();
      for (const e of envoyPids(child.pid)) {
        try {
          for (const m of readFileSync(`/proc/${e}/maps`, 'utf8').matchAll(/\/dev\/shm\/(envoy_shared_memory_\d+)/g)) shm.add(m[1]);
        } catch {
          /* gone */
        }
      }
      if (alive) {
        child.kill('SIGTERM');
        const t = setTimeout(() => group('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      group('SIGKILL');
      if (shm.size) await sleep(200);
      for (const f of shm) await rm(join('/dev/shm', f), { force: true });
    },
  };
}

/** Waits for 200 from both readiness endpoints; times are ms since spawn. */
async function waitReady(agent, timeoutMs = 90_000) {
  const res = { ready15021: NaN, ready15020: NaN };
  const watch = async (port, key) => {
    const t = await pollUntil(async () => {
      if (!agent.alive()) throw new Error(`agent exited before ready; output:\n${agent.output().slice(-4000)}`);
      const r = await httpGet(port, '/healthz/ready', 1000);
      return r.status === 200 ? performance.now() : undefined;
    }, timeoutMs, 10);
    if (t === undefined) throw new Error(`:${port}/healthz/ready not 200 within ${timeoutMs} ms; output:\n${agent.output().slice(-4000)}`);
    res[key] = t - agent.t0;
  };
  await Promise.all([watch(15021, 'ready15021'), watch(15020, 'ready15020')]);
  return res;
}

async function envoyStat(name) {
  const r = await httpGet(15000, `/stats?filter=^${name.replace(/\./g, '\\.')}$`);
  const m = new RegExp(`^${name.replace(/\./g, '\\.')}: (\\d+)`, 'm').exec(r.body);
  return m ? Number(m[1]) : NaN;
}

async function envoyVersion() {
  const r = await httpGet(15000, '/server_info');
  try {
    return JSON.parse(r.body).version;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// phases

async function startupTrial(cp, res) {
  const times = { ready15021: [], ready15020: [] };
  const warm = cfg.warmup ?? 1;
  for (let i = 0; i < warm + cfg.reps; i++) {
    const { pod, env } = await makePod(cp);
    const agent = spawnAgent(pod, env);
    try {
      const r = await waitReady(agent);
      log(`start ${i < warm ? 'warm-up' : i - warm + 1}: 15021 ${r.ready15021.toFixed(0)} ms, 15020 ${r.ready15020.toFixed(0)} ms`);
      // BENCH_HEAP_SNAPSHOT (scripts/profile-startup.sh): the agent, run with --heapsnapshot-signal=SIGUSR2
      // and --diagnostic-dir, writes a heap snapshot of itself once ready
      if (AGENT === 'ours' && process.env.BENCH_HEAP_SNAPSHOT && i >= warm) await heapSnapshot(agent);
      if (i >= warm) {
        times.ready15021.push(r.ready15021);
        times.ready15020.push(r.ready15020);
      }
    } finally {
      await agent.stop();
      await pod.cleanup();
    }
  }
  return { ...res, startup: times };
}

async function heapSnapshot(agent) {
  const dir = process.env.BENCH_HEAP_SNAPSHOT;
  const before = new Set(readdirSync(dir));
  process.kill(agent.pid, 'SIGUSR2');
  const done = await pollUntil(async () => {
    const f = readdirSync(dir).find((n) => !before.has(n) && n.endsWith('.heapsnapshot'));
    // written when its size stops changing
    if (!f) return undefined;
    const a = statSync(join(dir, f)).size;
    await sleep(200);
    return a > 0 && statSync(join(dir, f)).size === a ? f : undefined;
  }, 30_000, 100);
  log(done ? `heap snapshot ${join(dir, done)}` : 'no heap snapshot within 30 s');
}

async function steadyTrial(cp, acks, resources, httpClusters, res) {
  const { pod, env } = await makePod(cp);
  const agent = spawnAgent(pod, env);
  try {
    res.ready = await waitReady(agent);
    res.envoyVersion = await envoyVersion();
    res.agentPids = agentPids(agent.pid).length;
    res.envoyPids = envoyPids(agent.pid).length;

    // idle
    await sleep(cfg.settleMs ?? 3000);
    let s = startSampler(agent.pid, 250);
    await sleep(cfg.idleMs ?? 10_000);
    res.idle = s.stop();
    res.idleSplit = agentPids(agent.pid).map(readRssSplitKb).reduce((a, b) => ({ anonKb: a.anonKb + b.anonKb, fileKb: a.fileKb + b.fileKb }), { anonKb: 0, fileKb: 0 });
    log(`idle: cpu ${res.idle.cpuPct.toFixed(2)} %, rss ${res.idle.rssMedianMiB.toFixed(1)} MiB (anonymous ${(res.idleSplit.anonKb / 1024).toFixed(1)}, file-backed ${(res.idleSplit.fileKb / 1024).toFixed(1)})`);

    const base = resources.base(httpClusters, cfg.baseClusters ?? 50);
    const push = (extra) => {
      const t = performance.now();
      cp.setResources(CLUSTER_TYPE, [...base, ...extra]);
      return { t, nonce: acks.lastNonce() };
    };
    const cdsBefore = await envoyStat('cluster_manager.cds.update_success');

    // sustained churn: one changed cluster per push at a fixed rate; latency = push -> Envoy's ACK
    // arriving back at the control plane through the agent (Envoy ACKs after applying the update)
    const rate = cfg.churnRate ?? 20;
    const churnMs = cfg.churnMs ?? 10_000;
    const pending = [];
    s = startSampler(agent.pid, 250);
    const tStart = performance.now();
    for (let i = 0; performance.now() - tStart < churnMs; i++) {
      const p = push([resources.churn(i)]);
      pending.push(acks.wait(p.nonce, 30_000).then((a) => {
        if (a.kind === 'nack') throw new Error(`Envoy NACKed churn update ${i}: ${a.error}`);
        return a.t - p.t;
      }));
      const next = tStart + ((i + 1) * 1000) / rate;
      await sleep(Math.max(0, next - performance.now()));
    }
    const seq = await Promise.all(pending);
    res.churnSeq = { rate, latencyMs: seq, usage: s.stop() };
    log(`sustained churn (${seq.length} updates at ${rate}/s): median ${summarize(seq).median.toFixed(2)} ms, cpu ${res.churnSeq.usage.cpuPct.toFixed(1)} %`);

    // burst: N pushes back to back; time until the last one is ACKed
    await sleep(500);
    const nBurst = cfg.churnBurst ?? 200;
    const bursts = [];
    s = startSampler(agent.pid, 100);
    for (let b = 0; b < (cfg.burstReps ?? 3); b++) {
      let first;
      let last;
      for (let i = 0; i < nBurst; i++) {
        last = push([resources.churn(100_000 * (b + 1) + i)]);
        first ??= last;
      }
      const a = await acks.wait(last.nonce, 60_000);
      if (a.kind === 'nack') throw new Error(`Envoy NACKed burst update: ${a.error}`);
      bursts.push({ ms: a.t - first.t, updates: nBurst });
      await sleep(300);
    }
    res.churnBurst = { bursts, usage: s.stop() };
    const cdsAfter = await envoyStat('cluster_manager.cds.update_success');
    res.cdsUpdates = { sent: seq.length + bursts.reduce((n, b) => n + b.updates, 0), applied: cdsAfter - cdsBefore, rejected: await envoyStat('cluster_manager.cds.update_rejected') };
    log(`burst: ${bursts.map((b) => b.ms.toFixed(0)).join(', ')} ms for ${nBurst} updates; Envoy applied ${res.cdsUpdates.applied}/${res.cdsUpdates.sent}`);

    // large responses: n clusters of ~bytes each in one CDS response, then back to base
    const large = [];
    const { n: nLarge, bytes } = cfg.large ?? { n: 1000, bytes: 20_000 };
    for (let r = 0; r < (cfg.largeReps ?? 3); r++) {
      const payload = resources.large(nLarge, bytes, `r${r}`);
      const size = payload.reduce((n, x) => n + x.value.length, 0);
      await sleep(1000);
      s = startSampler(agent.pid, 50);
      const p = push(payload);
      const a = await acks.wait(p.nonce, 120_000);
      const u = s.stop();
      if (a.kind === 'nack') throw new Error(`Envoy NACKed the large response: ${a.error}`);
      const active = await envoyStat('cluster_manager.active_clusters');
      const warming = await envoyStat('cluster_manager.warming_clusters');
      large.push({ bytes: size, clusters: nLarge, ackMs: a.t - p.t, usage: u, envoyClusters: active + warming });
      log(`large ${(size / 1048576).toFixed(1)} MiB: ACK after ${(a.t - p.t).toFixed(0)} ms, agent cpu ${u.cpuS.toFixed(2)} s, rss max ${u.rssMaxMiB.toFixed(1)} MiB, Envoy has ${active + warming} clusters`);
      const back = push([]);
      await acks.wait(back.nonce, 120_000);
    }
    res.large = large;
    res.alive = agent.alive();
    res.finalRss = usage(agentPids(agent.pid)).rssKb / 1024;
    // back to idle: RSS once the agent has sat idle for a while after them
    await sleep(cfg.afterLargeIdleMs ?? 60_000);
    res.rssAfterLargeIdle = usage(agentPids(agent.pid)).rssKb / 1024;
    log(`rss ${res.finalRss.toFixed(1)} MiB after the large responses, ${res.rssAfterLargeIdle.toFixed(1)} MiB ${(cfg.afterLargeIdleMs ?? 60_000) / 1000} s later`);
  } finally {
    await agent.stop();
    await pod.cleanup();
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// soak: the agent's outside inputs, many times over, with its RSS watched

/** The pod's application for the probes: an HTTP app answering /readyz and a gRPC health server (SERVING). */
async function startProbeApps() {
  const http = createServer((req, res) => {
    req.resume();
    if (req.url === '/readyz') res.end('ready');
    else res.writeHead(404).end();
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const g = new grpc.Server();
  const id = (b) => b;
  g.addService(
    { Check: { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } },
    // HealthCheckResponse{status: SERVING}: field 1, varint 1
    { Check: (_call, cb) => cb(null, Buffer.from([0x08, 0x01])) },
  );
  const grpcPort = await new Promise((resolve, reject) => g.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return {
    httpPort: http.address().port,
    grpcPort,
    async close() {
      http.closeAllConnections();
      await new Promise((r) => http.close(() => r()));
      g.forceShutdown();
    },
  };
}

const SCRAPE_KINDS = ['plain', 'gzip', 'gzip-abort'];
const PROBE_PATHS = { http: '/app-health/app/readyz', grpc: '/app-health/grpc/livez' };

/** Counts per kind: sent, ok, and the first few problems. */
function tally() {
  const t = { sent: {}, ok: {}, problems: [] };
  t.note = (kind, good, problem) => {
    t.sent[kind] = (t.sent[kind] ?? 0) + 1;
    if (good) t.ok[kind] = (t.ok[kind] ?? 0) + 1;
    else if (t.problems.length < 5) t.problems.push(`${kind}: ${problem}`);
  };
  t.text = () => Object.keys(t.sent).map((k) => `${k} ${t.ok[k] ?? 0}/${t.sent[k]}`).join(', ');
  t.json = () => ({ sent: t.sent, ok: t.ok, problems: t.problems, ...(t.cut !== undefined ? { cut: t.cut } : {}) });
  return t;
}

async function soakScrapes(n, offset, concurrency, t) {
  t.cut ??= 0;
  await pool(n, concurrency, async (i) => {
    const kind = SCRAPE_KINDS[(offset + i) % SCRAPE_KINDS.length];
    const r = await scrape(15020, '/stats/prometheus', kind);
    if (kind === 'gzip-abort') {
      if (r.cut) t.cut++;
      t.note(kind, r.status === 200, `HTTP ${r.status} ${r.error ?? ''}`);
      return;
    }
    const body = r.body ?? '';
    const why = [];
    if (r.status !== 200) why.push(`HTTP ${r.status} ${r.error ?? ''}`);
    if (!/^istio_agent_\w+/m.test(body)) why.push('no istio_agent_ metrics');
    if (!/^envoy_server_live(\{[^}]*\})? 1$/m.test(body)) why.push('no envoy_server_live 1');
    t.note(kind, why.length === 0, why.join(', '));
    if (kind === 'gzip') t.note('gzip-encoded', r.encoding === 'gzip', `content-encoding ${r.encoding}`);
  });
}

async function soakProbes(n, concurrency, t) {
  await pool(n, concurrency, async (i) => {
    const kind = i % 2 ? 'grpc' : 'http';
    const r = await httpGet(15020, PROBE_PATHS[kind], 30_000);
    t.note(kind, r.status === 200, `HTTP ${r.status} ${r.body.slice(0, 100)}`);
  });
}

/** Open descriptors of the agent's processes. */
function fdCount(pids) {
  let n = 0;
  for (const p of pids) {
    try {
      n += readdirSync(`/proc/${p}/fd`).length;
    } catch {
      /* gone */
    }
  }
  return n;
}

async function soakTrial(cp, httpConfig, res) {
  const apps = await startProbeApps();
  const probers = {
    [PROBE_PATHS.http]: { httpGet: { path: '/readyz', port: apps.httpPort }, timeoutSeconds: 5 },
    [PROBE_PATHS.grpc]: { grpc: { port: apps.grpcPort, service: '' }, timeoutSeconds: 5 },
  };
  const { pod, env } = await makePod(cp, undefined, { ISTIO_KUBE_APP_PROBERS: JSON.stringify(probers) });
  const agent = spawnAgent(pod, env);
  const routeAcks = trackAcks(cp, ROUTE_TYPE);
  const conc = cfg.concurrency ?? 4;
  let version = 0;
  const pushes = async (n, t) => {
    for (let i = 0; i < n; i++) {
      const v = `v${++version}`;
      const from = cp.responses.length;
      cp.setMessages(ROUTE_TYPE, httpConfigMessages(cp.protos, { ...httpConfig, servedBy: v }).routes);
      const sent = cp.responses.slice(from).filter((r) => r.typeUrl === ROUTE_TYPE);
      if (sent.length === 0) {
        t.note('push', false, `${v}: no RDS response sent`);
        continue;
      }
      const answers = await Promise.all(sent.map((r) => routeAcks.wait(r.nonce, 60_000).catch((e) => ({ kind: 'none', error: e.message }))));
      const bad = answers.find((a) => a.kind !== 'ack');
      t.note('push', !bad, `${v}: ${bad?.kind} ${bad?.error ?? ''}`);
    }
  };
  try {
    res.ready = await waitReady(agent);
    res.envoyVersion = await envoyVersion();
    const marks = [];
    const mark = (phase) => {
      const pids = agentPids(agent.pid);
      const u = usage(pids);
      marks.push({ phase, rssMiB: u.rssKb / 1024, ticks: u.ticks, fds: fdCount(pids) });
      const m = marks.at(-1);
      log(`${phase}: rss ${m.rssMiB.toFixed(1)} MiB, ${m.fds} fds`);
    };
    await sleep(cfg.settleMs ?? 2000);
    mark('ready');

    // warm-up: `warmup` of each, then a moment to settle
    const warm = tally();
    await soakScrapes(cfg.warmup, 0, conc, warm);
    await soakProbes(cfg.warmup, conc, warm);
    await pushes(cfg.warmup, warm);
    if (warm.problems.length) throw new Error(`warm-up failed: ${warm.text()}; ${warm.problems.join(' | ')}`);
    await sleep(1000);
    mark('baseline');

    const s = startSampler(agent.pid, 100);
    const scrapes = tally();
    let t0 = performance.now();
    await soakScrapes(cfg.scrapes, cfg.warmup, conc, scrapes);
    res.scrapeS = (performance.now() - t0) / 1000;
    mark('scrapes');
    log(`scrapes: ${scrapes.text()}; ${scrapes.cut} cut mid-body`);

    const probes = tally();
    t0 = performance.now();
    await soakProbes(cfg.probes, conc, probes);
    res.probeS = (performance.now() - t0) / 1000;
    mark('probes');
    log(`probes: ${probes.text()}`);

    const pushed = tally();
    t0 = performance.now();
    await pushes(cfg.pushes, pushed);
    res.pushS = (performance.now() - t0) / 1000;
    const served = await httpGet(LISTENER_PORT, '/', 5000);
    res.servedBy = { want: `v${version}`, got: served.headers?.['x-served-by'] ?? null };
    mark('pushes');
    log(`pushes: ${pushed.text()}; Envoy serves ${res.servedBy.got} (want ${res.servedBy.want})`);

    await sleep(cfg.idleMs ?? 5000);
    mark('idle');
    const u = s.stop();
    const hz = clockTicks();
    const cpu = (phase) => {
      const i = marks.findIndex((m) => m.phase === phase);
      return (marks[i].ticks - marks[i - 1].ticks) / hz;
    };
    res.soak = {
      marks,
      cpuS: { scrapes: cpu('scrapes'), probes: cpu('probes'), pushes: cpu('pushes') },
      peakMiB: Math.max(u.rssMaxMiB, ...marks.slice(1).map((m) => m.rssMiB)),
      scrapes: scrapes.json(),
      probes: probes.json(),
      pushes: pushed.json(),
    };
    res.alive = agent.alive();
    if (!res.alive) throw new Error(`the agent exited during the soak; output:\n${agent.output().slice(-4000)}`);
  } finally {
    await agent.stop();
    await pod.cleanup();
    await apps.close();
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// certificates and the real istiod

/** Serial numbers compared as lower-case hex without leading zeros (Envoy and node:crypto write them differently). */
const normSerial = (s) => String(s ?? '').toLowerCase().replace(/[^0-9a-f]/g, '').replace(/^0+(?=.)/, '');

/**
 * Workload certificates Envoy holds (admin /certs): chains with a spiffe:// URI SAN, with serial,
 * NotBefore and NotAfter (ms; Envoy prints them to the second, as X.509 stores them).
 */
async function envoyWorkloadCerts() {
  const r = await httpGet(15000, '/certs');
  if (r.status !== 200) return [];
  try {
    const out = [];
    for (const c of JSON.parse(r.body).certificates ?? []) {
      for (const ch of c.cert_chain ?? []) {
        if ((ch.subject_alt_names ?? []).some((s) => String(s.uri ?? '').startsWith('spiffe://'))) {
          out.push({ serial: normSerial(ch.serial_number), validFrom: Date.parse(ch.valid_from), notAfter: Date.parse(ch.expiration_time) });
        }
      }
    }
    return out;
  } catch {
    return [];
  }
}

/** Certificates the in-repo CA issued: serial and when it sent the chain (ms since the epoch). */
const inRepoSignings = (cp) => () => cp.csrs.filter((c) => c.ok && c.serial).map((c) => ({ serial: normSerial(c.serial), at: c.issuedAt ?? NaN }));

/** Istio's log timestamp (RFC 3339, microseconds, UTC) as ms since the epoch, with the fraction kept. */
function istioLogTime(ts) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(ts);
  if (!m) return NaN;
  return Date.parse(`${m[1]}Z`) + Number(`0.${m[2] ?? '0'}`) * 1000;
}

/**
 * Certificates istiod's CA issued, from its own log (scope `serverca` at debug, istiod 1.30's
 * security/pkg/server/ca/server.go): "Responding with cert chain, [<leaf PEM> ...]" gives the serial,
 * and the "CSR successfully signed" line that follows for the same client, logged right after
 * citadel_server_success_cert_issuance_count is incremented and just before the response is returned,
 * gives the signing time (microsecond timestamp, the same clock as ours).
 */
const istiodSignings = (istiod) => () => {
  const out = [];
  const pending = new Map(); // client -> serial
  const re = /^(\S+)\tdebug\tserverca\t(Responding with cert chain, \["(-----BEGIN CERTIFICATE-----[^"]*?-----END CERTIFICATE-----)|CSR successfully signed)[^\n]*?\tclient=(\S+)$/gm;
  for (const m of istiod.logs().matchAll(re)) {
    const [, ts, what, pem, client] = m;
    if (pem) {
      try {
        pending.set(client, normSerial(new X509Certificate(pem.replace(/\\n/g, '\n')).serialNumber));
      } catch {
        pending.set(client, undefined);
      }
    } else if (what.startsWith('CSR successfully signed')) {
      out.push({ serial: pending.get(client), at: istioLogTime(ts) });
      pending.delete(client);
    }
  }
  return out;
};

const FINE_POLL_BEFORE_DUE_MS = 250;

/**
 * One agent, already spawned at wall time tSpawn: the first workload certificate in Envoy, then
 * `rotations` rotations. `signings()` lists what the CA issued ({ serial, at }), so each certificate
 * Envoy holds is matched to its signing by serial number.
 */
async function measureCerts(agent, tSpawn, signings, res, { ttlS, grace, timeoutMs, rotations, notBeforeBackdateMs }) {
  // readiness is recorded but not required: Envoy's init waits for the secrets
  const ready = waitReady(agent, timeoutMs).then((r) => (res.ready = r), (e) => (res.readyError = String(e.message).split('\n')[0]));
  const first = await pollUntil(async () => {
    if (!agent.alive()) throw new Error(`agent exited; output:\n${agent.output().slice(-4000)}`);
    const c = await envoyWorkloadCerts();
    return c.length ? { wall: Date.now(), ...c[0] } : undefined;
  }, timeoutMs, 20);
  await ready;
  if (!first) {
    const sds = { implemented: false, signed: signings().length, note: `no workload certificate in Envoy within ${timeoutMs} ms of the agent's start` };
    log(sds.note);
    return sds;
  }
  // the CA logs/records the signing before the agent gets the chain; allow for our reading of it to lag
  const signedAt = async (cert) => (await pollUntil(async () => signings().find((s) => s.serial === cert.serial)?.at, 2000, 20)) ?? NaN;
  const issued = [];
  const s0 = await signedAt(first);
  issued.push({ serial: first.serial, signedAt: s0, validFrom: first.validFrom, notAfter: first.notAfter });
  const sds = {
    implemented: true,
    spawnToEnvoyMs: first.wall - tSpawn,
    spawnToCsrMs: s0 - tSpawn,
    csrToEnvoyMs: first.wall - s0,
    rotations: [],
  };
  log(`first cert: in Envoy ${sds.spawnToEnvoyMs} ms after spawn (CA signed at +${sds.spawnToCsrMs.toFixed(1)} ms)`);
  // Rotation is due at created + (1 - grace) * (notAfter - created), pilot-agent's rule (secretcache.go
  // rotateTime), "created" being when the agent got the signed certificate: on loopback, when the CA
  // signed it. If the signing time is unknown, when the certificate appeared in Envoy (later: due too late).
  let cur = first;
  let created = Number.isFinite(s0) ? s0 : first.wall;
  for (let k = 0; k < rotations; k++) {
    const due = created + (1 - grace) * (cur.notAfter - created);
    // /certs every 20 ms, every 5 ms from shortly before the rotation is due (finer "-> in Envoy" times)
    let got;
    for (const deadline = Date.now() + ttlS * 1000 + 10_000; !got && Date.now() < deadline; ) {
      const fresh = (await envoyWorkloadCerts()).find((x) => x.serial !== cur.serial);
      if (fresh) got = { wall: Date.now(), ...fresh };
      else await sleep(Date.now() < due - FINE_POLL_BEFORE_DUE_MS ? 20 : 5);
    }
    if (!got) {
      sds.rotationNote = `no rotation within ${ttlS + 10} s`;
      break;
    }
    const at = await signedAt(got);
    sds.rotations.push({ dueToEnvoyMs: got.wall - due, csrToEnvoyMs: got.wall - at, dueToCsrMs: at - due, dueFrom: Number.isFinite(s0) ? 'ca' : 'envoy' });
    issued.push({ serial: got.serial, signedAt: at, validFrom: got.validFrom, notAfter: got.notAfter });
    log(`rotation ${k + 1}: new cert in Envoy ${(got.wall - due).toFixed(1)} ms after due (CA signed ${(got.wall - at).toFixed(1)} ms before)`);
    cur = got;
    created = Number.isFinite(at) ? at : got.wall;
  }
  // every certificate the CA signed for this agent, per certificate Envoy got (1 = no CSR wasted)
  sds.signed = signings().length;
  sds.certsInEnvoy = issued.length;
  sds.issued = issued;
  if (notBeforeBackdateMs !== undefined) {
    // X.509 times are whole seconds: a signing time we use must fall in the second NotBefore (+ backdate) names
    const ok = issued.filter((c) => c.signedAt >= c.validFrom + notBeforeBackdateMs && c.signedAt < c.validFrom + notBeforeBackdateMs + 1000);
    sds.notBeforeCheck = { consistent: ok.length, of: issued.length };
  }
  return sds;
}

async function certTrial(cp, resources, httpClusters, res) {
  const { pod, env } = await makePod(cp);
  const ttlS = cfg.secretTtlS ?? 16;
  const grace = 0.5;
  // a cluster that needs the workload certificate and the root (as Istio's mTLS clusters do) is
  // served from the start, so Envoy asks the agent for both over SDS while starting
  cp.setResources(CLUSTER_TYPE, [...resources.base(httpClusters, 0), resources.mtls()]);
  const csr0 = cp.csrs.length;
  const signings = inRepoSignings(cp); // this trial's control plane serves one agent only
  const tSpawn = Date.now();
  const agent = spawnAgent(pod, { ...env, SECRET_TTL: `${ttlS}s`, SECRET_GRACE_PERIOD_RATIO: String(grace), SECRET_GRACE_PERIOD_RATIO_JITTER: '0' });
  try {
    res.ca = 'in-repo';
    res.secretTtlS = ttlS;
    res.sds = await measureCerts(agent, tSpawn, signings, res, { ttlS, grace, timeoutMs: cfg.certTimeoutMs ?? 20_000, rotations: cfg.rotations ?? 3 });
    res.csrFailures = cp.csrs.slice(csr0).filter((c) => !c.ok).map((c) => c.error);
  } finally {
    await agent.stop();
    await pod.cleanup();
  }
  return res;
}

/**
 * The same with the real istiod as the CA (and control plane): istiod's default mesh (PERMISSIVE mTLS)
 * gives the sidecar's inbound listener TLS chains with SDS `default` and `ROOTCA`, so Envoy asks for
 * both while starting. CA_ADDR is istiod's secure port, as the discovery address.
 */
async function istiodCertTrial(res) {
  const { startIstiod, DEFAULT_ISTIOD_PORTS } = await import(B('test/helpers/istiod.js'));
  const istiod = await startIstiod({ ports: DEFAULT_ISTIOD_PORTS, configs: {}, logLevel: 'default:warn,serverca:debug' });
  const stopIstiod = () => istiod.stop();
  undo.add(stopIstiod);
  const ttlS = cfg.secretTtlS ?? 16;
  const grace = 0.5;
  try {
    const who = { rootCert: istiod.rootCertPem, token: istiod.mintToken('default', 'sleep') };
    const { pod, env } = await makePod(undefined, who, { CA_ADDR: istiod.discoveryAddress });
    const tSpawn = Date.now();
    const agent = spawnAgent(pod, { ...env, SECRET_TTL: `${ttlS}s`, SECRET_GRACE_PERIOD_RATIO: String(grace), SECRET_GRACE_PERIOD_RATIO_JITTER: '0' });
    try {
      res.ca = 'istiod';
      res.secretTtlS = ttlS;
      // istiod backdates NotBefore by 2 minutes (ClockSkewGracePeriod, security/pkg/pki/util/generate_cert.go)
      res.sds = await measureCerts(agent, tSpawn, istiodSignings(istiod), res, { ttlS, grace, timeoutMs: cfg.certTimeoutMs ?? 20_000, rotations: cfg.rotations ?? 3, notBeforeBackdateMs: 120_000 });
      // istiod's own count, to check that the log parsing saw every certificate it issued
      const m = (await httpGet(istiod.ports.monitoring, '/metrics')).body;
      const count = (name) => [...m.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((n, x) => n + Number(x[1]), 0);
      res.sds.citadel = { csrs: count('citadel_server_csr_count'), issued: count('citadel_server_success_cert_issuance_count') };
      if (res.sds.implemented && res.sds.citadel.issued !== res.sds.signed) log(`istiod counted ${res.sds.citadel.issued} certificates issued, its log shows ${res.sds.signed}`);
    } finally {
      await agent.stop();
      await pod.cleanup();
    }
  } finally {
    undo.delete(stopIstiod);
    await istiod.stop();
  }
  return res;
}

const serviceEntry = (name, host, port) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ${name}
  namespace: default
spec:
  hosts: [${host}]
  ports: [{number: ${port}, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 127.0.0.1}]
`;

/** Against the real istiod: start-up to ready, then ServiceEntry writes until Envoy holds the cluster. */
async function istiodTrial(res) {
  const { startIstiod, DEFAULT_ISTIOD_PORTS } = await import(B('test/helpers/istiod.js'));
  const configs = {};
  for (let i = 0; i < (cfg.serviceEntries ?? 20); i++) configs[`se-${i}.yaml`] = serviceEntry(`se-${i}`, `svc-${i}.bench.test`, 8000 + i);
  const istiod = await startIstiod({ ports: DEFAULT_ISTIOD_PORTS, configs, logLevel: 'default:warn' });
  const stopIstiod = () => istiod.stop();
  undo.add(stopIstiod);
  const who = { rootCert: istiod.rootCertPem, token: istiod.mintToken('default', 'sleep') };
  const times = { ready15021: [], ready15020: [] };
  const warm = cfg.warmup ?? 1;
  const readyTimeoutMs = cfg.readyTimeoutMs ?? 30_000;
  try {
    for (let i = 0; i < warm + cfg.reps; i++) {
      const last = i === warm + cfg.reps - 1;
      const { pod, env } = await makePod(undefined, who, { CA_ADDR: istiod.discoveryAddress });
      const agent = spawnAgent(pod, env);
      try {
        let r;
        try {
          r = await waitReady(agent, readyTimeoutMs);
        } catch (e) {
          // not ready: say why, from Envoy's own counters and the agent's readiness answer
          const stat = async (n) => envoyStat(n);
          res.notReady = {
            afterMs: readyTimeoutMs,
            error: String(e.message).split('\n')[0],
            agentReady: await httpGet(15020, '/healthz/ready').then((r) => `${r.status} ${r.body.slice(0, 200)}`.trim()),
            cdsUpdates: await stat('cluster_manager.cds.update_success'),
            ldsUpdates: await stat('listener_manager.lds.update_success'),
            workersStarted: await stat('listener_manager.workers_started'),
            warmingListeners: await stat('listener_manager.total_listeners_warming'),
            warmingClusters: await stat('cluster_manager.warming_clusters'),
            // Envoy's unready init targets: what its start-up is waiting for
            unreadyTargets: await httpGet(15000, '/init_dump').then((r) => [...new Set([...r.body.matchAll(/"target_names":\s*\[([^\]]*)\]/g)].flatMap((m) => m[1].split(',').map((x) => x.trim().replace(/^"|"$/g, '')).filter(Boolean)))]),
          };
          log(`not ready within ${readyTimeoutMs} ms: ${JSON.stringify(res.notReady)}`);
          break;
        }
        log(`start ${i < warm ? 'warm-up' : i - warm + 1}: 15021 ${r.ready15021.toFixed(0)} ms, 15020 ${r.ready15020.toFixed(0)} ms`);
        if (i >= warm) {
          times.ready15021.push(r.ready15021);
          times.ready15020.push(r.ready15020);
        }
        if (last) {
          // istiod pushes on config change (after its debounce); latency = file written -> Envoy has the cluster
          const push = [];
          for (let k = 0; k < (cfg.pushes ?? 10); k++) {
            await sleep(300);
            const host = `pushed-${k}.bench.test`;
            const t = performance.now();
            await istiod.writeConfig(`pushed-${k}.yaml`, serviceEntry(`pushed-${k}`, host, 9000 + k));
            const got = await pollUntil(async () => ((await httpGet(15000, '/clusters')).body.includes(`||${host}::`) ? performance.now() : undefined), 30_000, 10);
            if (got === undefined) throw new Error(`Envoy never got the cluster for ${host}`);
            push.push(got - t);
          }
          res.istiodPushMs = push;
          log(`istiod push -> Envoy cluster: median ${summarize(push).median.toFixed(0)} ms`);
        }
      } finally {
        await agent.stop();
        await pod.cleanup();
      }
    }
  } finally {
    undo.delete(stopIstiod);
    await istiod.stop();
  }
  return { ...res, startup: times };
}

// ---------------------------------------------------------------------------------------------

/** The DNS proxy: queries/s and p50/p99 for a table hit and a forwarded name (dns-tool load, UDP). */
async function dnsTrial(res) {
  const { startIstiod, DEFAULT_ISTIOD_PORTS } = await import(B('test/helpers/istiod.js'));
  const tool = B('test/helpers/dns-tool.js');
  const configs = {};
  for (let i = 0; i < (cfg.serviceEntries ?? 20); i++) configs[`se-${i}.yaml`] = serviceEntry(`se-${i}`, `svc-${i}.bench.test`, 8000 + i).replace('  resolution: STATIC', `  addresses: [10.60.0.${i + 1}]\n  resolution: STATIC`);
  const istiod = await startIstiod({ ports: DEFAULT_ISTIOD_PORTS, configs, logLevel: 'default:warn' });
  const stopIstiod = () => istiod.stop();
  undo.add(stopIstiod);
  // the namespace's nameserver (resolv.conf written by run.mjs: nameserver 127.0.0.1)
  const upstream = spawn(process.execPath, [tool, 'upstream', '53', '127.0.0.1'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const stopUpstream = () => {
    try {
      process.kill(-upstream.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  undo.add(stopUpstream);
  const who = { rootCert: istiod.rootCertPem, token: istiod.mintToken('default', 'sleep') };
  const load = (seconds, name) =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [tool, 'load', '15053', String(seconds), String(cfg.concurrency ?? 16), name, 'A'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.setEncoding('utf8').on('data', (d) => (out += d));
      c.once('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`dns-tool load exited ${code}`))));
    });
  try {
    const { pod, env } = await makePod(undefined, who, { CA_ADDR: istiod.discoveryAddress, ISTIO_META_DNS_CAPTURE: 'true' });
    const agent = spawnAgent(pod, env);
    try {
      // ready includes the first DNS name table (both agents)
      await waitReady(agent, cfg.readyTimeoutMs ?? 60_000);
      const out = {};
      for (const [key, name] of [['hit', 'svc-1.bench.test'], ['forwarded', 'outside.example.test']]) {
        await load(cfg.warmupS ?? 1, name);
        const runs = [];
        for (let i = 0; i < (cfg.reps ?? 3); i++) runs.push(await load(cfg.seconds ?? 5, name));
        out[key] = runs;
        log(`${key}: ${runs.map((r) => `${r.qps} q/s p50 ${r.p50Ms.toFixed(3)} ms p99 ${r.p99Ms.toFixed(3)} ms errors ${r.errors} lost ${r.lost}`).join('; ')}`);
      }
      res.dns = out;
    } finally {
      await agent.stop();
      await pod.cleanup();
    }
  } finally {
    undo.delete(stopUpstream);
    stopUpstream();
    undo.delete(stopIstiod);
    await istiod.stop();
  }
  return res;
}

async function main() {
  let res = { agent: AGENT, kind: cfg.kind };
  if (cfg.kind === 'istiod') res = await istiodTrial(res);
  else if (cfg.kind === 'dns') res = await dnsTrial(res);
  else if (cfg.kind === 'cert' && cfg.ca === 'istiod') res = await istiodCertTrial(res);
  else res = await withControlPlane(res);
  process.stdout.write(`${JSON.stringify(res)}\n`);
}

async function withControlPlane(res) {
  const upstream = await startHttpUpstream({ name: 'bench-upstream' });
  const httpConfig = { listenerPort: LISTENER_PORT, upstreamPort: upstream.port };
  const cp = await startControlPlane({ address: `localhost:${XDS_PORT}`, tls: true, requireToken: TOKEN, http: httpConfig });
  try {
    // the HTTP config's cluster as raw resources, so every later CDS push keeps it
    const served = cp.protos.encodeResources(CLUSTER_TYPE, httpConfigMessages(cp.protos, httpConfig).clusters);
    const acks = trackAcks(cp);
    const resources = makeResources(cp);
    cp.setResources(CLUSTER_TYPE, resources.base(served, cfg.baseClusters ?? 50));
    if (cfg.kind === 'startup') return await startupTrial(cp, res);
    if (cfg.kind === 'steady') return await steadyTrial(cp, acks, resources, served, res);
    if (cfg.kind === 'cert') return await certTrial(cp, resources, served, res);
    if (cfg.kind === 'soak') return await soakTrial(cp, httpConfig, res);
    throw new Error(`unknown trial kind ${cfg.kind}`);
  } finally {
    await cp.stop();
    await upstream.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`trial failed: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
