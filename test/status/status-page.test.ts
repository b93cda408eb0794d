// The status page GET :15020/ (issue 8), rendered by headless Chromium (Debian's `chromium`) for a running
// agent with the real Envoy and the in-repo control plane: the visible text shows readiness, versions,
// the xDS types with their versions, the workload identity and recent events. A screenshot is stored under
// test-artifacts/ (not committed). The page is loopback only, like /debug/status.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { startMesh } from '../agent/harness.js';
import { httpGet } from '../helpers/http.js';
import { REPO_ROOT } from '../helpers/peers.js';

const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

async function chromium(url: string, extra: readonly string[]): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'chromium-'));
  try {
    const { stdout } = await run(
      CHROMIUM,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--window-size=1280,1600', ...extra, url],
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** The text a reader sees: the DOM without tags, style and entities. */
function visibleText(dom: string): string {
  return dom
    .replace(/<style[\s\S]*?<\/style>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ');
}

void describe('status page in headless Chromium (agent, real Envoy, in-repo control plane)', { timeout: 180_000 }, () => {
  void it('shows readiness, versions, xDS per type, identity and recent events; screenshot stored', async (t: TestContext) => {
    if (!existsSync(CHROMIUM)) {
      t.skip(`Chromium not found at ${CHROMIUM} (Debian package chromium; scripts/test.sh installs it)`);
      return;
    }
    const mesh = await startMesh(t, { pod: { proxyConfig: {} } });
    const page = await httpGet('http://127.0.0.1:15020/');
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.body, /<script|https?:\/\/(?!127\.0\.0\.1)/, 'self-contained: no script, no external asset');

    const dom = await chromium('http://127.0.0.1:15020/', ['--dump-dom']);
    const text = visibleText(dom);
    assert.match(text, /READY/);
    assert.doesNotMatch(text, /NOT READY/);
    assert.match(text, /Istio 1\.30\.3/);
    assert.match(text, /Envoy version \S+/);
    assert.match(text, /Envoy state LIVE/);
    assert.match(text, /Envoy epoch 0/);
    assert.match(text, /connected/);
    for (const type of ['CDS', 'LDS']) assert.match(text, new RegExp(` ${type} \\S+ \\S+ none `), `${type} row with its versions and no NACK`);
    assert.match(text, /SPIFFE ID spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
    assert.match(text, /serial [0-9a-fA-F]+/);
    assert.match(text, /next rotation \d{4}-\d\d-\d\dT/);
    assert.match(text, /Recent events/);
    assert.match(text, /push CDS version/);
    assert.match(text, /ready ready: envoy_spawned=\d+ms status_server_up=\d+ms/);

    await mkdir(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'status-page.png');
    await rm(shot, { force: true });
    await chromium('http://127.0.0.1:15020/', [`--screenshot=${shot}`]);
    assert.ok((await stat(shot)).size > 1000, 'a screenshot was written');
    t.diagnostic(`screenshot: ${shot}`);
    void mesh;
  });
});
