// Root rotation without restarts, under a steady request stream between two pods (each request a new
// mTLS handshake, so every handshake checks both certificates against both trust bundles):
//   1. the mesh distributes the new root next to the old one (istio-ca-root-cert, our
//      ./var/run/secrets/istio/root-cert.pem): each agent pushes a ROOTCA holding both, at once;
//   2. pod A's CA moves to the new root: A's next certificate chains to it while B's still chains to the
//      old one, and they keep talking (each trusts both roots);
//   3. pod B's CA moves too;
//   4. the old root leaves the ConfigMap: once no certificate of the old root can still be in use (one
//      certificate lifetime), each trust bundle holds the new root only.
// No Envoy restarts (same pid and epoch), no failed request.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestCa } from '../controlplane/pki.js';
import { eventually } from '../helpers/http.js';
import { startPair, type Pair, type Side } from './pair.js';

void describe('root rotation without restarts (two pods, real Envoy, in-repo CA)', { timeout: 150_000 }, () => {
  let pair: Pair;
  before(async () => {
    pair = await startPair({ env: { SECRET_TTL: '8s', SECRET_GRACE_PERIOD_RATIO: '0.5', SECRET_GRACE_PERIOD_RATIO_JITTER: '0' } });
  });
  after(() => pair?.close());

  void it('moves both pods to a new root with both roots trusted in between; no failed request, no Envoy restart', async () => {
    const { a, b } = pair;
    const oldRoot = pair.ca.root.x509.serialNumber.toLowerCase();
    const ca2 = new TestCa();
    const newRoot = ca2.root.x509.serialNumber.toLowerCase();
    const envoys = await Promise.all([pair.envoy(a), pair.envoy(b)]);
    const load = pair.load();
    /** The root the leaf Envoy holds chains to, seen through the agent's status and Envoy's /certs. */
    const leafRoot = async (s: Side): Promise<string> => {
      const st = await pair.status(s);
      const serial = st.identity.certificate.serial.toLowerCase();
      const certs = await pair.certs(s);
      if (!certs.leaves.includes(serial)) return 'pending';
      const issued = [...(s.ca?.csrs ?? [])].reverse().find((c) => c.serial?.toLowerCase() === serial);
      return issued?.chain ? issued.chain.at(-1) === ca2.rootCertPem ? newRoot : oldRoot : 'unknown';
    };
    const trusts = async (s: Side): Promise<string[]> => (await pair.certs(s)).roots.sort();
    try {
      // 1. both roots in the ConfigMap: each Envoy trusts both, pushed without a restart
      for (const s of [a, b]) await pair.writeMeshRoots(s, pair.ca.rootCertPem + ca2.rootCertPem);
      for (const s of [a, b]) await eventually(async () => ((await trusts(s)).length === 2 ? true : undefined), 10_000, `${s.name} trusts both roots`);
      assert.deepEqual(await trusts(a), [oldRoot, newRoot].sort());
      // 2. A's CA signs with the new root; A moves, B stays on the old root
      await pair.stopCa(a);
      await pair.startCa(a, ca2);
      await eventually(async () => ((await leafRoot(a)) === newRoot ? true : undefined), 20_000, 'A on the new root');
      assert.equal(await leafRoot(b), oldRoot, 'B still on the old root');
      const mixedFrom = load.ok();
      await sleep(2000);
      assert.ok(load.ok() > mixedFrom, 'requests between a pod on the new root and a pod on the old root succeed');
      // 3. B moves too
      await pair.stopCa(b);
      await pair.startCa(b, ca2);
      await eventually(async () => ((await leafRoot(b)) === newRoot ? true : undefined), 20_000, 'B on the new root');
      // 4. the old root leaves the ConfigMap; after one certificate lifetime it is no longer trusted
      for (const s of [a, b]) await pair.writeMeshRoots(s, ca2.rootCertPem);
      for (const s of [a, b]) await eventually(async () => ((await trusts(s)).join() === newRoot ? true : undefined), 30_000, `${s.name} trusts the new root only`);
      const st = await pair.status(a);
      assert.deepEqual(st.identity.roots.length, 1);
      assert.match(a.agent.output(), /Root cert has changed, start rotating root cert; the previous root stays trusted until/);
    } finally {
      await load.stop();
    }
    const { ok, failures } = await load.stop();
    assert.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} requests failed\n${pair.diag()}`);
    assert.ok(ok > 100, `a steady stream: ${ok} requests`);
    assert.deepEqual(await Promise.all([pair.envoy(a), pair.envoy(b)]), envoys, 'no Envoy restart');
  });
});
