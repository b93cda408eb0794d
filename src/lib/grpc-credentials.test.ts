// Credentials toward istiod: the OS trust store for SYSTEM roots (the first bundle found, as Go looks),
// the bearer token (trimmed, re-read, bounded), the server name rules.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { memoryLogger } from './log.js';
import { OS_ROOT_CERT_FILES, clientSecureContext, osRootCertFile, readBearerToken, xdsServerName } from './grpc-credentials.js';

void describe('grpc credentials', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  void it("SYSTEM roots: the first OS bundle that exists, in Go's order; '' when none", async () => {
    const d = await mkdtemp(join(tmpdir(), 'roots-'));
    dirs.push(d);
    const [a, b] = [join(d, 'a.pem'), join(d, 'b.pem')];
    await writeFile(b, 'x');
    assert.equal(osRootCertFile([a, b]), b);
    await writeFile(a, 'x');
    assert.equal(osRootCertFile([a, b]), a);
    assert.equal(osRootCertFile([join(d, 'none')]), '');
    assert.equal(OS_ROOT_CERT_FILES[0], '/etc/ssl/certs/ca-certificates.crt');
    // on this machine (Debian) the system bundle is found, and usable for TLS
    assert.equal(osRootCertFile(), '/etc/ssl/certs/ca-certificates.crt');
    await clientSecureContext({ rootCertPath: null, serverName: 'x' }, memoryLogger().log);
  });

  void it('a root file without a certificate is an error naming it', async () => {
    const d = await mkdtemp(join(tmpdir(), 'roots-'));
    dirs.push(d);
    await writeFile(join(d, 'root.pem'), 'not a certificate');
    await assert.rejects(clientSecureContext({ rootCertPath: join(d, 'root.pem'), serverName: 'x' }, memoryLogger().log), /no PEM certificate in .*root\.pem/);
  });

  void it('the token is trimmed; a missing one is a warning and no token; an oversized one is refused', async () => {
    const d = await mkdtemp(join(tmpdir(), 'tok-'));
    dirs.push(d);
    const { log, lines } = memoryLogger();
    await writeFile(join(d, 't'), '  abc.def \n');
    assert.equal(await readBearerToken(join(d, 't'), log), 'abc.def');
    assert.equal(await readBearerToken(join(d, 'missing'), log), '');
    assert.ok(lines.some((l) => /failed to fetch token from file: .*no such file/.test(l)));
    await writeFile(join(d, 'big'), 'x'.repeat(100 * 1024));
    assert.equal(await readBearerToken(join(d, 'big'), log), '');
    assert.ok(lines.some((l) => /failed to fetch token from file: .*big is 102400 bytes, more than the 65536 allowed/.test(l)));
  });

  void it("istiod's server name: localhost -> istiod.istio-system.svc, ISTIOD_SAN wins", () => {
    assert.equal(xdsServerName('localhost:15012', undefined), 'istiod.istio-system.svc');
    assert.equal(xdsServerName('istiod-canary.istio-system.svc:15012', undefined), 'istiod-canary.istio-system.svc');
    assert.equal(xdsServerName('localhost:15012', 'istiod.example'), 'istiod.example');
  });
});
