// Polling for integration tests: retries until a value, then fails naming what it waited for, the last
// error and the peers' output.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a value (not undefined); throws with the last error and diag() at the deadline. */
export async function poll<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, diag: () => string | Promise<string> = () => '', everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message ?? String(last)})` : ''}\n${await diag()}`);
}
