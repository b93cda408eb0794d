import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, parseOutputLevels } from './log.js';

const at = () => new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678));

test("text format is Istio's: time with microseconds, level, scope (omitted for default), message, k=v fields", () => {
  const lines: string[] = [];
  const log = createLogger({ sink: { write: (l) => void lines.push(l) }, now: at, outputLevels: 'default:info' });
  log.info('Envoy command: [-c x]');
  log.scope('xdsproxy').warn('connected to upstream', { id: 1, addr: 'localhost:15012' });
  assert.deepEqual(lines, [
    '2026-01-02T03:04:05.678000Z\tinfo\tEnvoy command: [-c x]\n',
    '2026-01-02T03:04:05.678000Z\twarn\txdsproxy\tconnected to upstream\tid=1 addr=localhost:15012\n',
  ]);
});

test('--log_as_json: one JSON object per line with time, level, scope, msg and the fields', () => {
  const lines: string[] = [];
  const log = createLogger({ sink: { write: (l) => void lines.push(l) }, now: at, asJson: true });
  log.scope('sds').error('failed', { err: new Error('boom') });
  assert.deepEqual(JSON.parse(lines[0]!), { time: '2026-01-02T03:04:05.678000Z', level: 'error', scope: 'sds', msg: 'failed', err: 'boom' });
});

test('per-scope levels from --log_output_level; a bare level or all: applies to every scope; grpc is off by default', () => {
  const lines: string[] = [];
  const log = createLogger({ sink: { write: (l) => void lines.push(l) }, outputLevels: 'default:warn,xdsproxy:debug' });
  log.info('hidden');
  log.scope('xdsproxy').debug('shown');
  log.scope('grpc').error('hidden too');
  log.scope('other').warn('shown too');
  assert.equal(lines.length, 2);
  assert.equal(parseOutputLevels('debug').all, 'debug');
  assert.equal(parseOutputLevels('all:error').all, 'error');
  assert.throws(() => parseOutputLevels('default:loud'), /invalid output level 'loud' in 'default:loud'/);
});
