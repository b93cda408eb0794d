// Certificate rotation under a steady request stream, with the real istiod as the CA: two pods run by our
// agent (mesh on one machine, STRICT mTLS), SECRET_TTL=8s so each certificate is renewed about every 4 s
// (SECRET_GRACE_PERIOD_RATIO 0.5). Requests go both ways, one after another, each on a new connection (so
// each uses the newest certificate) for as long as it takes both pods to go through at least 5 rotations.
// Checked: no request fails; every certificate the agent reports (/debug/status) shows up in Envoy's
// /certs; istiod issued them all.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { poll, startMesh, type Mesh, type MeshPod } from '../helpers/mesh.js';

const TTL = '8s';
const ROTATIONS = 5;

interface Seen {
  /** Serials of the leaf Envoy holds (admin /certs), in the order first seen. */
  envoy: string[];
  /** Serials the agent reports it installed (/debug/status identity.certificate.serial). */
  agent: string[];
}

async function sample(p: MeshPod, seen: Seen): Promise<void> {
  try {
    const certs = JSON.parse((await p.admin('/certs')).body) as { certificates: Array<{ cert_chain: Array<{ serial_number: string }> }> };
    for (const c of certs.certificates) {
      const s = c.cert_chain[0]?.serial_number.toLowerCase();
      if (s && !seen.envoy.includes(s)) seen.envoy.push(s);
    }
    const st = JSON.parse((await p.status('/debug/status')).body) as { identity?: { certificate?: { serial: string } } };
    const s = st.identity?.certificate?.serial.toLowerCase();
    if (s && !seen.agent.includes(s)) seen.agent.push(s);
  } catch {
    // a sample lost to a busy moment; the next one catches up
  }
}

void describe('certificate rotation under load (our agent, real istiod CA, STRICT mTLS)', { timeout: 240_000 }, () => {
  let mesh: Mesh | undefined;

  before(async () => {
    const env = { SECRET_TTL: TTL, SECRET_GRACE_PERIOD_RATIO: '0.5' };
    mesh = await startMesh({ mtls: 'STRICT', pods: [{ name: 'rot-a', agent: 'ours', env }, { name: 'rot-b', agent: 'ours', env }] });
  }, { timeout: 120_000 });

  after(async () => {
    await mesh?.stop();
  }, { timeout: 60_000 });

  void it(`${ROTATIONS}+ rotations on each side, zero failed requests, every new serial in Envoy`, async () => {
    const m = mesh!;
    const a = m.pod('rot-a');
    const b = m.pod('rot-b');
    await Promise.all([a.ready(60_000), b.ready(60_000)]);
    const seen = new Map<MeshPod, Seen>([[a, { envoy: [], agent: [] }], [b, { envoy: [], agent: [] }]]);
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const [from, to] = i % 2 ? [b, a] : [a, b];
        try {
          const r = await m.request(from, to, { path: `/r${i}`, timeoutMs: 5000 });
          if (r.status === 200 && r.body.includes(`URI=${from.spiffeId}`)) ok++;
          else failures.push(`${from.name}->${to.name} #${i}: ${r.status} ${r.body.slice(0, 200)}`);
        } catch (e) {
          failures.push(`${from.name}->${to.name} #${i}: ${(e as Error).message}`);
        }
      }
    })();
    const sampler = (async () => {
      while (!stop) {
        await Promise.all([sample(a, seen.get(a)!), sample(b, seen.get(b)!)]);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    try {
      await poll(`${ROTATIONS} rotations in both pods`, 120_000, async () => ([...seen.values()].every((s) => s.agent.length > ROTATIONS) ? true : undefined), () => `${JSON.stringify([...seen.values()])}\n${m.diag()}`, 500);
      // the last certificate the agent installed must reach Envoy too
      await poll('the newest certificates in Envoy', 10_000, async () => {
        await Promise.all([sample(a, seen.get(a)!), sample(b, seen.get(b)!)]);
        return [...seen.values()].every((s) => s.agent.every((x) => s.envoy.includes(x))) ? true : undefined;
      }, () => JSON.stringify([...seen.values()]));
    } finally {
      stop = true;
      await load;
      await sampler;
    }
    assert.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} requests failed`);
    assert.ok(ok >= 20, `a steady stream: ${ok} requests`);
    for (const [p, s] of seen) {
      assert.ok(s.agent.length > ROTATIONS, `${p.name}: ${s.agent.length} certificates`);
      for (const serial of s.agent) assert.ok(s.envoy.includes(serial), `${p.name}: serial ${serial} was in Envoy's /certs`);
      const metrics = (await p.status('/stats/prometheus')).body;
      const issued = Number(/^istio_agent_num_outgoing_requests\{request_type="csr"\} (\d+)/m.exec(metrics)?.[1]);
      assert.ok(issued >= s.agent.length, `${p.name}: ${issued} CSRs for ${s.agent.length} certificates`);
      assert.match(metrics, /^istio_agent_cert_expiry_seconds\{resource_name="default"\} [\d.]+$/m);
    }
  });
});
