// Locates the real peers installed by scripts/peers.sh (cached outside the clone).
// Each can be overridden by its environment variable: ENVOY_BIN, PILOT_AGENT_BIN, ISTIOD_BIN, ISTIO_BOOTSTRAP_TEMPLATE.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (works from src/ and from build/). */
export const REPO_ROOT = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) d = dirname(d);
  return d;
})();

/** The built CLI, as the container runs it: the single executable (scripts/bundle.mjs, src/sea.ts). */
export const AGENT_BIN = join(REPO_ROOT, 'build', 'agent');
/** The same CLI as a bundle for `node` (npm's `bin`); test/sea compares the two. */
export const AGENT_CLI = join(REPO_ROOT, 'build', 'bundle', 'main.js');
export const SHARED_DIR = resolve(REPO_ROOT, '..', 'shared');

let cached: Record<string, string> | undefined;
function installed(): Record<string, string> {
  if (cached) return cached;
  const out = execFileSync('bash', [join(REPO_ROOT, 'scripts', 'peers.sh'), 'env'], { encoding: 'utf8' });
  cached = Object.fromEntries(
    out
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return cached;
}

function peer(name: string): string {
  const v = process.env[name] ?? installed()[name];
  if (!v || !existsSync(v)) throw new Error(`${name} is not installed: run 'bash scripts/peers.sh all' (or set ${name})`);
  return v;
}

export const envoyBin = (): string => peer('ENVOY_BIN');
export const pilotAgentBin = (): string => peer('PILOT_AGENT_BIN');
export const istiodBin = (): string => peer('ISTIOD_BIN');
export const istioBootstrapTemplate = (): string => peer('ISTIO_BOOTSTRAP_TEMPLATE');
