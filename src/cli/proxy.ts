import type { CliContext, ExitCode } from './context.js';
export async function runProxy(_args: readonly string[], ctx: CliContext): Promise<ExitCode> {
  ctx.stderr.write('Error: proxy: not yet wired\n');
  return 255;
}
