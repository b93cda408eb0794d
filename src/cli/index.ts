// Command table and dispatch for the `agent` binary: the same subcommands pilot-agent has.
import type { CliContext, ExitCode } from '../lib/context.js';
import { flagHelp, parseFlags, type FlagSpec } from './flags.js';
import { LOG_FLAGS } from './global-flags.js';
import { AGENT_NAME, AGENT_VERSION, ISTIO_GIT_REVISION, ISTIO_VERSION } from '../version.js';

interface Command {
  readonly name: string;
  readonly summary: string;
  run(args: readonly string[], ctx: CliContext): Promise<ExitCode>;
}

const COMMANDS: readonly Command[] = [
  {
    name: 'proxy',
    summary: 'XDS proxy agent',
    run: async (args, ctx) => (await import('./proxy.js')).runProxy(args, ctx),
  },
  {
    name: 'istio-iptables',
    summary: 'Set up iptables rules for Istio Sidecar',
    run: async (args, ctx) => (await import('./iptables.js')).runIptables(args, ctx),
  },
  {
    name: 'wait',
    summary: 'Waits until the Envoy proxy is ready',
    run: async (args, ctx) => (await import('./wait.js')).runWait(args, ctx),
  },
  {
    name: 'request',
    summary: 'Makes an HTTP request to the Envoy admin API',
    run: async (args, ctx) => (await import('./wait.js')).runRequest(args, ctx),
  },
  { name: 'version', summary: 'Prints out build version information', run: async (args, ctx) => runVersion(args, ctx) },
];

const VERSION_FLAGS: readonly FlagSpec[] = [
  { name: 'short', short: 's', type: 'bool', default: false, help: 'Use --short=false to generate full version information' },
  { name: 'output', short: 'o', type: 'string', default: '', help: "One of 'yaml' or 'json'." },
  ...LOG_FLAGS,
];

function buildInfo() {
  return {
    version: ISTIO_VERSION,
    revision: ISTIO_GIT_REVISION,
    golang_version: `node${process.versions.node}`,
    status: 'Clean',
    tag: ISTIO_VERSION,
    agent: `${AGENT_NAME} ${AGENT_VERSION}`,
  };
}

function runVersion(args: readonly string[], ctx: CliContext): ExitCode {
  const p = parseFlags(args, VERSION_FLAGS);
  if (p.issues.length) return usageError(ctx, p.issues.map((i) => `${i.source}: ${i.message}`).join('; '));
  const out = p.values.get('output') as string;
  const info = buildInfo();
  if (out === 'json') ctx.stdout.write(`${JSON.stringify({ clientVersion: info }, null, 2)}\n`);
  else if (out === 'yaml')
    ctx.stdout.write(`clientVersion:\n${Object.entries(info).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`);
  else if (out !== '') return usageError(ctx, "--output must be 'yaml' or 'json'");
  else if (p.values.get('short')) ctx.stdout.write(`client version: ${info.version}\n`);
  else
    ctx.stdout.write(
      `client version: version.BuildInfo{Version:"${info.version}", GitRevision:"${info.revision}", GolangVersion:"${info.golang_version}", BuildStatus:"${info.status}", GitTag:"${info.tag}"} (${info.agent})\n`,
    );
  return 0;
}

function usageError(ctx: CliContext, msg: string): ExitCode {
  ctx.stderr.write(`Error: ${msg}\n`);
  return 255;
}

export function rootHelp(): string {
  return [
    `${AGENT_NAME} ${AGENT_VERSION}: Istio ${ISTIO_VERSION} compatible sidecar agent (pilot-agent equivalent).`,
    '',
    'Usage:',
    '  agent [command]',
    '',
    'Available Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(16)}${c.summary}`),
    `  ${'help'.padEnd(16)}Help about any command`,
    '',
    'Global Flags:',
    flagHelp(LOG_FLAGS),
    '',
    'Use "agent [command] --help" for more information about a command.',
    '',
  ].join('\n');
}

export async function runCli(argv: readonly string[], ctx: CliContext): Promise<ExitCode> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    const sub = first === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (sub) return sub.run(['--help'], ctx);
    ctx.stdout.write(rootHelp());
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === first);
  if (!cmd) {
    ctx.stderr.write(`Error: unknown command "${first}" for "agent"\nRun 'agent --help' for usage.\n`);
    return 255;
  }
  return cmd.run(rest, ctx);
}
