// PEM handling with pilot-agent's byte-level conventions: concatCerts (Istio's TestConcatCerts),
// mergeTrustBundles (mergeConfigTrustBundle + AppendCertByte: sorted, deduplicated, '\n'-joined, no
// trailing newline) and parseRootCerts (ParseRootCerts as used for root files: TestSomeInvalidCerts).
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { bitString, explicit, oid, pem, seq, set, time, tlv, uint, utf8 } from '../../test/controlplane/der.js';
import { concatCerts, derToPem, mergeTrustBundles, parseRootCerts, pemBlockDer, pemCertBlocks } from './pem.js';

/** A self-signed ECDSA P-256 certificate (DER); `serial` is the raw INTEGER content (negative when its high bit is set). */
function selfSigned(cn: string, serial: Buffer = Buffer.concat([Buffer.from([0x01]), randomBytes(8)])): Buffer {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const name = seq(set(seq(oid('2.5.4.3'), utf8(cn))));
  const alg = seq(oid('1.2.840.10045.4.3.2'));
  const now = Date.now();
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))),
    tlv(0x02, serial),
    alg,
    name,
    seq(time(new Date(now - 60_000)), time(new Date(now + 86_400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  return seq(tbs, alg, bitString(sign('sha256', tbs, privateKey)));
}

/** PEM with the base64 body wrapped at `width` columns (64 is Go's and OpenSSL's). */
function wrapped(der: Buffer, width: number, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(new RegExp(`.{${width}}`, 'g'), '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

const A = pem('CERTIFICATE', selfSigned('a'));
const B = pem('CERTIFICATE', selfSigned('b'));
const C = pem('CERTIFICATE', selfSigned('c'));
const trimmed = (s: string): string => s.replace(/^\n+|\n+$/g, '');

void describe('concatCerts (Istio TestConcatCerts)', () => {
  void it('no certs gives the empty string', () => assert.equal(concatCerts([]), ''));
  void it('a single cert is returned verbatim, no newline added', () => assert.equal(concatCerts(['a']), 'a'));
  void it('multiple certs are joined with a newline', () => assert.equal(concatCerts(['a', 'b']), 'a\nb'));
  void it('an element already ending in a newline gets no second one', () => assert.equal(concatCerts(['a\n', 'b']), 'a\nb'));
  void it('nothing is appended after the last element, whether or not it ends in a newline', () => {
    assert.equal(concatCerts(['a', 'b\n']), 'a\nb\n');
    assert.equal(concatCerts([A, B, C]), A + B + C);
    assert.equal(concatCerts([trimmed(A), trimmed(B)]), `${trimmed(A)}\n${trimmed(B)}`);
  });
});

void describe('mergeTrustBundles (mergeConfigTrustBundle + AppendCertByte)', () => {
  void it('one bundle: its certificates sorted by PEM text, joined by \\n, no trailing newline', () => {
    const merged = mergeTrustBundles([C + A + B]);
    const expected = [trimmed(A), trimmed(B), trimmed(C)].sort().join('\n');
    assert.equal(merged, expected);
    assert.ok(!merged.endsWith('\n'));
    assert.equal(pemCertBlocks(merged).length, 3);
  });

  void it('the union of several bundles, each certificate once', () => {
    const merged = mergeTrustBundles([A + B, B + C, A]);
    assert.equal(merged, [trimmed(A), trimmed(B), trimmed(C)].sort().join('\n'));
  });

  void it('a single root (the CA response case) loses its trailing newline, as TrimRight in TestProxyConfigAnchors', () => {
    assert.equal(mergeTrustBundles([A]), trimmed(A));
    assert.equal(mergeTrustBundles(['', A, '']), trimmed(A));
  });

  void it('the same certificate with different line wrapping (ConfigMap vs CA response) appears once', () => {
    const der = pemBlockDer(A);
    const wide = wrapped(der, 76);
    const crlf = A.replace(/\n/g, '\r\n');
    assert.notEqual(wide, A);
    const merged = mergeTrustBundles([A, wide + B, crlf]);
    const blocks = pemCertBlocks(merged);
    assert.equal(blocks.length, 2, merged);
    const ders = blocks.map((b) => pemBlockDer(b).toString('base64')).sort();
    assert.deepEqual(ders, [der.toString('base64'), pemBlockDer(B).toString('base64')].sort());
    // the result is still sorted by text, '\n'-joined
    assert.equal(merged, [...blocks].sort().join('\n'));
  });

  void it('text around and between blocks is dropped; blocks whose body is not base64 are skipped', () => {
    const bad = '-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n';
    const merged = mergeTrustBundles([`# comment\n${A}\nsome text\n${bad}${B}trailer`]);
    assert.equal(merged, [trimmed(A), trimmed(B)].sort().join('\n'));
  });

  void it('nothing in, nothing out', () => {
    assert.equal(mergeTrustBundles([]), '');
    assert.equal(mergeTrustBundles(['', 'no pem here']), '');
  });
});

void describe('parseRootCerts (ParseRootCerts: TestSomeInvalidCerts)', () => {
  void it('keeps every valid block, re-encoded as 64-column PEM, in input order', () => {
    const derA = pemBlockDer(A);
    const input = `\n\n  ${wrapped(derA, 76)}${B}\n`;
    const r = parseRootCerts(input, '/etc/roots.pem');
    assert.equal(r.certs.length, 2);
    assert.deepEqual(r.errors, []);
    assert.equal(r.pem, derToPem(derA) + B);
    assert.equal(derToPem(derA), A);
  });

  void it('a block that is valid PEM but not a certificate is skipped with its error recorded, the rest kept', () => {
    const notDer = pem('CERTIFICATE', Buffer.from('0403414243', 'hex')); // an OCTET STRING, not a certificate
    const r = parseRootCerts(`# first\n${A}# broken\n${notDer}# last\n${B}`, 'bundle.pem');
    assert.equal(r.certs.length, 2);
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!, /certificate 2/);
    assert.equal(r.pem, A + B);
    assert.deepEqual(
      r.certs.map((c) => c.fingerprint256),
      [new X509Certificate(A).fingerprint256, new X509Certificate(B).fingerprint256],
    );
  });

  void it('a certificate with a negative serial is skipped, as Go x509.ParseCertificate rejects it ("negative serial": 3 of 5 kept)', () => {
    // Istio's root-ca-bundle-with-graceful-failures.pem: negative serial, valid, valid, not DER, valid
    const negative = pem('CERTIFICATE', selfSigned('negative serial', Buffer.from([0xff, 0x01])));
    const notDer = pem('CERTIFICATE', Buffer.from('3003020101', 'hex'));
    const r = parseRootCerts(`# negative serial\n${negative}\n${A}\n${B}\n# not DER\n${notDer}\n${C}`, 'bundle.pem');
    assert.equal(r.pem, A + B + C, `kept: ${r.certs.map((c) => c.subject).join(' | ')}`);
    assert.equal(r.certs.length, 3);
    assert.equal(r.errors.length, 2);
  });

  void it("trailing spaces or tabs after the BEGIN and END lines are tolerated, as Go's pem.Decode trims them", () => {
    const spaced = A.replace('-----BEGIN CERTIFICATE-----\n', '-----BEGIN CERTIFICATE----- \t \n').replace('-----END CERTIFICATE-----\n', '-----END CERTIFICATE-----  \n');
    assert.notEqual(spaced, A);
    const r = parseRootCerts(spaced + B, 'spaced.pem');
    assert.equal(r.pem, A + B);
    assert.equal(pemCertBlocks(spaced).length, 1);
    const merged = pemCertBlocks(mergeTrustBundles([spaced, A]));
    assert.equal(merged.length, 1);
    assert.deepEqual(pemBlockDer(merged[0]!), pemBlockDer(A));
  });

  void it('a non-PEM tail ("invalid pem") keeps the valid certificates before it', () => {
    const broken = '-----BEGIN CERTIFICATE-----\nMIIB-broken-\n-----END CERTIFICATE-----\n';
    const r = parseRootCerts(`${A}${broken}`, 'invalid.pem');
    assert.equal(r.certs.length, 1);
    assert.equal(r.pem, A);
    const r2 = parseRootCerts(`${A}this is not PEM at all`, 'tail.pem');
    assert.equal(r2.pem, A);
  });

  void it('no valid block is an error naming the source ("empty file")', () => {
    assert.throws(() => parseRootCerts('', '/var/run/empty.pem'), (e: Error) => /failed to parse root certs from file \/var\/run\/empty\.pem/.test(e.message));
    assert.throws(() => parseRootCerts('just text\n', 'text.pem'), /failed to parse root certs from file text\.pem/);
    const notDer = pem('CERTIFICATE', Buffer.from('0403414243', 'hex'));
    assert.throws(() => parseRootCerts(notDer, 'only-bad.pem'), (e: Error) => e.message.includes('only-bad.pem') && e.message.includes('certificate 1'));
  });

  void it("other PEM types are not certificates: a key file has no root", () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => parseRootCerts(keyPem, 'key.pem'), /key\.pem/);
    assert.equal(parseRootCerts(keyPem + A, 'mixed.pem').pem, A);
  });
});

void describe('derToPem / pemBlockDer', () => {
  void it("derToPem is Go's pem.EncodeToMemory: 64 columns, trailing newline; pemBlockDer inverts it", () => {
    const der = selfSigned('x');
    const text = derToPem(der);
    const lines = text.split('\n');
    assert.equal(lines[0], '-----BEGIN CERTIFICATE-----');
    assert.equal(lines.at(-1), '');
    assert.equal(lines.at(-2), '-----END CERTIFICATE-----');
    for (const l of lines.slice(1, -3)) assert.equal(l.length, 64);
    assert.ok(lines.at(-3)!.length <= 64 && lines.at(-3)!.length > 0);
    assert.deepEqual(pemBlockDer(text), der);
    assert.equal(text, pem('CERTIFICATE', der));
  });

  void it('pemBlockDer rejects a body that is not base64, or empty', () => {
    assert.throws(() => pemBlockDer('-----BEGIN CERTIFICATE-----\nab$c\n-----END CERTIFICATE-----'), /not base64/);
    assert.throws(() => pemBlockDer('-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----'), /not base64/);
  });
});
