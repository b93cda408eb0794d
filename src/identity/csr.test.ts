// The workload CSR, key encodings and the key pool, against what pilot-agent produces
// (security/pkg/pki/util GenCSRTemplate + BuildSubjectAltNameExtension, Go's x509.CreateCertificateRequest,
// crypto.go's PEM types). The CSR is taken apart with a DER reader and checked by OpenSSL and node:crypto.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { children, decodeOid, readTlv, unpem, type Tlv } from '../../test/controlplane/der.js';
import { buildCsr } from './csr.js';
import { spiffeId } from './options.js';
import { KeyPool, describeKeySpec, generateWorkloadKey, privateKeyPem, type KeySpec, type WorkloadKey } from './keys.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const OID = {
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
  p256: '1.2.840.10045.3.1.7',
  p384: '1.3.132.0.34',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
} as const;

/** `O=""` and nothing else: one RDN with an empty PrintableString, as Go marshals pkix.Name{Organization: [""]}. */
const GO_EMPTY_ORG_SUBJECT = Buffer.from('300b3109300706035504' + '0a' + '1300', 'hex');

interface CsrParts {
  readonly der: Buffer;
  readonly info: Tlv;
  readonly version: number;
  readonly subject: Buffer;
  readonly spki: Buffer;
  readonly keyAlgOid: string;
  readonly curveOid: string | undefined;
  readonly extensions: Array<{ oid: string; critical: boolean; value: Buffer; raw: Buffer }>;
  readonly attributeOids: string[];
  readonly sigAlg: Buffer;
  readonly sigAlgOid: string;
  readonly signature: Buffer;
}

function parseCsr(pem: string): CsrParts {
  const der = unpem(pem, 'CERTIFICATE REQUEST');
  const top = readTlv(der);
  assert.equal(top.next, der.length, 'no trailing bytes after the CSR');
  const [info, sigAlg, sig] = children(top);
  assert.ok(info && sigAlg && sig);
  const [version, subject, spki, attrs, ...rest] = children(info);
  assert.ok(version && subject && spki && attrs);
  assert.equal(rest.length, 0);
  const [keyAlg] = children(spki);
  const [keyAlgOidTlv, curve] = children(keyAlg!);
  const extensions: CsrParts['extensions'] = [];
  const attributeOids: string[] = [];
  assert.equal(attrs.tag, 0xa0, 'attributes [0]');
  for (const attr of children(attrs)) {
    const [type, values] = children(attr);
    attributeOids.push(decodeOid(type!.content));
    if (decodeOid(type!.content) !== OID.extensionRequest) continue;
    for (const exts of children(values!)) {
      for (const ext of children(exts)) {
        const parts = children(ext);
        const critical = parts.length === 3 && parts[1]!.tag === 0x01 && parts[1]!.content[0] === 0xff;
        extensions.push({ oid: decodeOid(parts[0]!.content), critical, value: Buffer.from(parts.at(-1)!.content), raw: Buffer.from(ext.raw) });
      }
    }
  }
  return {
    der,
    info,
    version: version.content[0]!,
    subject: Buffer.from(subject.raw),
    spki: Buffer.from(spki.raw),
    keyAlgOid: decodeOid(keyAlgOidTlv!.content),
    curveOid: curve && curve.tag === 0x06 ? decodeOid(curve.content) : undefined,
    extensions,
    attributeOids,
    sigAlg: Buffer.from(sigAlg.raw),
    sigAlgOid: decodeOid(children(sigAlg)[0]!.content),
    signature: Buffer.from(sig.content.subarray(1)),
  };
}

/** The GeneralNames of a SAN extension value: [tag, bytes]. */
function generalNames(value: Buffer): Array<[number, Buffer]> {
  return children(readTlv(value)).map((g) => [g.tag, Buffer.from(g.content)]);
}

function opensslVerify(pem: string): { ok: boolean; output: string } {
  const r = spawnSync('openssl', ['req', '-verify', '-noout'], { input: pem, encoding: 'utf8' });
  return { ok: r.status === 0 && /verify OK/.test(r.stdout + r.stderr), output: r.stdout + r.stderr };
}

const specs: Array<{ name: string; spec: KeySpec; keyAlg: string; curve?: string; sigAlg: string; hash: string; bits: number; sigAlgDer: string }> = [
  { name: 'RSA 2048', spec: { kind: 'rsa', bits: 2048 }, keyAlg: OID.rsaEncryption, sigAlg: OID.sha256WithRSA, hash: 'sha256', bits: 2048, sigAlgDer: '300d06092a864886f70d01010b0500' },
  { name: 'RSA 3072', spec: { kind: 'rsa', bits: 3072 }, keyAlg: OID.rsaEncryption, sigAlg: OID.sha256WithRSA, hash: 'sha256', bits: 3072, sigAlgDer: '300d06092a864886f70d01010b0500' },
  { name: 'ECDSA P-256', spec: { kind: 'ec', curve: 'P256' }, keyAlg: OID.ecPublicKey, curve: OID.p256, sigAlg: OID.ecdsaWithSha256, hash: 'sha256', bits: 256, sigAlgDer: '300a06082a8648ce3d040302' },
  { name: 'ECDSA P-384', spec: { kind: 'ec', curve: 'P384' }, keyAlg: OID.ecPublicKey, curve: OID.p384, sigAlg: OID.ecdsaWithSha384, hash: 'sha384', bits: 384, sigAlgDer: '300a06082a8648ce3d040303' },
];

const keyCache = new Map<string, Promise<WorkloadKey>>();
const keyFor = (spec: KeySpec): Promise<WorkloadKey> => {
  const k = JSON.stringify(spec);
  if (!keyCache.has(k)) keyCache.set(k, generateWorkloadKey(spec));
  return keyCache.get(k)!;
};

function keyBits(k: KeyObject): number {
  const d = k.asymmetricKeyDetails!;
  if (d.modulusLength) return d.modulusLength;
  return d.namedCurve === 'secp384r1' ? 384 : d.namedCurve === 'prime256v1' ? 256 : 0;
}

void describe('buildCsr: the workload CSR as pilot-agent builds it', () => {
  for (const s of specs) {
    void describe(s.name, () => {
      void it('verifies (OpenSSL req -verify and node:crypto) and carries our public key', async () => {
        const key = await keyFor(s.spec);
        const pem = await buildCsr(key, [ID]);
        assert.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n([A-Za-z0-9+/=]{64}\n)*[A-Za-z0-9+/=]{1,64}\n-----END CERTIFICATE REQUEST-----\n$/);
        const v = opensslVerify(pem);
        assert.ok(v.ok, v.output);
        const p = parseCsr(pem);
        assert.ok(verify(s.hash, p.info.raw, createPublicKey({ key: p.spki, format: 'der', type: 'spki' }), p.signature), 'signature over CertificationRequestInfo');
        assert.deepEqual(p.spki, key.publicKey.export({ type: 'spki', format: 'der' }));
        assert.equal(keyBits(createPublicKey({ key: p.spki, format: 'der', type: 'spki' })), s.bits);
        // a tampered request does not verify (the check above is not vacuous)
        const tampered = Buffer.from(p.der);
        const at = tampered.indexOf(Buffer.from(ID));
        const i = at + ID.length - 1;
        tampered.writeUInt8(tampered[i]! ^ 1, i);
        const tamperedPem = `-----BEGIN CERTIFICATE REQUEST-----\n${tampered.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE REQUEST-----\n`;
        assert.equal(opensslVerify(tamperedPem).ok, false);
      });

      void it('subject: one empty O, no CN; version 0; key and signature algorithms as Go picks them', async () => {
        const p = parseCsr(await buildCsr(await keyFor(s.spec), [ID]));
        assert.equal(p.version, 0);
        assert.equal(p.subject.toString('hex'), GO_EMPTY_ORG_SUBJECT.toString('hex'));
        assert.ok(!p.subject.includes(Buffer.from('0603550403', 'hex')), 'no commonName');
        assert.equal(p.keyAlgOid, s.keyAlg);
        assert.equal(p.curveOid, s.curve);
        assert.equal(p.sigAlgOid, s.sigAlg);
        // RSA: parameters NULL; ECDSA: parameters absent (Go's signatureAlgorithmDetails)
        assert.equal(p.sigAlg.toString('hex'), s.sigAlgDer);
      });

      void it('exactly one extension: a critical subjectAltName holding the SPIFFE URI', async () => {
        const p = parseCsr(await buildCsr(await keyFor(s.spec), [ID]));
        assert.deepEqual(p.attributeOids, [OID.extensionRequest]);
        assert.equal(p.extensions.length, 1);
        const [san] = p.extensions;
        assert.equal(san!.oid, OID.subjectAltName);
        assert.equal(san!.critical, true);
        assert.deepEqual(generalNames(san!.value), [[0x86, Buffer.from(ID)]]);
        // byte for byte what Go writes: SEQUENCE { OID, BOOLEAN TRUE, OCTET STRING { SEQUENCE { [6] uri } } }
        const uri = Buffer.from(ID);
        const gn = Buffer.concat([Buffer.from([0x86, uri.length]), uri]);
        const names = Buffer.concat([Buffer.from([0x30, gn.length]), gn]);
        const octets = Buffer.concat([Buffer.from([0x04, names.length]), names]);
        const body = Buffer.concat([Buffer.from('0603551d110101ff', 'hex'), octets]);
        assert.equal(san!.raw.toString('hex'), Buffer.concat([Buffer.from([0x30, body.length]), body]).toString('hex'));
      });
    });
  }

  void it('hosts: IP addresses as tag 7 (IPv4 and IPv4-mapped IPv6 in 4 bytes), spiffe:// as tag 6, the rest DNS (tag 2), in order', async () => {
    const key = await keyFor({ kind: 'ec', curve: 'P256' });
    const hosts = ['10.1.2.3', '2001:db8::1', '::ffff:10.0.0.1', '::ffff:a00:2', '::1', '::', 'fe80::1:2:3:4', '::1.2.3.4', 'istiod.istio-system.svc', ID, '1.2.3.4.nip.io'];
    const pem = await buildCsr(key, hosts);
    assert.ok(opensslVerify(pem).ok);
    const p = parseCsr(pem);
    assert.equal(p.extensions.length, 1);
    assert.equal(p.extensions[0]!.critical, true);
    const hex = (s: string): Buffer => Buffer.from(s.replace(/ /g, ''), 'hex');
    assert.deepEqual(generalNames(p.extensions[0]!.value), [
      [0x87, hex('0a010203')],
      [0x87, hex('20010db8 00000000 00000000 00000001')],
      [0x87, hex('0a000001')],
      [0x87, hex('0a000002')],
      [0x87, hex('00000000 00000000 00000000 00000001')],
      [0x87, Buffer.alloc(16)],
      [0x87, hex('fe800000 00000000 00010002 00030004')],
      // IPv4-compatible (not mapped): Go's Is4In6 is false, 16 bytes
      [0x87, hex('00000000 00000000 00000000 01020304')],
      [0x82, Buffer.from('istiod.istio-system.svc')],
      [0x86, Buffer.from(ID)],
      [0x82, Buffer.from('1.2.3.4.nip.io')],
    ]);
    // OpenSSL reads them back as the same addresses
    const text = execFileSync('openssl', ['req', '-noout', '-text'], { input: pem, encoding: 'utf8' });
    assert.match(text, /IP Address:10\.1\.2\.3, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:10\.0\.0\.1, IP Address:10\.0\.0\.2,/);
  });

  void it('no hosts: no extension request at all', async () => {
    const pem = await buildCsr(await keyFor({ kind: 'ec', curve: 'P256' }), []);
    assert.ok(opensslVerify(pem).ok);
    const p = parseCsr(pem);
    assert.deepEqual(p.attributeOids, []);
    assert.equal(p.extensions.length, 0);
  });

  void it('a fresh CSR for each call over the same key has the same content (only ECDSA signatures vary)', async () => {
    const key = await keyFor({ kind: 'rsa', bits: 2048 });
    const [a, b] = [parseCsr(await buildCsr(key, [ID])), parseCsr(await buildCsr(key, [ID]))];
    assert.deepEqual(a.info.raw, b.info.raw);
    assert.deepEqual(a.der, b.der); // PKCS#1 v1.5 signatures are deterministic
  });

  void it('spiffeId is spiffe://<trust domain>/ns/<namespace>/sa/<service account>, verbatim (no sanitising)', () => {
    assert.equal(spiffeId('cluster.local', 'default', 'sleep'), ID);
    assert.equal(spiffeId('td.example', 'ns-1', 'sa@x'), 'spiffe://td.example/ns/ns-1/sa/sa@x');
    assert.equal(spiffeId('cluster.local', '', ''), 'spiffe://cluster.local/ns//sa/');
  });
});

void describe('privateKeyPem: the key encodings pilot-agent writes', () => {
  const firstLine = (pem: string): string => pem.split('\n')[0]!;
  const cases: Array<{ spec: KeySpec; pkcs8: boolean; label: string }> = [
    { spec: { kind: 'rsa', bits: 2048 }, pkcs8: false, label: 'RSA PRIVATE KEY' },
    { spec: { kind: 'rsa', bits: 2048 }, pkcs8: true, label: 'PRIVATE KEY' },
    { spec: { kind: 'ec', curve: 'P256' }, pkcs8: false, label: 'EC PRIVATE KEY' },
    { spec: { kind: 'ec', curve: 'P384' }, pkcs8: false, label: 'EC PRIVATE KEY' },
    { spec: { kind: 'ec', curve: 'P256' }, pkcs8: true, label: 'PRIVATE KEY' },
    { spec: { kind: 'ec', curve: 'P384' }, pkcs8: true, label: 'PRIVATE KEY' },
  ];
  for (const c of cases) {
    void it(`${describeKeySpec(c.spec)}, PKCS8_KEY=${c.pkcs8}: ${c.label}, and it is our key`, async () => {
      const key = await keyFor(c.spec);
      const pem = privateKeyPem(key, c.pkcs8);
      assert.equal(firstLine(pem), `-----BEGIN ${c.label}-----`);
      assert.ok(pem.endsWith(`-----END ${c.label}-----\n`));
      const der = unpem(pem, c.label);
      const parts = children(readTlv(der));
      if (c.label === 'EC PRIVATE KEY') {
        // SEC 1 ECPrivateKey as Go's MarshalECPrivateKey: version 1, key, [0] named curve, [1] public key
        assert.deepEqual(parts.map((t) => t.tag), [0x02, 0x04, 0xa0, 0xa1]);
        assert.equal(decodeOid(children(parts[2]!)[0]!.content), c.spec.kind === 'ec' && c.spec.curve === 'P384' ? OID.p384 : OID.p256);
        assert.equal(parts[1]!.content.length, c.spec.kind === 'ec' && c.spec.curve === 'P384' ? 48 : 32);
      } else if (c.label === 'RSA PRIVATE KEY') {
        assert.equal(parts.length, 9); // PKCS#1 RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv
      } else {
        assert.deepEqual(parts.map((t) => t.tag), [0x02, 0x30, 0x04]); // PKCS#8 PrivateKeyInfo
      }
      // the PEM is the key the pool made
      const pub = createPublicKey(pem).export({ type: 'spki', format: 'der' });
      assert.deepEqual(pub, key.publicKey.export({ type: 'spki', format: 'der' }));
    });
  }
});

void describe('KeyPool', () => {
  function counting(): { generate: (spec: KeySpec) => Promise<WorkloadKey>; calls: () => number } {
    let n = 0;
    return {
      generate: (spec) => {
        n++;
        return generateWorkloadKey(spec);
      },
      calls: () => n,
    };
  }
  const spec: KeySpec = { kind: 'ec', curve: 'P256' };
  const spkiHex = (k: WorkloadKey): string => k.publicKey.export({ type: 'spki', format: 'der' }).toString('hex');

  void it('take() on an empty pool generates a key; every key handed out is distinct', async () => {
    const g = counting();
    const pool = new KeyPool(spec, g.generate);
    assert.equal(pool.ready, false);
    const keys = [await pool.take(), await pool.take(), await pool.take()];
    assert.equal(g.calls(), 3);
    assert.equal(new Set(keys.map(spkiHex)).size, 3);
    assert.equal(pool.ready, false);
    for (const k of keys) assert.deepEqual(k.spec, spec);
  });

  void it('fill() pre-generates one key (once), and take() hands out that key without generating another', async () => {
    const g = counting();
    const pool = new KeyPool(spec, g.generate);
    pool.fill();
    pool.fill();
    assert.equal(g.calls(), 1);
    assert.equal(pool.ready, true);
    const k = await pool.take();
    assert.equal(g.calls(), 1);
    assert.equal(pool.ready, false);
    pool.fill();
    const k2 = await pool.take();
    assert.equal(g.calls(), 2);
    assert.notEqual(spkiHex(k), spkiHex(k2));
  });

  void it('giveBack() returns an uncertified key for reuse, unless a key is already waiting', async () => {
    const g = counting();
    const pool = new KeyPool(spec, g.generate);
    const k = await pool.take();
    pool.giveBack(k);
    assert.equal(pool.ready, true);
    assert.equal(await pool.take(), k);
    assert.equal(g.calls(), 1);
    // with a key already in the pool, the returned one is dropped
    pool.fill();
    const waiting = await (async () => {
      pool.giveBack(k);
      return pool.take();
    })();
    assert.notEqual(spkiHex(waiting), spkiHex(k));
    assert.equal(g.calls(), 2);
  });

  void it('a failed generation is reported by take(), never as an unhandled rejection, and the pool recovers', async () => {
    let fail = true;
    const pool = new KeyPool(spec, (s) => (fail ? Promise.reject(new Error('no entropy')) : generateWorkloadKey(s)));
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => {
      unhandled.push(e);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      pool.fill();
      await new Promise((r) => setTimeout(r, 20));
      await assert.rejects(pool.take(), /no entropy/);
      fail = false;
      const k = await pool.take();
      assert.ok(k.privateKey);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.deepEqual(unhandled, []);
  });

  void it('generateWorkloadKey makes the requested key types', async () => {
    const rsa = await generateWorkloadKey({ kind: 'rsa', bits: 3072 });
    assert.equal(rsa.privateKey.asymmetricKeyType, 'rsa');
    assert.equal(rsa.privateKey.asymmetricKeyDetails?.modulusLength, 3072);
    assert.equal(rsa.privateKey.asymmetricKeyDetails?.publicExponent, 65537n);
    const ec = await generateWorkloadKey({ kind: 'ec', curve: 'P384' });
    assert.equal(ec.privateKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
    assert.equal(describeKeySpec({ kind: 'rsa', bits: 2048 }), 'RSA 2048');
    assert.equal(describeKeySpec({ kind: 'ec', curve: 'P384' }), 'ECDSA P-384');
    assert.equal(describeKeySpec({ kind: 'ec', curve: 'P256' }), 'ECDSA P-256');
  });
});
