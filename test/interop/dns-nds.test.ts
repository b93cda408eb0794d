// NDS handling, differential against the Go pilot-agent, with the in-repo control plane (which sends a
// NameTable only when the test gives it one): until the first table, /healthz/ready is 503 with
// pilot-agent's reason and every query gets SERVFAIL; a table pushed on the xDS stream is ACKed and makes
// the agent ready and the names answer; a table that does not decode is NACKed and the last good one keeps
// answering; a new table replaces the old one whole; after a reconnect NDS is asked for again and the
// table is kept meanwhile (an empty response is ignored). Only names of the table are queried (nothing is
// forwarded to the host's resolver).
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { startControlPlane } from '../controlplane/server.js';
import { startHttpUpstream } from '../controlplane/http-upstream.js';
import { createPod } from '../helpers/pod.js';
import { PEER_PATH, startProc, type Proc } from '../helpers/go-agent.js';
import { AGENT_BIN, istioBootstrapTemplate, pilotAgentBin } from '../helpers/peers.js';
import { httpGet } from '../helpers/http.js';
import { loadProtos, messageCodec } from '../../src/lib/proto.js';
import { NAME_TABLE_TYPE, LISTENER_TYPE } from '../../src/xds/types.js';

const nds = messageCodec(loadProtos(['istio/networking/nds/v1/nds.proto']), 'istio.networking.nds.v1.NameTable');
const TOKEN = 'nds-test-token';

function ask(name: string, type: 'A' | 'AAAA' = 'A'): Promise<string> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve('no reply');
    }, 5000);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      const p = dnsPacket.decode(m) as dnsPacket.Packet & { rcode?: string };
      resolve(`${p.rcode} ${(p.answers ?? []).map((a) => `${a.type}:${String((a as { data?: unknown }).data)}`).sort().join(',')}`.trim());
    });
    s.send(dnsPacket.encode({ id: 7, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] }), 15053, '127.0.0.1');
  });
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>, diag: () => string): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}\n${diag()}`);
}

interface Observed {
  readyBefore: number;
  reasonBefore: boolean;
  answerBefore: string;
  ndsRequestAfterLds: boolean;
  readyAfter: number;
  answers: string[];
  nackKinds: string[];
  answersAfterNack: string[];
  answersAfterReplace: string[];
  /** After the control plane closed the stream: NDS asked for again, the table kept meanwhile. */
  reRequested: boolean;
  answersAfterReconnect: string[];
}

async function observe(agent: 'go' | 'ours'): Promise<Observed> {
  const app = await startHttpUpstream({ name: 'nds-app' });
  const pod = await createPod({ token: TOKEN, proxyConfig: { drainDuration: '2s', terminationDrainDuration: '1s' }, env: { ISTIO_META_DNS_CAPTURE: 'true' } });
  const cp = await startControlPlane({ tls: true, requireToken: TOKEN, rootCertOut: join(pod.cwd, 'var/run/secrets/istio/root-cert.pem'), http: { listenerPort: 18080, upstreamPort: app.port } });
  const pc = JSON.parse(pod.env.PROXY_CONFIG!) as Record<string, unknown>;
  pod.env.PROXY_CONFIG = JSON.stringify({ ...pc, discoveryAddress: `localhost:${cp.port}` });
  pod.env.CA_ADDR = `localhost:${cp.port}`;
  await mkdir(join(pod.cwd, 'var/lib/istio/envoy'), { recursive: true });
  await copyFile(istioBootstrapTemplate(), join(pod.cwd, 'var/lib/istio/envoy/envoy_bootstrap_tmpl.json'));
  const [cmd, args] = agent === 'go' ? [pilotAgentBin(), pod.args] : [AGENT_BIN, pod.args];
  const proc: Proc = startProc(cmd, args, { cwd: pod.cwd, env: { ...pod.env, PATH: PEER_PATH } });
  const diag = (): string => `--- ${agent} agent ---\n${proc.output().slice(-5000)}`;
  try {
    const ndsReq = (kind: string) => cp.requests.filter((r) => r.typeUrl === NAME_TABLE_TYPE && r.kind === kind);
    await until('Envoy ACKs LDS and the agent asks for NDS', 60_000, async () => (cp.requests.some((r) => r.typeUrl === LISTENER_TYPE && r.kind === 'ack') && ndsReq('initial').length > 0 ? true : undefined), diag);
    // NDS is asked for after Envoy's first LDS request
    const firstLds = cp.requests.findIndex((r) => r.typeUrl === LISTENER_TYPE);
    const firstNds = cp.requests.findIndex((r) => r.typeUrl === NAME_TABLE_TYPE);
    // Envoy is otherwise ready; the agent waits for the table
    await new Promise((r) => setTimeout(r, 1500));
    const before = await httpGet('http://127.0.0.1:15020/healthz/ready', { timeoutMs: 3000 });
    const answerBefore = await ask('svc-a.example.test');
    const reasonBefore = /DNS lookup table is not ready yet/.test(before.body) || /DNS lookup table is not ready yet/.test(proc.output());

    const table = (ips: string[]) => [{ name: '', value: nds.encode({ table: { 'svc-a.example.test': { ips, registry: 'External' }, 'svc-b.example.test': { ips: ['10.70.0.2', '2001:db8::70'], registry: 'External' } } }) }];
    cp.setResources(NAME_TABLE_TYPE, table(['10.70.0.1']));
    await until('the NDS ACK', 30_000, async () => (ndsReq('ack').length > 0 ? true : undefined), diag);
    const readyAfter = (await until('ready', 30_000, async () => {
      const r = await httpGet('http://127.0.0.1:15020/healthz/ready', { timeoutMs: 3000 });
      return r.status === 200 ? r : undefined;
    }, diag)).status;
    const answers = [await ask('svc-a.example.test'), await ask('svc-b.example.test', 'AAAA'), await ask('svc-a.example.test', 'AAAA'), await ask('SVC-B.Example.Test')];

    // a table that does not decode: NACKed, the last good one keeps answering
    cp.setResources(NAME_TABLE_TYPE, [{ name: '', value: Buffer.from([0x0a, 0xff, 0x01]) }]);
    await until('the NDS NACK', 30_000, async () => (ndsReq('nack').length > 0 ? true : undefined), diag);
    const nackKinds = ndsReq('nack').map((r) => r.kind);
    const answersAfterNack = [await ask('svc-a.example.test')];

    // a new table replaces the old one whole
    cp.setResources(NAME_TABLE_TYPE, [{ name: '', value: nds.encode({ table: { 'svc-c.example.test': { ips: ['10.70.0.3'], registry: 'External' } } }) }]);
    await until('the second NDS ACK', 30_000, async () => (ndsReq('ack').length > 1 ? true : undefined), diag);
    const answersAfterReplace = [await ask('svc-c.example.test')];

    // a reconnect: NDS is asked for again on the new stream; the table stays meanwhile
    const initials = ndsReq('initial').length;
    cp.setResources(NAME_TABLE_TYPE, []);
    cp.closeStreams();
    const answersAfterReconnect = [await ask('svc-c.example.test')];
    const reRequested = await until('NDS asked for again', 30_000, async () => (ndsReq('initial').length > initials ? true : undefined), diag);
    answersAfterReconnect.push(await ask('svc-c.example.test'));
    return {
      reRequested,
      answersAfterReconnect, readyBefore: before.status, reasonBefore, answerBefore, ndsRequestAfterLds: firstLds >= 0 && firstNds > firstLds, readyAfter, answers, nackKinds, answersAfterNack, answersAfterReplace };
  } finally {
    await proc.stop(10_000);
    await cp.stop();
    await app.close();
    await pod.cleanup();
  }
}

void describe('NDS: the name table on the xDS stream, ours and the Go pilot-agent', { timeout: 300_000 }, () => {
  const seen: Partial<Record<'go' | 'ours', Observed>> = {};

  void it('the Go pilot-agent (oracle)', async () => {
    seen.go = await observe('go');
  });

  void it('ours', async () => {
    seen.ours = await observe('ours');
    const o = seen.ours;
    assert.equal(o.readyBefore, 503);
    assert.equal(o.reasonBefore, true);
    assert.equal(o.answerBefore, 'SERVFAIL');
    assert.equal(o.ndsRequestAfterLds, true);
    assert.equal(o.readyAfter, 200);
    assert.deepEqual(o.answers, ['NOERROR A:10.70.0.1', 'NOERROR AAAA:2001:db8::70', 'NOERROR', 'NOERROR A:10.70.0.2']);
    assert.deepEqual(o.answersAfterNack, ['NOERROR A:10.70.0.1']);
    assert.deepEqual(o.answersAfterReplace, ['NOERROR A:10.70.0.3']);
    assert.equal(o.reRequested, true);
    assert.deepEqual(o.answersAfterReconnect, ['NOERROR A:10.70.0.3', 'NOERROR A:10.70.0.3']);
  });

  void it('behave the same: readiness and answers before the table, ACK, NACK, replacement', () => {
    assert.ok(seen.go && seen.ours, 'both agents observed');
    assert.deepEqual(seen.ours, seen.go);
  });
});
