import type { CliContext, ExitCode } from './context.js';
export async function runWait(_args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  ctx.stderr.write('Error: wait: not yet implemented\n');
  return 255;
}
export async function runRequest(_args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  ctx.stderr.write('Error: request: not yet implemented\n');
  return 255;
}
