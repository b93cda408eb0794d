import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags, type FlagSpec } from './flags.js';

const SPECS: FlagSpec[] = [
  { name: 'envoy-port', short: 'p', type: 'string', default: '15001', help: '' },
  { name: 'dry-run', short: 'n', type: 'bool', default: false, env: ['DRY_RUN'], help: '' },
  { name: 'concurrency', type: 'int', default: 0, help: '' },
  { name: 'drain', type: 'duration', default: 5000, help: '' },
  { name: 'log_target', type: 'stringArray', default: ['stdout'], help: '' },
];

test('pflag spellings: --a=b, --a b, -p v, -pv, -p=v, bare and explicit booleans, repeated arrays, --', () => {
  const p = parseFlags(['--concurrency=2', '-p', '1', '--drain', '1m30s', '-n', '--log_target', 'a', '--log_target=b', 'sidecar', '--', '--x'], SPECS);
  assert.equal(p.values.get('concurrency'), 2);
  assert.equal(p.values.get('envoy-port'), '1');
  assert.equal(p.values.get('drain'), 90_000);
  assert.equal(p.values.get('dry-run'), true);
  assert.deepEqual(p.values.get('log_target'), ['a', 'b']);
  assert.deepEqual(p.positionals, ['sidecar', '--x']);
  assert.equal(parseFlags(['-p15002'], SPECS).values.get('envoy-port'), '15002');
  assert.equal(parseFlags(['-p=15003'], SPECS).values.get('envoy-port'), '15003');
  assert.equal(parseFlags(['--dry-run=false'], SPECS, { DRY_RUN: 'true' }).values.get('dry-run'), false);
});

test('env bindings apply only when the flag is absent; unknown flags are collected with their value stripped', () => {
  const p = parseFlags(['--binaryPath', '/x', '--foo=1', 'router'], SPECS, { DRY_RUN: 'true' });
  assert.equal(p.values.get('dry-run'), true);
  assert.equal(p.fromEnv.get('dry-run'), 'DRY_RUN');
  assert.deepEqual(p.unknown, ['--binaryPath', '--foo']);
  assert.deepEqual(p.positionals, ['router']);
});

test('bad values name their source', () => {
  const p = parseFlags(['--concurrency=two', '--drain=5x', '--dry-run=maybe'], SPECS, {});
  assert.deepEqual(p.issues.map((i) => i.source), ['flag --concurrency', 'flag --drain', 'flag --dry-run']);
  assert.match(p.issues[1]!.message, /unknown unit "x" in duration "5x"/);
  const e = parseFlags([], SPECS, { DRY_RUN: 'yes' });
  assert.deepEqual(e.issues, [{ source: 'env DRY_RUN', message: 'invalid boolean value "yes" (want true or false)' }]);
  assert.match(parseFlags(['--concurrency'], SPECS).issues[0]!.message, /flag needs an argument/);
});
