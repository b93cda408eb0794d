// Istio's 27 istio-iptables golden transcripts (tools/istio-iptables/pkg/capture/testdata, tag 1.30.3),
// checked with the shared conformance script against our built CLI's `--dry-run` output.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { AGENT_BIN, SHARED_DIR } from '../helpers/peers.js';

void it('passes all 27 istio-iptables conformance cases exactly', { timeout: 180_000 }, async () => {
  const dir = join(SHARED_DIR, 'conformance', 'iptables');
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'bash',
      [join(dir, 'check.sh'), `'${AGENT_BIN}'`, join(dir, 'golden')],
      {
        env: {
          ...process.env,
          CHECK_IPV6_ENV: 'IPTABLES_IPV6=true',
          CHECK_IPV4_ENV: 'IPTABLES_IPV6=false',
          CHECK_DNS_ENV: 'IPTABLES_DNS_SERVERS=$CASE_DNS_V4,$CASE_DNS_V6',
          VERBOSE: '1',
        },
        timeout: 170_000,
        encoding: 'utf8',
      },
      (err, out, errOut) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout: out, stderr: errOut }),
    );
  });
  assert.match(stdout, /^iptables-conformance: 27\/27 passed/m, `${stdout}\n${stderr.slice(-4000)}`);
  assert.equal(stdout.match(/^PASS /gm)?.length, 27);
  assert.equal(code, 0);
});
