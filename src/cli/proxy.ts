// `agent proxy [sidecar|router|...]`: a thin caller. The configuration is assembled in proxy-load.ts (from
// src/config and the bootstrap's checks), the bootstrap lives in src/bootstrap, the agent in src/agent.
import type { CliContext, ExitCode } from '../lib/context.js';
import { flagHelp } from './flags.js';
import { PROXY_FLAGS } from './proxy-flags.js';
import { loadProxyCommand } from './proxy-load.js';
import { generateBootstrap, probeBootstrapRuntime, writeGrpcBootstrap } from '../bootstrap/index.js';
import { ConfigError, errorMessage } from '../lib/errors.js';
import { startEarlyKey } from '../identity/keys.js';
import { PassThrough } from 'node:stream';

export function proxyHelp(): string {
  return ['XDS proxy agent', '', 'Usage:', '  agent proxy [sidecar|router|waypoint|ztunnel|agentgateway] [flags]', '', 'Flags:', flagHelp(PROXY_FLAGS), ''].join('\n');
}

export async function runProxy(args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  if (args.includes('--help') || args.includes('-h')) {
    ctx.stdout.write(proxyHelp());
    return 0;
  }
  // the first workload key is generated on the thread pool from here on, while the main thread loads the
  // agent's components (xDS, status, Envoy supervision) and reads the configuration; --bootstrap-only
  // needs neither
  const bootstrapOnly = args.includes('--bootstrap-only');
  const earlyKey = bootstrapOnly ? undefined : startEarlyKey(ctx.env);
  const agentModule = bootstrapOnly ? undefined : import('../agent/index.js');
  agentModule?.catch(() => undefined);
  let loaded;
  try {
    loaded = await loadProxyCommand(args, ctx);
  } catch (e) {
    if (e instanceof ConfigError) {
      ctx.stderr.write(`Error: failed to get proxy config: ${e.message}\n`);
      return 255;
    }
    throw e;
  }
  const { config, log } = loaded;
  if (config.bootstrapOnly) {
    try {
      const runtime = await probeBootstrapRuntime(config);
      const grpc = await writeGrpcBootstrap(config, runtime);
      log.info(`gRPC bootstrap written to ${grpc}`);
      if (config.env.disableEnvoy) {
        log.info('DISABLE_ENVOY is set: no Envoy bootstrap (proxyless mode)');
        return 0;
      }
      const out = await generateBootstrap(config, log, runtime);
      log.info(out.generated ? `Envoy bootstrap written to ${out.path}` : `Envoy bootstrap is the custom config file ${out.path}`);
      return 0;
    } catch (e) {
      log.error(`failed to generate bootstrap: ${errorMessage(e)}`);
      ctx.stderr.write(`Error: failed to generate bootstrap config: ${errorMessage(e)}\n`);
      return 255;
    }
  }
  const quiet: CliContext = { ...ctx, stdout: new PassThrough().resume(), stderr: new PassThrough().resume() };
  const { runAgent } = await agentModule!;
  return runAgent({
    config,
    log,
    ctx,
    reload: async () => (await loadProxyCommand(args, quiet)).config,
    processStartMs: Date.now() - process.uptime() * 1000,
    ...(earlyKey ? { earlyKey } : {}),
  });
}
