// Our Go text/template engine renders Istio's real bootstrap template
// (tools/packaging/common/envoy_bootstrap.json, read at test time from the peers install or the Go
// module cache, never committed) with our parameters to the same JSON as our data-driven builder,
// for every conformance case and every variant input. The template is also used end to end through
// ISTIO_BOOTSTRAP.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBootstrap } from '../../src/bootstrap/index.js';
import { bootstrapParams } from '../../src/bootstrap/params.js';
import { goTemplateData } from '../../src/bootstrap/template-data.js';
import { renderGoTemplate } from '../../src/bootstrap/gotemplate.js';
import { istioBootstrapTemplate, REPO_ROOT } from '../helpers/peers.js';
import { conformanceInputs, generateWithCli, loadInput, VARIANT_INPUTS, writePodFiles, type BootstrapInput } from './inputs.js';

/** Istio's template: from scripts/peers.sh's install, else from the Go module cache. */
function istioTemplatePath(): string {
  try {
    return istioBootstrapTemplate();
  } catch {
    const version = /ISTIO_MODULE_VERSION=(\S+)/.exec(readFileSync(join(REPO_ROOT, 'scripts/peers.sh'), 'utf8'))?.[1];
    const modcache = execFileSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
    const p = join(modcache, `istio.io/istio@${version}`, 'tools/packaging/common/envoy_bootstrap.json');
    if (!existsSync(p)) throw new Error(`Istio's bootstrap template is not available: run 'bash scripts/peers.sh istio' (looked for ${p})`);
    return p;
  }
}

/**
 * Istio's template emits `"allow_requests_without_proxy_protocol": true,}` (a trailing comma) when
 * ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL is on; that text is not JSON. Our builder writes valid JSON.
 */
function parseRendered(text: string, input: BootstrapInput): unknown {
  if (input.env.ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL === 'true') {
    assert.throws(() => JSON.parse(text), 'Istio template output with the proxy-protocol filter has a trailing comma');
    return JSON.parse(text.replace(/"allow_requests_without_proxy_protocol": true,(\s*})/, '"allow_requests_without_proxy_protocol": true$1'));
  }
  return JSON.parse(text);
}

void describe("bootstrap: Istio's Go template rendered by our engine equals the built-in builder", () => {
  let template = '';
  let templatePath = '';
  const dirs: string[] = [];
  before(() => {
    templatePath = istioTemplatePath();
    template = readFileSync(templatePath, 'utf8');
    assert.match(template, /\{\{ \.meta_json_str \}\}/, 'this is the Istio bootstrap template');
  });
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const check = async (input: BootstrapInput): Promise<void> => {
    const cwd = await mkdtemp(join(tmpdir(), 'bs-tmpl-'));
    dirs.push(cwd);
    await writePodFiles(input, cwd);
    const cfg = await loadInput(input, cwd);
    const built = buildBootstrap(cfg);
    const rendered = renderGoTemplate(template, goTemplateData(bootstrapParams(cfg)));
    assert.deepEqual(parseRendered(rendered, input), built.document, input.name);
  };

  void it('for all 26 conformance inputs', async () => {
    const inputs = conformanceInputs();
    assert.equal(inputs.length, 26);
    for (const input of inputs) await check(input);
  });

  void it('for every variant input', async () => {
    for (const input of VARIANT_INPUTS) await check(input);
  });

  void it('through ISTIO_BOOTSTRAP with the built CLI', async () => {
    const base = VARIANT_INPUTS[0]!;
    const a = await mkdtemp(join(tmpdir(), 'bs-tmpl-cli-'));
    const b = await mkdtemp(join(tmpdir(), 'bs-tmpl-cli-'));
    dirs.push(a, b);
    const builtin = JSON.parse(await generateWithCli(base, a)) as unknown;
    const viaTemplate = await generateWithCli({ ...base, env: { ...base.env, ISTIO_BOOTSTRAP: templatePath } }, b);
    // the template's own formatting (not JSON.stringify's) shows it really was rendered from the file
    assert.match(viaTemplate, /"endpoints": \[\{\n/);
    const normalise = (doc: any, cwd: string): unknown => JSON.parse(JSON.stringify(doc).replaceAll(cwd, '<cwd>'));
    assert.deepEqual(normalise(JSON.parse(viaTemplate), b), normalise(builtin, a));
    assert.ok((await readFile(join(b, 'etc/istio/proxy/envoy-rev.json'), 'utf8')).length > 1000);
  });
});
