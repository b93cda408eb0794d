// Checks of a CreateCertificate response before it is served: pilot-agent's own rule (a chain of one
// element is refused) and ours (the leaf certifies our key and identity, the chain links up to a root, the
// leaf is within its validity). Certificates come from the test control plane's CA, signing CSRs built by
// csr.ts, as istiod would.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { TestCa } from '../../test/controlplane/pki.js';
import { buildCsr } from './csr.js';
import { generateWorkloadKey, type WorkloadKey } from './keys.js';
import { CaResponseError, NOT_BEFORE_SKEW_MS, fingerprint, spiffeUris, validateIssuedChain, type ValidateOptions } from './validate.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const MINUTE = 60_000;

let ca: TestCa;
let otherCa: TestCa;
let rootOnlyCa: TestCa;
let key: WorkloadKey;
let otherKey: WorkloadKey;
let good: string[];

before(async () => {
  ca = new TestCa();
  otherCa = new TestCa();
  rootOnlyCa = new TestCa({ intermediate: false });
  key = await generateWorkloadKey({ kind: 'ec', curve: 'P256' });
  otherKey = await generateWorkloadKey({ kind: 'ec', curve: 'P256' });
  good = ca.signCsr(await buildCsr(key, [ID]), 3600);
});

const opts = (o: Partial<ValidateOptions> = {}): ValidateOptions => ({ privateKey: key.privateKey, spiffeId: ID, trustedRoots: [], nowMs: Date.now(), ...o });

/** Asserts a CaResponseError whose message matches `re`. */
function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CaResponseError, `expected a CaResponseError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

void describe('validateIssuedChain', () => {
  void it('accepts a good [leaf, intermediate, root] chain and describes it', () => {
    assert.equal(good.length, 3);
    const t0 = Date.now();
    const r = validateIssuedChain(good, opts());
    assert.equal(r.chainPem, good.join('')); // each element ends in a newline: concatenated as is
    assert.equal(r.rootPem, good[2]);
    assert.equal(r.spiffeId, ID);
    assert.equal(r.chain.length, 3);
    const leaf = new X509Certificate(good[0]!);
    assert.equal(r.leaf.fingerprint256, leaf.fingerprint256);
    assert.equal(r.serial, leaf.serialNumber);
    assert.equal(r.notAfterMs, Date.parse(leaf.validTo));
    assert.equal(r.notBeforeMs, Date.parse(leaf.validFrom));
    assert.ok(r.notAfterMs > t0 + 3590_000 && r.notAfterMs <= t0 + 3601_000, `${r.notAfterMs - t0}`);
    assert.deepEqual(spiffeUris(r.leaf), [ID]);
    assert.equal(fingerprint(r.leaf), leaf.fingerprint256.replace(/:/g, '').toLowerCase());
  });

  void it('joins elements without a trailing newline with one, as pilot-agent concatCerts', () => {
    const trimmed = good.map((p) => p.trimEnd());
    const r = validateIssuedChain(trimmed, opts());
    assert.equal(r.chainPem, trimmed.join('\n'));
    assert.equal(r.rootPem, trimmed[2]);
  });

  void it("accepts a [leaf, root] chain from a CA without intermediate", async () => {
    const chain = rootOnlyCa.signCsr(await buildCsr(key, [ID]), 3600);
    assert.equal(chain.length, 2);
    assert.equal(validateIssuedChain(chain, opts()).rootPem, rootOnlyCa.rootCertPem);
  });

  void it("rejects a single element, or none ('invalid empty CertChain', pilot-agent's rule)", () => {
    rejects(() => validateIssuedChain([good[0]!], opts()), /^invalid empty CertChain$/);
    rejects(() => validateIssuedChain([], opts()), /^invalid empty CertChain$/);
    // even when that one element holds the whole chain
    rejects(() => validateIssuedChain([good.join('')], opts()), /^invalid empty CertChain$/);
  });

  void it('rejects garbage: an element that is not PEM, or a PEM certificate that does not parse', () => {
    rejects(() => validateIssuedChain([good[0]!, 'not a certificate', good[2]!], opts()), /cert_chain\[1\] is not a PEM certificate/);
    const notDer = '-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n';
    rejects(() => validateIssuedChain([notDer, good[1]!, good[2]!], opts()), /cert_chain\[0\] does not parse/);
    rejects(() => validateIssuedChain(['', good[1]!], opts()), /cert_chain\[0\] is not a PEM certificate/);
  });

  void it('rejects a leaf for another key', () => {
    rejects(() => validateIssuedChain(good, opts({ privateKey: otherKey.privateKey })), /not for the key in our CSR/);
  });

  void it('rejects a leaf for another namespace or service account, naming both identities', async () => {
    for (const other of ['spiffe://cluster.local/ns/other/sa/sleep', 'spiffe://cluster.local/ns/default/sa/admin']) {
      const chain = ca.signCsr(await buildCsr(key, [other]), 3600);
      rejects(() => validateIssuedChain(chain, opts()), new RegExp(`for ${other.replace(/[/.]/g, '\\$&')}, not ${ID.replace(/[/.]/g, '\\$&')}`));
    }
  });

  void it('rejects a leaf with no SPIFFE identity', async () => {
    const chain = ca.signCsr(await buildCsr(key, ['spiffe://cluster.local/ns/default/sa/sleep', 'extra.dns']), 3600);
    // (sanity: with the right URI present, a DNS SAN beside it is fine)
    assert.equal(validateIssuedChain(chain, opts()).spiffeId, ID);
    const serving = ca.issueServing(['istiod.istio-system.svc']);
    rejects(() => validateIssuedChain([serving.certPem, ...ca.caChainPem], opts({ privateKey: serving.key })), /for no SPIFFE identity, not spiffe:/);
  });

  void it('accepts another trust domain with the same namespace and service account, and reports the issued identity', async () => {
    const issuedId = 'spiffe://other.td/ns/default/sa/sleep';
    const chain = ca.signCsr(await buildCsr(key, [issuedId]), 3600);
    assert.equal(validateIssuedChain(chain, opts()).spiffeId, issuedId);
  });

  void it('rejects a broken link: the intermediate of another CA, or the chain out of order', async () => {
    rejects(() => validateIssuedChain([good[0]!, otherCa.caChainPem[0]!, otherCa.caChainPem[1]!], opts()), /cert_chain is broken: certificate 0 .* is not signed by certificate 1/);
    rejects(() => validateIssuedChain([good[0]!, good[1]!, otherCa.rootCertPem], opts()), /cert_chain is broken: certificate 1 \(.*Test Intermediate CA.*\) is not signed by certificate 2/);
    rejects(() => validateIssuedChain([good[0]!, good[2]!, good[1]!], opts()), /cert_chain is broken: certificate 0/);
  });

  void it('a chain without its root: accepted only when a trusted root signed the last certificate', () => {
    const noRoot = [good[0]!, good[1]!];
    rejects(() => validateIssuedChain(noRoot, opts()), /does not end at a root certificate, and no trusted root signed its last certificate/);
    rejects(() => validateIssuedChain(noRoot, opts({ trustedRoots: [otherCa.root.x509] })), /no trusted root signed/);
    const r = validateIssuedChain(noRoot, opts({ trustedRoots: [otherCa.root.x509, ca.root.x509] }));
    assert.equal(r.rootPem, good[1]); // pilot-agent's rule: the last element stands for the root
  });

  void it('rejects an expired leaf', () => {
    const notAfter = Date.parse(new X509Certificate(good[0]!).validTo);
    rejects(() => validateIssuedChain(good, opts({ nowMs: notAfter + 1000 })), new RegExp(`expired at ${new Date(notAfter).toISOString().replace(/\./g, '\\.')}`));
    rejects(() => validateIssuedChain(good, opts({ nowMs: notAfter })), /expired at/);
    assert.ok(validateIssuedChain(good, opts({ nowMs: notAfter - 1000 })));
  });

  void it(`rejects a leaf not yet valid, beyond ${NOT_BEFORE_SKEW_MS / MINUTE} minutes of clock skew`, () => {
    const notBefore = Date.parse(new X509Certificate(good[0]!).validFrom);
    rejects(() => validateIssuedChain(good, opts({ nowMs: notBefore - NOT_BEFORE_SKEW_MS - 1000 })), new RegExp(`not valid before ${new Date(notBefore).toISOString().replace(/\./g, '\\.')}`));
    // within the tolerated skew: accepted
    assert.ok(validateIssuedChain(good, opts({ nowMs: notBefore - NOT_BEFORE_SKEW_MS + 1000 })));
  });
});
