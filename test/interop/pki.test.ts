// The test PKI and JWT issuer produce what istiod's plugged-in CA and JWT_RULE expect.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { createCaPki, createJwtIssuer, issueWorkloadCert } from '../helpers/pki.js';

void describe('test PKI', () => {
  void it('root → intermediate → workload leaf verify, with CA flags and the SPIFFE SAN', () => {
    const pki = createCaPki();
    const root = new X509Certificate(pki.rootCertPem);
    const ca = new X509Certificate(pki.caCertPem);
    assert.ok(root.ca && ca.ca);
    assert.ok(root.verify(root.publicKey) && ca.verify(root.publicKey));
    assert.equal(ca.issuer, root.subject);
    assert.equal(pki.certChainPem, pki.caCertPem + pki.rootCertPem);
    assert.ok(ca.checkPrivateKey(createPrivateKey(pki.caKeyPem)));
    assert.ok(root.checkPrivateKey(createPrivateKey(pki.rootKeyPem)));

    const leaf = issueWorkloadCert(pki, { ns: 'default', sa: 'sleep' });
    const x = new X509Certificate(leaf.certPem);
    assert.equal(x.ca, false);
    assert.ok(x.verify(ca.publicKey));
    assert.ok(!x.verify(root.publicKey));
    assert.equal(x.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep');
    assert.deepEqual(x.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.equal(leaf.chainPem, leaf.certPem + pki.caCertPem);
  });

  void it('mints RS256 tokens with a 4-part sub and an array aud, verifiable with the JWKS', () => {
    const iss = createJwtIssuer({ issuer: 'https://i.test', audience: 'aud-1' });
    const [h, p, s] = iss.mint('ns1', 'sa1', 60).split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString());
    const body = JSON.parse(Buffer.from(p, 'base64url').toString());
    assert.equal(header.alg, 'RS256');
    assert.equal(body.iss, 'https://i.test');
    assert.equal(body.sub, 'system:serviceaccount:ns1:sa1');
    assert.deepEqual(body.aud, ['aud-1']);
    assert.equal(body.exp - body.iat, 60);
    const jwk = iss.jwks.keys[0]!;
    assert.equal(jwk.kid, header.kid);
    assert.equal(jwk.d, undefined, 'public half only');
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    assert.ok(verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url')));
    assert.throws(() => iss.mint('a:b', 'sa'), /colon-free/);
    assert.throws(() => iss.mint('ns', ''), /non-empty/);
  });
});
