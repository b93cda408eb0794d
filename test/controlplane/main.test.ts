// The control plane as its own process (how the demo and the process-level tests run it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../helpers/peers.js';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../../src/xds/types.js';
import { AdsTestClient } from '../xds/ads-client.js';

const MAIN = join(REPO_ROOT, 'build', 'test', 'controlplane', 'main.js');

interface Running {
  proc: ChildProcess;
  ready: Record<string, unknown>;
  events: Array<Record<string, unknown>>;
}

async function launch(args: string[]): Promise<Running> {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane not ready in 15s: ${stderr}`)), 15_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited ${code}: ${stderr}`));
    });
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const ev = JSON.parse(line) as Record<string, unknown>;
      events.push(ev);
      if (ev.event === 'ready') {
        clearTimeout(timer);
        resolve(ev);
      }
    });
  });
  return { proc, ready, events };
}

async function stop(r: Running): Promise<number | null> {
  if (r.proc.exitCode !== null) return r.proc.exitCode;
  const exited = new Promise<number | null>((resolve) => r.proc.once('exit', (code) => resolve(code)));
  r.proc.kill('SIGTERM');
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), 5000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

void describe('control plane process (main.js)', () => {
  void it('serves ADS and its HTTP upstream, reports events as JSON lines, and exits 0 on SIGTERM', async () => {
    const r = await launch(['--xds-address', '127.0.0.1:0', '--listener-port', '18099', '--start-upstream', '--served-by', 'demo']);
    let client: AdsTestClient | undefined;
    try {
      client = new AdsTestClient(String(r.ready.xdsAddress), 'delta');
      client.delta(LISTENER_TYPE);
      const lds = await client.next(LISTENER_TYPE);
      assert.deepEqual((lds.resources as Array<{ name: string }>).map((x) => x.name), ['http_18099']);
      client.delta(CLUSTER_TYPE);
      await client.next(CLUSTER_TYPE);
      const body = await new Promise<string>((resolve, reject) => {
        request({ host: '127.0.0.1', port: Number(r.ready.upstreamPort), path: '/x', timeout: 2000 }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve(b));
        })
          .on('error', reject)
          .end();
      });
      assert.equal(body, 'hello from demo: GET /x\n');
      assert.ok(r.events.some((e) => e.event === 'stream' && e.flavour === 'delta'));
    } finally {
      client?.close();
      assert.equal(await stop(r), 0);
    }
  });

  void it('with --tls writes the root cert, and keeps the same CA across restarts with --ca-dir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-main-'));
    try {
      const args = ['--xds-address', '127.0.0.1:0', '--tls', '--root-cert-out', join(dir, 'root-cert.pem'), '--ca-dir', join(dir, 'ca'), '--upstream-port', '1'];
      const first = await launch(args);
      const root1 = await readFile(join(dir, 'root-cert.pem'), 'utf8');
      assert.equal(await stop(first), 0);
      const second = await launch(args);
      const root2 = await readFile(join(dir, 'root-cert.pem'), 'utf8');
      assert.equal(await stop(second), 0);
      assert.match(root1, /^-----BEGIN CERTIFICATE-----/);
      assert.equal(root2, root1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('rejects bad flags with exit code 2 and a message naming the flag', async () => {
    const proc = spawn(process.execPath, [MAIN, '--listener-port', '99999', '--upstream-port', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
    assert.equal(code, 2);
    assert.match(stderr, /--listener-port: invalid port "99999"/);
  });
});
