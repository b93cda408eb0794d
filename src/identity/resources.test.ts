// SDS resource names as pilot-agent reads them (pkg/security SdsCertificateConfigFromResourceName, Istio's
// TestSdsCertificateConfigFromResourceName, and file-root:system with and without an OS CA bundle).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FILE_ROOT_SYSTEM, ROOT_RESOURCE, WORKLOAD_RESOURCE, isRootResource, parseResourceName } from './resources.js';

const OS_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

void describe('parseResourceName (Istio TestSdsCertificateConfigFromResourceName)', () => {
  void it('cert: file-cert:cert~key is a key/cert pair, not a root', () => {
    assert.deepEqual(parseResourceName('file-cert:cert~key', OS_BUNDLE), { kind: 'file-cert', certPath: 'cert', keyPath: 'key' });
    assert.equal(isRootResource('file-cert:cert~key', OS_BUNDLE), false);
  });

  void it('root cert: file-root:root is a root', () => {
    assert.deepEqual(parseResourceName('file-root:root', OS_BUNDLE), { kind: 'file-root', caPath: 'root' });
    assert.equal(isRootResource('file-root:root', OS_BUNDLE), true);
  });

  void it('invalid prefix: file:root is no file resource (served the workload certificate)', () => {
    assert.deepEqual(parseResourceName('file:root', OS_BUNDLE), { kind: 'workload' });
    assert.equal(isRootResource('file:root', OS_BUNDLE), false);
  });

  void it('invalid contents: file-root:root~extra is no file resource', () => {
    assert.deepEqual(parseResourceName('file-root:root~extra', OS_BUNDLE), { kind: 'workload' });
    assert.equal(isRootResource('file-root:root~extra', OS_BUNDLE), false);
  });

  void it('file-cert with other than exactly two parts is no file resource', () => {
    for (const name of ['file-cert:cert', 'file-cert:a~b~c', 'file-cert:']) {
      assert.deepEqual(parseResourceName(name, OS_BUNDLE), { kind: 'workload' }, name);
    }
  });

  void it('absolute paths, as istiod sends them for DestinationRule TLS', () => {
    assert.deepEqual(parseResourceName('file-cert:/etc/certs/client.pem~/etc/certs/client-key.pem', ''), {
      kind: 'file-cert',
      certPath: '/etc/certs/client.pem',
      keyPath: '/etc/certs/client-key.pem',
    });
    assert.deepEqual(parseResourceName('file-root:/etc/certs/ca.pem', ''), { kind: 'file-root', caPath: '/etc/certs/ca.pem' });
    // only the prefix is stripped; ':' in the path stays
    assert.deepEqual(parseResourceName('file-root:/etc/a:b.pem', ''), { kind: 'file-root', caPath: '/etc/a:b.pem' });
  });

  void it('a file name with an empty path is refused with a reason (pilot-agent has no secret for it)', () => {
    for (const name of ['file-cert:~key', 'file-cert:cert~', 'file-cert:~', 'file-root:']) {
      const ref = parseResourceName(name, OS_BUNDLE);
      assert.equal(ref.kind, 'invalid-file', name);
      assert.ok(ref.kind === 'invalid-file' && ref.reason.includes(name), `${name}: ${JSON.stringify(ref)}`);
      assert.equal(isRootResource(name, OS_BUNDLE), false, name);
    }
  });

  void it('default and ROOTCA, and any other name (the workload certificate)', () => {
    assert.equal(WORKLOAD_RESOURCE, 'default');
    assert.equal(ROOT_RESOURCE, 'ROOTCA');
    assert.deepEqual(parseResourceName('default', OS_BUNDLE), { kind: 'workload' });
    assert.deepEqual(parseResourceName('ROOTCA', OS_BUNDLE), { kind: 'rootca' });
    assert.equal(isRootResource('ROOTCA', OS_BUNDLE), true);
    assert.equal(isRootResource('default', OS_BUNDLE), false);
    for (const name of ['kubernetes://my-credential', 'rootca', 'ROOTCA ', 'anything', '']) {
      assert.deepEqual(parseResourceName(name, OS_BUNDLE), { kind: 'workload' }, name);
      assert.equal(isRootResource(name, OS_BUNDLE), false, name);
    }
  });
});

void describe('file-root:system (TestOSCACertGenerateSecret / ...Empty)', () => {
  void it('with an OS bundle: a root read from that file', () => {
    assert.equal(FILE_ROOT_SYSTEM, 'file-root:system');
    assert.deepEqual(parseResourceName('file-root:system', OS_BUNDLE), { kind: 'file-root', caPath: OS_BUNDLE });
    assert.deepEqual(parseResourceName('file-root:system', '/etc/pki/tls/certs/ca-bundle.crt'), { kind: 'file-root', caPath: '/etc/pki/tls/certs/ca-bundle.crt' });
    assert.equal(isRootResource('file-root:system', OS_BUNDLE), true);
  });

  void it('without one: falls through to the workload certificate (a TlsCertificate, not a validation context)', () => {
    assert.deepEqual(parseResourceName('file-root:system', ''), { kind: 'workload' });
    assert.equal(isRootResource('file-root:system', ''), false);
  });

  void it('the OS bundle only changes file-root:system', () => {
    for (const name of ['default', 'ROOTCA', 'file-root:/x.pem', 'file-cert:a~b', 'file:root']) {
      assert.deepEqual(parseResourceName(name, ''), parseResourceName(name, OS_BUNDLE), name);
    }
  });
});
