// The Go pilot-agent oracle helpers work: iptables dry-run transcripts and generated bootstraps
// follow their inputs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runGoBootstrap, runGoIptablesDryRun } from '../helpers/go-agent.js';
import { pilotAgentBin } from '../helpers/peers.js';
import { execFileSync } from 'node:child_process';

void describe('Go pilot-agent oracle', () => {
  void it('is the 1.30 build scripts/peers.sh installs', () => {
    const v = execFileSync(pilotAgentBin(), ['version', '-s'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.match(v.trim(), /^client version: 1\.30\.\d+$/); // `version -s` prefixes "client version: "
  });

  void it('istio-iptables --dry-run records the nat rules it would apply', async () => {
    const base = ['-z', '15006', '-u', '1337', '-g', '1337', '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020'];
    const a = await runGoIptablesDryRun(['-p', '15001', ...base]);
    assert.equal(a.exitCode, 0, a.stdout + a.stderr);
    const lines = a.transcript.split('\n');
    assert.ok(lines.includes('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001'), a.transcript);
    assert.ok(lines.includes('-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006'), a.transcript);
    for (const port of [15090, 15021, 15020]) assert.ok(lines.includes(`-A ISTIO_INBOUND -p tcp --dport ${port} -j RETURN`));
    assert.ok(lines.includes('-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN'));
    assert.ok(lines.includes('COMMIT'));
    assert.match(a.stdout, /iptables-restore/);

    const b = await runGoIptablesDryRun(['-p', '15002', ...base]);
    assert.ok(b.transcript.split('\n').includes('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15002'));
    assert.ok(!b.transcript.includes('--to-ports 15001'));
  });

  void it('proxy sidecar renders envoy-rev.json from env and PROXY_CONFIG and passes Envoy its argv', async () => {
    const r = await runGoBootstrap({
      env: {
        POD_NAME: 'sleep-0',
        POD_NAMESPACE: 'default',
        INSTANCE_IP: '10.1.2.3',
        ISTIO_META_CLUSTER_ID: 'Kubernetes',
        PROXY_CONFIG: JSON.stringify({ discoveryAddress: 'localhost:15012', concurrency: 2, proxyAdminPort: 15123 }),
      },
    });
    assert.equal(r.exitCode, 0, r.agentOutput);
    assert.equal(r.bootstrap.node.id, 'sidecar~10.1.2.3~sleep-0.default~default.svc.cluster.local');
    assert.equal(r.bootstrap.node.metadata.NAMESPACE, 'default');
    assert.equal(r.bootstrap.node.metadata.CLUSTER_ID, 'Kubernetes');
    assert.equal(r.bootstrap.node.metadata.PROXY_CONFIG.binaryPath, r.fakeEnvoyPath);
    assert.equal(r.bootstrap.admin.address.socket_address.port_value, 15123);
    const at = (flag: string): string | undefined => r.envoyArgv[r.envoyArgv.indexOf(flag) + 1];
    assert.equal(at('-c'), 'etc/istio/proxy/envoy-rev.json');
    assert.equal(at('--concurrency'), '2');
    assert.ok(r.envoyArgv.includes('--disable-hot-restart'));
    assert.match(r.agentOutput, /Envoy command: \[-c etc\/istio\/proxy\/envoy-rev.json/);
    assert.ok(r.grpcBootstrap?.xds_servers?.length >= 1, 'grpc-bootstrap.json written');
  });
});
