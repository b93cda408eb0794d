#!/usr/bin/env node
// Entry of the bundle (build/bundle/main.js, `node main.js ...`). The image and the tests run the single
// executable instead (src/sea.ts): the same CLI, started from a V8 snapshot.
import * as nodeModule from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { V8_RUNTIME_FLAGS, runProcess } from './process.js';

setFlagsFromString(V8_RUNTIME_FLAGS);
// Node.js caches the code it compiles between starts: in NODE_COMPILE_CACHE, else in the OS temporary
// directory. It must be enabled before the agent's modules load, hence the dynamic import below. A cache
// that cannot be read or written costs nothing but the saving (NODE_DISABLE_COMPILE_CACHE=1 turns it off).
nodeModule.enableCompileCache?.();
const { runCli } = await import('./cli/index.js');
void runProcess(runCli);
