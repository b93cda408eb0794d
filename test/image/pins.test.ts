// The image and the tests run the same peers: the Dockerfile's defaults (what a plain `docker build`
// uses) name the Envoy release and the Node.js major that scripts/peers.sh installs for the suite and the
// benchmarks. A pin changed in one place only fails here, not in a user's cluster.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/peers.js';

const read = (f: string): string => readFileSync(join(REPO_ROOT, f), 'utf8');
const value = (text: string, re: RegExp, what: string): string => {
  const m = re.exec(text);
  assert.ok(m?.[1], `${what} not found`);
  return m[1];
};

void test('the Dockerfile pins the Envoy release and the Node.js major that scripts/peers.sh installs', () => {
  const dockerfile = read('Dockerfile');
  const peers = read('scripts/peers.sh');
  assert.equal(value(dockerfile, /^ARG ENVOY_VERSION=(\S+)$/m, 'Dockerfile ARG ENVOY_VERSION'), value(peers, /^ENVOY_VERSION=(\S+)$/m, 'peers.sh ENVOY_VERSION'));
  const nodeMajor = value(peers, /^NODE_VERSION=(\d+)\./m, 'peers.sh NODE_VERSION');
  assert.equal(value(dockerfile, /^ARG NODE_IMAGE=node:(\d+)-/m, 'Dockerfile ARG NODE_IMAGE'), nodeMajor);
  // package.json's engines say the same major
  const engines = (JSON.parse(read('package.json')) as { engines?: { node?: string } }).engines?.node ?? '';
  assert.match(engines, new RegExp(`^>=${nodeMajor}(\\.|$)`), `package.json engines.node: ${engines}`);
});
