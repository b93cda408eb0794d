// Property tests for the downward-API file parser (`./etc/istio/pod/annotations`, `.../labels`): the
// kubelet writes `key="go-quoted value"` lines, but the agent must survive any file content.
//   - any text and any bytes (invalid UTF-8, NULs, CRs, huge lines): a map, or an Error naming the line;
//   - what the kubelet writes (%q values, any key without "=" or newline, `__proto__` included) parses
//     back to the same map, also for large files;
//   - the loader refuses a file over 1 MiB (limits.ts) with a problem naming the file, and reports any
//     other bad file content with the file as the source.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { anyString, soup } from '../../test/helpers/config-arbitraries.js';
import { IssueList } from '../lib/errors.js';
import { formatDownwardApi, parseDownwardApi } from './downward-api.js';
import { MAX_FILE_BYTES } from './limits.js';
import { POD_ANNOTATIONS_PATH, POD_LABELS_PATH, readPodInfo } from './load.js';

/** Parses; returns the map, or the line number of the Error. Any other throw fails the property. */
function outcome(text: string): Record<string, string> | number {
  try {
    return parseDownwardApi(text);
  } catch (e) {
    assert.ok(e instanceof Error && e.constructor === Error, `threw ${String((e as Error)?.name)}`);
    const m = /^line (\d+): failed to unquote (.*): invalid syntax$/s.exec(e.message);
    assert.ok(m, `unexpected message: ${e.message}`);
    assert.ok(m[2]!.length <= 240, 'the quoted value in the message is shortened');
    return Number(m[1]);
  }
}

const lineSoup = soup(['=', '"', '\\', '\\"', '\\n', '\\x', '\\u00', '\\U0001F600', '\\377', '`', "'", '\r', '\t', 'key', 'value', '\u0000', 'é', '😀', ' ']);
const fileSoup = fc.array(fc.oneof(lineSoup, fc.constantFrom('a="b"', 'k=""', 'no-equals', '', '=""', 'k="unterminated', 'k=`raw`', "k='c'")), { maxLength: 8 }).map((l) => l.join('\n'));
/** Keys as the kubelet could write them: anything without "=" or a newline. */
const key = anyString(20).filter((k) => !k.includes('=') && !k.includes('\n'));

void describe('downward-API files: parseDownwardApi', () => {
  void it('any text: a map, or an Error naming a line of the file', () => {
    fc.assert(
      fc.property(fc.oneof(fileSoup, anyString(200)), (text) => {
        const r = outcome(text);
        if (typeof r === 'number') assert.ok(r >= 1 && r <= text.split('\n').length);
      }),
      { numRuns: 3000 },
    );
  });

  void it('any bytes (invalid UTF-8 included), decoded as the loader decodes a file', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.oneof(fc.constantFrom(...[0x22, 0x3d, 0x5c, 0x0a, 0x0d, 0x78, 0x61].map((b) => [b])), fc.constantFrom([0xc3], [0xff], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80])), { maxLength: 60 }).map((a) => Uint8Array.from(a.flat())),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        outcome(Buffer.from(b).toString('utf8'));
      }),
      { numRuns: 3000 },
    );
  });

  void it('what the kubelet writes (key=%q per line) parses back to the same map', () => {
    const map = fc.dictionary(fc.oneof(key, fc.constantFrom('__proto__', 'constructor', 'toString', 'proxy.istio.io/config')), fc.oneof(anyString(40), fc.string({ unit: 'binary', maxLength: 200 })), { maxKeys: 12 });
    fc.assert(
      fc.property(map, (m) => {
        const back = parseDownwardApi(formatDownwardApi(m));
        assert.deepEqual(Object.entries(back), Object.entries(m));
      }),
      { numRuns: 2000 },
    );
  });

  void it('the error names the line that does not unquote', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, anyString(10)), { maxLength: 10 }), fc.nat(), (pairs, at) => {
        const lines = pairs.map(([k, v]) => `${k}=${JSON.stringify(v).replace(/[\u2028\u2029]/g, '')}`);
        const bad = at % (lines.length + 1);
        lines.splice(bad, 0, 'bad=not-quoted');
        const r = outcome(lines.join('\n'));
        // an earlier line may not unquote either (JSON is not always a valid Go literal)
        assert.ok(typeof r === 'number' && r <= bad + 1, `${String(r)} vs ${bad + 1}`);
      }),
      { numRuns: 500 },
    );
  });

  void it('large files and huge lines parse in linear time (a 900 KiB value, 50,000 lines)', () => {
    const big = 'é"\\\n'.repeat(150_000);
    assert.equal(parseDownwardApi(formatDownwardApi({ big })).big, big);
    const many: Record<string, string> = {};
    for (let i = 0; i < 50_000; i++) many[`k${i}`] = `v${i}`;
    assert.equal(Object.keys(parseDownwardApi(formatDownwardApi(many))).length, 50_000);
    // an invalid huge line: the error quotes a short prefix of it
    assert.throws(() => parseDownwardApi(`k=${'x'.repeat(500_000)}`), (e: Error) => e.message.length < 300 && /^line 1: failed to unquote x{200}…\(500000 characters\): invalid syntax$/.test(e.message));
  });
});

void describe('downward-API files: the loader (readPodInfo)', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const pod = async (annotations: Uint8Array | string | undefined, labels?: Uint8Array | string) => {
    const cwd = await mkdtemp(join(tmpdir(), 'downward-'));
    dirs.push(cwd);
    await mkdir(join(cwd, 'etc/istio/pod'), { recursive: true });
    if (annotations !== undefined) await writeFile(join(cwd, POD_ANNOTATIONS_PATH), annotations);
    if (labels !== undefined) await writeFile(join(cwd, POD_LABELS_PATH), labels);
    const issues = new IssueList();
    const info = await readPodInfo(cwd, issues);
    return { info, issues: issues.items };
  };

  void it('any file content: values, or problems whose source is the file', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 200 }), fileSoup), fc.oneof(fc.uint8Array({ maxLength: 200 }), fileSoup), async (a, l) => {
        const { issues } = await pod(a, l);
        for (const i of issues) assert.ok([`file ${POD_ANNOTATIONS_PATH}`, `file ${POD_LABELS_PATH}`].includes(i.source), i.source);
      }),
      { numRuns: 150 },
    );
  });

  void it('refuses a file over 1 MiB, naming it; accepts one of exactly 1 MiB', async () => {
    const line = (n: number) => `k="${'v'.repeat(n - 4)}"`; // n bytes
    const over = await pod(line(MAX_FILE_BYTES + 1), line(MAX_FILE_BYTES));
    assert.deepEqual(over.issues, [{ source: `file ${POD_ANNOTATIONS_PATH}`, message: 'file is 1048577 bytes, larger than the 1 MiB limit for a downward-API file' }]);
    assert.equal(over.info.annotations.exists, true);
    assert.equal(over.info.labels.values.k!.length, MAX_FILE_BYTES - 4);
    const huge = await pod(undefined, Buffer.alloc(64 * MAX_FILE_BYTES, 0x61));
    assert.deepEqual(huge.issues.map((i) => i.source), [`file ${POD_LABELS_PATH}`]);
    assert.match(huge.issues[0]!.message, /^file is 64 MiB, larger than the 1 MiB limit/);
  });
});
