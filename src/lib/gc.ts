// Returning memory after a large xDS response. Relaying one (a 19 MiB CDS push, say) grows the heap by its
// size several times over (HTTP/2 frames, the message, its framing toward Envoy); once relayed it is all
// garbage, but a process that then sits idle allocates nothing, so V8 runs no collection and the RSS stays
// at the peak for as long as the pod lives. One full collection a few seconds after such a response (once
// for a burst of them) returns it. V8 exposes that collection only behind --expose-gc, which can be turned
// on at run time; the function it defines is taken from a fresh context, so no global `gc` appears.
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';

let collect: (() => void) | undefined;
let timer: NodeJS.Timeout | undefined;

function fullGc(): void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    // node:vm is loaded only here, on the first large response, not at start-up
    const vm = createRequire(import.meta.url)('node:vm') as typeof import('node:vm');
    collect = vm.runInNewContext('gc') as () => void;
  }
  collect();
}

/** Runs one full garbage collection `delayMs` from now, unless one is already scheduled. */
export function releaseMemorySoon(delayMs = 5000): void {
  if (timer) return;
  timer = setTimeout(() => {
    timer = undefined;
    fullGc();
  }, delayMs);
  timer.unref();
}
