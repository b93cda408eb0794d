// Public API of the bootstrap component: compute, render and write Envoy's bootstrap the way
// pilot-agent does (template choice, envoy-rev.json, lightstep token), plus the helpers around it.
import { readFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import type { AgentConfig } from '../config/agent-config.js';
import { goPathJoin } from '../config/gocompat.js';
import type { Logger } from '../lib/log.js';
import { replaceFileSync } from '../lib/files.js';
import { bootstrapParams, BootstrapError, type BootstrapParams, type BootstrapRuntime, type SideFile } from './params.js';
import { renderBootstrap } from './render.js';
import { goTemplateData } from './template-data.js';
import { renderGoTemplate } from './gotemplate.js';

export { BootstrapError, type BootstrapParams, type BootstrapRuntime } from './params.js';
export { bootstrapOverrideJson } from './override.js';
export { writeGrpcBootstrap, buildGrpcBootstrap } from './grpc-bootstrap.js';

export interface BuiltBootstrap {
  /** The bootstrap document (for the built-in template) or undefined when a Go template produced `text`. */
  readonly document: Record<string, unknown> | undefined;
  /** The file contents to write. */
  readonly text: string;
  /** `envoy-rev.json` or `envoy-rev.yaml` (YAML templates). */
  readonly fileName: string;
  readonly params: BootstrapParams;
  readonly sideFiles: readonly SideFile[];
  readonly warnings: readonly string[];
  /** The Go template used, or '' for the built-in data-driven template. */
  readonly templatePath: string;
}

/** Where pilot-agent would read the template from: ISTIO_BOOTSTRAP > proxyBootstrapTemplatePath (--templateFile). */
export function templatePathFor(cfg: AgentConfig): string {
  if (cfg.env.istioBootstrap !== '') return cfg.env.istioBootstrap;
  return cfg.proxy.proxyBootstrapTemplatePath;
}

/** Builds the bootstrap with the built-in template (pure). */
export function buildBootstrap(cfg: AgentConfig, runtime: BootstrapRuntime = {}): BuiltBootstrap {
  const params = bootstrapParams(cfg, runtime);
  const document = renderBootstrap(params);
  return {
    document,
    text: `${JSON.stringify(document, null, 2)}\n`,
    fileName: 'envoy-rev.json',
    params,
    sideFiles: params.sideFiles,
    warnings: params.warnings,
    templatePath: '',
  };
}

/** Builds the bootstrap by rendering a Go text/template file (ISTIO_BOOTSTRAP, --templateFile). */
export async function buildBootstrapFromTemplate(cfg: AgentConfig, templatePath: string, runtime: BootstrapRuntime = {}): Promise<BuiltBootstrap> {
  const params = bootstrapParams(cfg, runtime);
  let source: string;
  try {
    source = await readFile(resolve(cfg.paths.cwd, templatePath), 'utf8');
  } catch (e) {
    throw new BootstrapError(`failed to read bootstrap template ${templatePath}: ${(e as Error).message}`);
  }
  let text: string;
  try {
    text = renderGoTemplate(source, goTemplateData(params));
  } catch (e) {
    throw new BootstrapError(`failed to render bootstrap template ${templatePath}: ${(e as Error).message}`);
  }
  const yaml = templatePath.endsWith('.yaml') || templatePath.endsWith('.yaml.tmpl');
  return {
    document: undefined,
    text,
    fileName: yaml ? 'envoy-rev.yaml' : 'envoy-rev.json',
    params,
    sideFiles: params.sideFiles,
    warnings: params.warnings,
    templatePath,
  };
}

/** Writes side files and the bootstrap atomically into `<configPath>` (dir 0700). Returns the file's path. */
export async function writeBootstrap(cfg: AgentConfig, built: BuiltBootstrap): Promise<string> {
  for (const f of built.sideFiles) replaceFileSync(resolve(cfg.paths.cwd, f.path), f.content, f.mode);
  const out = resolve(cfg.paths.cwd, goPathJoin(cfg.proxy.configPath, built.fileName));
  replaceFileSync(out, built.text, 0o644);
  return out;
}

/** Whether a UNIX socket exists at `path` and accepts a connection within `timeoutMs`. */
export async function socketHealthy(path: string, timeoutMs = 1000): Promise<boolean> {
  try {
    if (!statSync(path, { throwIfNoEntry: false })?.isSocket()) return false;
  } catch {
    return false;
  }
  return new Promise((done) => {
    const s = connect(path);
    const t = setTimeout(() => finish(false), timeoutMs);
    function finish(ok: boolean): void {
      clearTimeout(t);
      s.destroy();
      done(ok);
    }
    s.once('connect', () => finish(true));
    s.once('error', () => finish(false));
  });
}

/**
 * The run-time facts pilot-agent checks when it writes the bootstrap (SDS sockets on disk). Call it
 * before the agent binds its own SDS socket, and reuse the result when regenerating the bootstrap.
 */
export async function probeBootstrapRuntime(cfg: AgentConfig): Promise<BootstrapRuntime> {
  return {
    credentialSocketExists: await socketHealthy(cfg.paths.credentialSdsSocket),
    workloadSocketExists: await socketHealthy(cfg.paths.workloadSdsSocket),
  };
}

export interface GeneratedBootstrap {
  /** Absolute path of the file Envoy is started with. */
  readonly path: string;
  /** The `-c` argument exactly as pilot-agent passes it (`etc/istio/proxy/envoy-rev.json`, relative to the cwd). */
  readonly envoyConfigArg: string;
  /** True when we wrote it (pilot-agent deletes it when Envoy exits); false for customConfigFile. */
  readonly generated: boolean;
  /** What was written, when generated. */
  readonly text?: string;
}

/** A bootstrap ready to be written (see prepareBootstrap / commitBootstrap). */
export interface PreparedBootstrap {
  /** undefined for customConfigFile (used as-is, nothing to write). */
  readonly built: BuiltBootstrap | undefined;
  /** Absolute path of the file Envoy is started with. */
  readonly path: string;
  /** The `-c` argument exactly as pilot-agent passes it (relative to the cwd). */
  readonly envoyConfigArg: string;
}

/**
 * What pilot-agent does before starting Envoy, without writing: ProxyConfig.customConfigFile as-is, or the
 * template (ISTIO_BOOTSTRAP / --templateFile), or the built-in bootstrap.
 */
export async function prepareBootstrap(cfg: AgentConfig, log: Logger, runtime: BootstrapRuntime = {}): Promise<PreparedBootstrap> {
  if (cfg.proxy.customConfigFile !== '' && cfg.env.istioBootstrap === '') {
    log.info(`Using custom Envoy bootstrap as-is: ${cfg.proxy.customConfigFile}`);
    return { built: undefined, path: resolve(cfg.paths.cwd, cfg.proxy.customConfigFile), envoyConfigArg: cfg.proxy.customConfigFile };
  }
  const tpl = templatePathFor(cfg);
  const built = tpl === '' ? buildBootstrap(cfg, runtime) : await buildBootstrapFromTemplate(cfg, tpl, runtime);
  for (const w of built.warnings) log.warn(w);
  log.info(`Pilot SAN: [${built.params.pilotSan.join(' ')}]`);
  return { built, path: resolve(cfg.paths.cwd, goPathJoin(cfg.proxy.configPath, built.fileName)), envoyConfigArg: goPathJoin(cfg.proxy.configPath, built.fileName) };
}

/** Writes a prepared bootstrap (side files, then the bootstrap, atomically). */
export async function commitBootstrap(cfg: AgentConfig, p: PreparedBootstrap): Promise<GeneratedBootstrap> {
  if (!p.built) return { path: p.path, envoyConfigArg: p.envoyConfigArg, generated: false };
  const path = await writeBootstrap(cfg, p.built);
  return { path, envoyConfigArg: p.envoyConfigArg, generated: true, text: p.built.text };
}

/** prepareBootstrap then commitBootstrap: what pilot-agent does before starting Envoy. */
export async function generateBootstrap(cfg: AgentConfig, log: Logger, runtime: BootstrapRuntime = {}): Promise<GeneratedBootstrap> {
  return commitBootstrap(cfg, await prepareBootstrap(cfg, log, runtime));
}
