// SDS resource names, as pilot-agent reads them (pkg/security): `default` (the workload key and
// certificate), `ROOTCA` (the workload trust bundle), `file-cert:<cert>~<key>`, `file-root:<ca>` and
// `file-root:system` (the OS trust store). Any other name is served the workload certificate.

export const WORKLOAD_RESOURCE = 'default';
export const ROOT_RESOURCE = 'ROOTCA';
export const FILE_ROOT_SYSTEM = 'file-root:system';

export type ResourceRef =
  | { readonly kind: 'workload' }
  | { readonly kind: 'rootca' }
  | { readonly kind: 'file-cert'; readonly certPath: string; readonly keyPath: string }
  | { readonly kind: 'file-root'; readonly caPath: string }
  /** A `file-` name that parses but names no file (pilot-agent answers it with nothing). */
  | { readonly kind: 'invalid-file'; readonly reason: string };

/**
 * What `name` refers to. `osRootPath` is the OS bundle `file-root:system` stands for; when it is ''
 * (none found), that name falls through to the workload certificate, as in pilot-agent.
 */
export function parseResourceName(name: string, osRootPath: string): ResourceRef {
  if (name === ROOT_RESOURCE) return { kind: 'rootca' };
  if (name === FILE_ROOT_SYSTEM) return osRootPath ? { kind: 'file-root', caPath: osRootPath } : { kind: 'workload' };
  if (name.startsWith('file-cert:')) {
    const parts = name.slice('file-cert:'.length).split('~');
    if (parts.length !== 2) return { kind: 'workload' };
    const [certPath, keyPath] = parts as [string, string];
    if (!certPath || !keyPath) return { kind: 'invalid-file', reason: `resource ${name} does not name both a certificate and a key file` };
    return { kind: 'file-cert', certPath, keyPath };
  }
  if (name.startsWith('file-root:')) {
    const parts = name.slice('file-root:'.length).split('~');
    if (parts.length !== 1) return { kind: 'workload' };
    if (!parts[0]) return { kind: 'invalid-file', reason: `resource ${name} does not name a file` };
    return { kind: 'file-root', caPath: parts[0] };
  }
  return { kind: 'workload' };
}

/** Whether `name` is served as a validation context (trusted CA) rather than a certificate and key. */
export function isRootResource(name: string, osRootPath: string): boolean {
  const ref = parseResourceName(name, osRootPath);
  return ref.kind === 'rootca' || ref.kind === 'file-root';
}
