// How the agent decides where workload certificates come from: pilot-agent's CA root selection, server
// name, plaintext for :15010, file-mounted modes, key type, and every bad input named.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { loadProxyCommand } from '../cli/proxy-load.js';
import { ConfigError } from '../lib/errors.js';
import { resolveIdentitySettings } from './options.js';

void describe('resolveIdentitySettings', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const settings = async (env: Record<string, string>, files: string[] = ['var/run/secrets/istio/root-cert.pem']) => {
    const cwd = await mkdtemp(join(tmpdir(), 'idopt-'));
    dirs.push(cwd);
    for (const f of files) {
      await mkdir(join(cwd, f, '..'), { recursive: true });
      await writeFile(join(cwd, f), 'x');
    }
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const ctx = { env: { CLOUD_PLATFORM: 'none', POD_NAMESPACE: 'ns', SERVICE_ACCOUNT: 'sa', INSTANCE_IP: '10.0.0.2', ...env }, cwd, stdout: sink, stderr: sink, signals: new EventEmitter() };
    const { config } = await loadProxyCommand(['sidecar'], ctx, { interfaces: {}, hostCpus: 2 });
    return { s: resolveIdentitySettings(config), cwd };
  };

  void it('defaults: the CA is the discovery address, TLS with istiod root-cert.pem merged into ROOTCA, RSA 2048, our SPIFFE ID', async () => {
    const { s, cwd } = await settings({});
    assert.equal(s.spiffeId, 'spiffe://cluster.local/ns/ns/sa/sa');
    assert.equal(s.ca?.endpoint, 'istiod.istio-system.svc:15012');
    assert.deepEqual(s.ca?.tls, { rootCertPath: join(cwd, 'var/run/secrets/istio/root-cert.pem'), serverName: 'istiod.istio-system.svc' });
    assert.equal(s.cache.meshRootCertPath, join(cwd, 'var/run/secrets/istio/root-cert.pem'));
    assert.deepEqual(s.key, { kind: 'rsa', bits: 2048 });
    assert.equal(s.workloadSocketPath, join(cwd, 'var/run/secrets/workload-spiffe-uds/socket'));
    assert.equal(s.cache.secretTtlMs, 86_400_000);
    assert.equal(s.fileMounted, false);
  });

  void it('CA_ADDR, plaintext on :15010, localhost server name, ISTIOD_SAN only without CA_ADDR, SYSTEM roots, PROV_CERT client certificate', async () => {
    assert.equal((await settings({ CA_ADDR: 'ca.example:15010' })).s.ca?.tls, null);
    assert.equal((await settings({ CA_ADDR: 'localhost:15012' })).s.ca?.tls?.serverName, 'istiod.istio-system.svc');
    assert.equal((await settings({ CA_ADDR: 'ca.example:443', ISTIOD_SAN: 'istiod.x' })).s.ca?.tls?.serverName, 'ca.example');
    assert.equal((await settings({ ISTIOD_SAN: 'istiod.x' })).s.ca?.tls?.serverName, 'istiod.x');
    const sys = (await settings({ CA_ROOT_CA: 'SYSTEM' }, [])).s;
    assert.equal(sys.ca?.tls?.rootCertPath, null);
    assert.equal(sys.cache.meshRootCertPath, '', 'a system root is not merged into the workload trust bundle');
    const prov = await settings({ PROV_CERT: './etc/prov' }, []);
    assert.equal(prov.s.ca?.tls?.rootCertPath, join(prov.cwd, 'etc/prov/root-cert.pem'));
    assert.equal(prov.s.ca?.tls?.clientCertChainPath, join(prov.cwd, 'etc/prov/cert-chain.pem'));
  });

  void it('ECDSA keys, PKCS#8, file-mounted modes (FILE_MOUNTED_CERTS, workload-spiffe-credentials)', async () => {
    assert.deepEqual((await settings({ ECC_SIGNATURE_ALGORITHM: 'ECDSA', ECC_CURVE: 'P384' })).s.key, { kind: 'ec', curve: 'P384' });
    assert.deepEqual((await settings({ WORKLOAD_RSA_KEY_SIZE: '4096' })).s.key, { kind: 'rsa', bits: 4096 });
    const fm = (await settings({ FILE_MOUNTED_CERTS: 'true' }, [])).s;
    assert.equal(fm.fileMounted, true);
    assert.equal(fm.ca, undefined);
    const creds = await settings({}, ['var/run/secrets/workload-spiffe-credentials/cert-chain.pem', 'var/run/secrets/workload-spiffe-credentials/key.pem', 'var/run/secrets/workload-spiffe-credentials/root-cert.pem']);
    assert.equal(creds.s.fileMounted, true);
    assert.equal(creds.s.cache.certChainPath, join(creds.cwd, 'var/run/secrets/workload-spiffe-credentials/cert-chain.pem'));
  });

  const rejects = async (env: Record<string, string>, files: string[], re: RegExp): Promise<void> => {
    await assert.rejects(settings(env, files), (e: unknown) => e instanceof ConfigError && re.test(e.message));
  };

  void it('bad inputs are ConfigErrors naming the input', async () => {
    await rejects({}, [], /CA root certificate: root CA file for CA does not exist .*var\/run\/secrets\/istio\/root-cert\.pem/);
    await rejects({ CA_ROOT_CA: '/nope/root.pem' }, [], /env CA_ROOT_CA: root CA file for CA does not exist \/nope\/root\.pem/);
    await rejects({ CA_PROVIDER: 'GoogleCA' }, ['var/run/secrets/istio/root-cert.pem'], /env CA_PROVIDER: CA provider "GoogleCA" not registered/);
    await rejects({ CA_PROVIDER: 'GkeWorkloadCertificate' }, [], /GKE workload certificate files .* not present/);
    await rejects({ PILOT_CERT_PROVIDER: 'none' }, [], /root CA file for CA required but configured provider as none/);
    await rejects({ CA_ADDR: 'no-port' }, ['var/run/secrets/istio/root-cert.pem'], /env CA_ADDR: "no-port" is not host:port/);
  });

  void it('WORKLOAD_IDENTITY_SOCKET_FILE must be a file name, and stops start-up with the agent\'s one message', async () => {
    await assert.rejects(settings({ WORKLOAD_IDENTITY_SOCKET_FILE: 'a/b' }), (e: unknown) => e instanceof ConfigError && /env WORKLOAD_IDENTITY_SOCKET_FILE: workload identity socket file override must be a filename, not a path: a\/b/.test(e.message));
  });
});
