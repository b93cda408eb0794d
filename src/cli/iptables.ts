import type { CliContext, ExitCode } from './context.js';
export async function runIptables(_args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  ctx.stderr.write('Error: istio-iptables: not yet implemented\n');
  return 1;
}
