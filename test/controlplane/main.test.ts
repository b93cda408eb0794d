// The control plane as its own process (how the demo and the process-level tests run it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { credentials, status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { REPO_ROOT } from '../helpers/peers.js';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../../src/xds/types.js';
import { AdsTestClient } from '../xds/ads-client.js';
import { caClient, createCertificate, ecCsr, md } from './ca-client.js';
import { DOWNSTREAM_TLS_CONTEXT, Protos, UPSTREAM_TLS_CONTEXT } from './resources.js';

const MAIN = join(REPO_ROOT, 'build', 'test', 'controlplane', 'main.js');

interface Running {
  proc: ChildProcess;
  ready: Record<string, unknown>;
  events: Array<Record<string, unknown>>;
}

async function launch(args: string[], o: { stdin?: boolean } = {}): Promise<Running> {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const events: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane not ready in 15s: ${stderr}`)), 15_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited ${code}: ${stderr}`));
    });
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const ev = JSON.parse(line) as Record<string, unknown>;
      events.push(ev);
      if (ev.event === 'ready') {
        clearTimeout(timer);
        resolve(ev);
      }
    });
  });
  return { proc, ready, events };
}

async function stop(r: Running): Promise<number | null> {
  if (r.proc.exitCode !== null) return r.proc.exitCode;
  const exited = new Promise<number | null>((resolve) => r.proc.once('exit', (code) => resolve(code)));
  r.proc.kill('SIGTERM');
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), 5000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

void describe('control plane process (main.js)', () => {
  void it('serves ADS and its HTTP upstream, reports events as JSON lines, and exits 0 on SIGTERM', async () => {
    const r = await launch(['--xds-address', '127.0.0.1:0', '--listener-port', '18099', '--start-upstream', '--served-by', 'demo']);
    let client: AdsTestClient | undefined;
    try {
      client = new AdsTestClient(String(r.ready.xdsAddress), 'delta');
      client.delta(LISTENER_TYPE);
      const lds = await client.next(LISTENER_TYPE);
      assert.deepEqual((lds.resources as Array<{ name: string }>).map((x) => x.name), ['http_18099']);
      client.delta(CLUSTER_TYPE);
      await client.next(CLUSTER_TYPE);
      const body = await new Promise<string>((resolve, reject) => {
        request({ host: '127.0.0.1', port: Number(r.ready.upstreamPort), path: '/x', timeout: 2000 }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve(b));
        })
          .on('error', reject)
          .end();
      });
      assert.equal(body, 'hello from demo: GET /x\n');
      assert.ok(r.events.some((e) => e.event === 'stream' && e.flavour === 'delta'));
    } finally {
      client?.close();
      assert.equal(await stop(r), 0);
    }
  });

  void it('with --tls writes the root cert, and keeps the same CA across restarts with --ca-dir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-main-'));
    try {
      const args = ['--xds-address', '127.0.0.1:0', '--tls', '--root-cert-out', join(dir, 'root-cert.pem'), '--ca-dir', join(dir, 'ca'), '--upstream-port', '1'];
      const first = await launch(args);
      const root1 = await readFile(join(dir, 'root-cert.pem'), 'utf8');
      assert.equal(await stop(first), 0);
      const second = await launch(args);
      const root2 = await readFile(join(dir, 'root-cert.pem'), 'utf8');
      assert.equal(await stop(second), 0);
      assert.match(root1, /^-----BEGIN CERTIFICATE-----/);
      assert.equal(root2, root1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('rejects bad flags with exit code 2 and a message naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--listener-port', '99999', '--upstream-port', '1'], /--listener-port: invalid port "99999"/],
      [['--upstream-port', '1', '--ca-fault', 'explode'], /--ca-fault: unknown CA fault "explode"/],
      [['--upstream-port', '1', '--ca-fault', 'status:NOPE'], /--ca-fault: .*"NOPE" is not a gRPC error code/],
      [['--upstream-port', '1', '--cert-ttl-max', '0'], /--cert-ttl-max: invalid number of seconds "0"/],
      [['--upstream-port', '1', '--upstream-san', 'spiffe://x/ns/a/sa/b'], /--upstream-san and --upstream-sni need --upstream-mtls/],
      [['--ca-only', '--start-upstream'], /--ca-only serves no listener or cluster: drop --start-upstream/],
    ];
    for (const [args, re] of cases) {
      const proc = spawn(process.execPath, [MAIN, '--xds-address', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
      assert.equal(code, 2, args.join(' '));
      assert.match(stderr, re);
    }
  });

  void it('serves mTLS resources with --listener-mtls and --upstream-mtls --upstream-san --upstream-sni', async () => {
    const san = 'spiffe://cluster.local/ns/default/sa/httpbin';
    const r = await launch(['--xds-address', '127.0.0.1:0', '--listener-port', '18099', '--listener-mtls', '--upstream-port', '18443', '--upstream-mtls', '--upstream-san', san, '--upstream-sni', 'outbound_.8000_._.httpbin']);
    const client = new AdsTestClient(String(r.ready.xdsAddress), 'delta');
    try {
      assert.equal(r.ready.listenerMtls, true);
      assert.deepEqual(r.ready.upstreamMtls, { san, sni: 'outbound_.8000_._.httpbin' });
      const p = new Protos();
      const decode = (m: Record<string, unknown>, type: string): Record<string, unknown> => {
        const res = (m.resources as Array<{ resource: { value: Buffer } }>)[0]!;
        return p.codec(type).decode(res.resource.value);
      };
      client.delta(LISTENER_TYPE);
      const listener = decode(await client.next(LISTENER_TYPE), 'envoy.config.listener.v3.Listener') as { filter_chains: Array<{ transport_socket: { typed_config: { type_url: string; value: Buffer } } }> };
      const lts = listener.filter_chains[0]!.transport_socket.typed_config;
      assert.equal(lts.type_url, `type.googleapis.com/${DOWNSTREAM_TLS_CONTEXT}`);
      const ltsText = Buffer.from(lts.value).toString('latin1');
      for (const s of ['default', 'ROOTCA', 'sds-grpc']) assert.ok(ltsText.includes(s), s);
      client.delta(CLUSTER_TYPE);
      const cluster = decode(await client.next(CLUSTER_TYPE), 'envoy.config.cluster.v3.Cluster') as { transport_socket: { typed_config: { type_url: string; value: Buffer } } };
      assert.equal(cluster.transport_socket.typed_config.type_url, `type.googleapis.com/${UPSTREAM_TLS_CONTEXT}`);
      const ctsText = Buffer.from(cluster.transport_socket.typed_config.value).toString('latin1');
      for (const s of ['default', 'ROOTCA', 'sds-grpc', san, 'outbound_.8000_._.httpbin']) assert.ok(ctsText.includes(s), s);
    } finally {
      client.close();
      assert.equal(await stop(r), 0);
    }
  });

  void it('--ca-only: two CA processes on one --ca-dir share the root, a restart keeps it, another --ca-dir changes it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-ca-only-'));
    const clients: Client[] = [];
    const sign = async (ready: Record<string, unknown>, rootPem: string): Promise<string[]> => {
      const c = caClient(String(ready.xdsAddress), credentials.createSsl(Buffer.from(rootPem)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
      clients.push(c);
      return (await createCertificate(c, { csr: ecCsr('spiffe://cluster.local/ns/default/sa/sleep').pem, validity_duration: 3600 }, md('tok'))).cert_chain as string[];
    };
    try {
      const args = (ca: string, out: string): string[] => ['--ca-only', '--xds-address', '127.0.0.1:0', '--tls', '--ca-dir', join(dir, ca), '--root-cert-out', join(dir, out), '--require-token', 'tok'];
      // started together: whoever creates the CA first wins, the other loads it
      const [a, b] = await Promise.all([launch(args('ca', 'a.pem')), launch(args('ca', 'b.pem'))]);
      const rootA = await readFile(join(dir, 'a.pem'), 'utf8');
      assert.equal(await readFile(join(dir, 'b.pem'), 'utf8'), rootA);
      assert.deepEqual(a.ready.root, b.ready.root);
      assert.equal(a.ready.caOnly, true);
      assert.equal((await sign(a.ready, rootA)).at(-1), rootA);
      assert.equal((await sign(b.ready, rootA)).at(-1), rootA);
      assert.ok(a.events.some((e) => e.event === 'csr' && e.ok === true && typeof e.serial === 'string'));
      assert.equal(await stop(a), 0);
      const again = await launch(args('ca', 'a.pem'));
      assert.deepEqual(again.ready.root, b.ready.root);
      assert.equal(await stop(again), 0);
      assert.equal(await stop(b), 0);
      const other = await launch(args('ca2', 'c.pem'));
      assert.notDeepEqual(other.ready.root, b.ready.root);
      const rootC = await readFile(join(dir, 'c.pem'), 'utf8');
      assert.notEqual(rootC, rootA);
      assert.equal((await sign(other.ready, rootC)).at(-1), rootC);
      assert.equal(await stop(other), 0);
    } finally {
      for (const c of clients) c.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('--ca-fault and --cert-ttl-max shape the answers; --stdin-commands changes the fault and the CA at run time', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-ca-fault-'));
    const r = await launch(['--ca-only', '--xds-address', '127.0.0.1:0', '--ca-fault', 'status:PERMISSION_DENIED:no identities', '--cert-ttl-max', '7200', '--stdin-commands'], { stdin: true });
    const client = caClient(String(r.ready.xdsAddress), credentials.createInsecure());
    const call = (ttl = 3600): Promise<Record<string, unknown>> => createCertificate(client, { csr: ecCsr('spiffe://cluster.local/ns/default/sa/sleep').pem, validity_duration: ttl }, md());
    const command = async (line: string, event: string): Promise<Record<string, unknown>> => {
      const seen = r.events.length;
      r.proc.stdin!.write(`${line}\n`);
      for (let i = 0; i < 100; i++) {
        const ev = r.events.slice(seen).find((e) => e.event === event || e.event === 'command-error');
        if (ev) return ev;
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error(`no ${event} event after "${line}"`);
    };
    try {
      assert.equal(r.ready.caFault, 'status:PERMISSION_DENIED:no identities');
      await assert.rejects(call(), (e: ServiceError) => e.code === Status.PERMISSION_DENIED && e.details === 'no identities');
      assert.deepEqual(await command('ca-fault single', 'ca-fault'), { event: 'ca-fault', fault: 'single' });
      assert.equal(((await call()).cert_chain as string[]).length, 1);
      assert.equal((await command('ca-fault bogus', 'ca-fault')).event, 'command-error');
      assert.deepEqual(await command('ca-fault none', 'ca-fault'), { event: 'ca-fault', fault: 'none' });
      const before = ((await call()).cert_chain as string[]).at(-1);
      await assert.rejects(call(7201), (e: ServiceError) => e.code === Status.INVALID_ARGUMENT && /max allowed TTL 7200s/.test(e.details));
      const setCa = await command(`set-ca ${join(dir, 'next')}`, 'set-ca');
      assert.notDeepEqual(setCa.root, r.ready.root);
      const after = ((await call()).cert_chain as string[]).at(-1);
      assert.notEqual(after, before);
      const csrs = r.events.filter((e) => e.event === 'csr');
      assert.equal(csrs[0]!.fault, 'status:PERMISSION_DENIED:no identities');
      assert.equal(csrs[1]!.fault, 'single');
    } finally {
      client.close();
      assert.equal(await stop(r), 0);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
