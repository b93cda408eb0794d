// Bootstrap conformance with Istio 1.30.3's 26 golden bootstraps (../shared/conformance/bootstrap):
//  1. the shared checker, exactly as documented: `check.sh build/agent` => 26/26;
//  2. stricter: each case run in a network namespace whose interfaces hold exactly the test's
//     instance IPs (10.4.4.4, 10.5.5.5, 10.6.6.6 after INSTANCE_IP 10.3.3.3), compared with the
//     stats matcher included (--strict-matcher) and INSTANCE_IPS checked without normalisation.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createNetns, PEER_PATH, runProc, type Netns } from '../helpers/go-agent.js';
import { AGENT_BIN, SHARED_DIR } from '../helpers/peers.js';
import { conformanceInputs, envIn } from './inputs.js';

const DIR = join(SHARED_DIR, 'conformance/bootstrap');

void describe('bootstrap conformance (Istio 1.30.3 goldens)', () => {
  void it('check.sh reports 26/26', async () => {
    const { stdout } = await promisify(execFile)('bash', [join(DIR, 'check.sh'), AGENT_BIN], {
      env: { PATH: PEER_PATH, HOME: process.env.HOME ?? '/' },
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const lines = stdout.trim().split('\n');
    assert.equal(lines.filter((l) => l.startsWith('PASS ')).length, 26, stdout);
    assert.equal(lines[lines.length - 1], 'bootstrap-conformance: 26/26 passed', stdout);
  });

  void describe('in a network namespace with the goldens’ instance IPs', () => {
    let netns: Netns;
    const dirs: string[] = [];
    before(async () => {
      netns = await createNetns('mconf');
      const ip = async (...args: string[]): Promise<void> => {
        const r = await runProc('ip', ['-n', netns.name, ...args], { env: { PATH: PEER_PATH }, timeoutMs: 10_000 });
        assert.equal(r.code, 0, `ip ${args.join(' ')}: ${r.stderr}`);
      };
      await ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
      await ip('link', 'set', 'v0', 'up');
      await ip('link', 'set', 'v1', 'up');
      for (const a of ['10.4.4.4', '10.5.5.5', '10.6.6.6']) await ip('addr', 'add', `${a}/32`, 'dev', 'v0');
    });
    after(async () => {
      await netns?.dispose();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    });

    void it('every case equals its golden with the stats matcher compared and no IP normalisation', async () => {
      for (const input of conformanceInputs()) {
        const cwd = await mkdtemp(join(tmpdir(), 'bs-conf-'));
        dirs.push(cwd);
        const env = { PATH: PEER_PATH, HOME: process.env.HOME ?? '/', ...envIn(input, cwd) };
        const [cmd, args] = netns.wrap(AGENT_BIN, [...input.args, '--bootstrap-only']);
        const r = await runProc(cmd, args, { cwd, env, timeoutMs: 30_000 });
        assert.equal(r.code, 0, `${input.name}: ${r.stdout}${r.stderr}`);
        const file = join(cwd, 'etc/istio/proxy/envoy-rev.json');
        // the goldens were generated with configPath /tmp/bootstrap/<case>
        const text = (await readFile(file, 'utf8')).replaceAll(join(cwd, 'etc/istio/proxy'), `/tmp/bootstrap/${input.name}`);
        await writeFile(file, text);
        const golden = join(DIR, 'golden', `${input.name}_golden.json`);
        const goldenDoc = JSON.parse(await readFile(golden, 'utf8'));
        assert.equal(JSON.parse(text).node.metadata.INSTANCE_IPS, goldenDoc.node.metadata.INSTANCE_IPS, input.name);
        const cmp = await runProc(process.execPath, [join(DIR, 'compare.mjs'), input.name, file, golden, '--strict-matcher'], { env: { PATH: PEER_PATH } });
        assert.equal(cmp.code, 0, cmp.stdout);
        assert.equal(cmp.stdout.trim(), `PASS ${input.name}`);
      }
    });
  });
});
