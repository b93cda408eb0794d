// Creating the XDS (and SDS) Unix sockets with a chosen mode and no window in which they are more open.
// The socket is bound inside a fresh 0700 directory next to its final path (unreachable by anyone else),
// chmod'ed to its mode there (0600 by default: owner only), and only then renamed into place. rename(2) is
// atomic and keeps the bound socket, so the path either does not exist or is a listening socket with its
// final mode. No process-wide umask change is needed (that would race with other files the agent writes).
// Proxyless gRPC applications run as another user and reach ./etc/istio/proxy/XDS through a shared volume,
// so the agent binds it 0666 in that mode (pilot-agent always uses 0666).
import { chmod, lstat, mkdir, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';
import { basename, dirname, join, relative } from 'node:path';

/** sizeof(sockaddr_un.sun_path) - 1 on Linux. */
const MAX_UNIX_PATH = 107;

/** Owner read/write only: the default for sockets only processes of the agent's user need. */
export const OWNER_ONLY_SOCKET_MODE = 0o600;

/** Throws unless `mode` is a plain permission mask (0 to 0o777, no setuid/setgid/sticky bits). */
export function checkSocketMode(mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new Error(`socket mode must be a permission mask between 0 and 0o777, got ${Number.isInteger(mode) ? `0o${mode.toString(8)}` : String(mode)}`);
  }
}

export interface BoundSocket {
  /** Inode of the socket file, to remove only our own socket on close. */
  readonly ino: number;
}

/** Shortest usable spelling of `abs` for bind(2): absolute, or relative to `processCwd` when that fits. */
function bindablePath(abs: string, processCwd: string): string {
  if (Buffer.byteLength(abs) <= MAX_UNIX_PATH) return abs;
  const rel = relative(processCwd, abs);
  if (Buffer.byteLength(rel) <= MAX_UNIX_PATH) return rel;
  throw new Error(`unix socket path too long (${Buffer.byteLength(abs)} bytes, max ${MAX_UNIX_PATH}): ${abs}`);
}

/**
 * Removes a stale socket at `path`, creates its directory (0750, as pilot-agent; an existing directory is
 * left as it is), and binds a listening socket there with `mode` (default 0600) through `bind` (which
 * receives the path to bind to and resolves once listening).
 */
export async function bindOwnerOnlySocket(
  path: string,
  bind: (bindPath: string) => Promise<void>,
  processCwd: string,
  mode: number = OWNER_ONLY_SOCKET_MODE,
): Promise<BoundSocket> {
  checkSocketMode(mode);
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o750 });
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`failed to remove unix://${path}: ${(e as Error).message}`);
  }
  const tmpDir = await mkdtemp(join(dir, `.${basename(path)}-`)); // mode 0700
  try {
    const tmpSock = join(tmpDir, 's');
    await bind(bindablePath(tmpSock, processCwd));
    await chmod(tmpSock, mode);
    await rename(tmpSock, path);
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} is not a socket after rename`);
    return { ino: st.ino };
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}

/** Removes the socket file if it is still the one we created. */
export async function removeOwnSocket(path: string, sock: BoundSocket): Promise<void> {
  try {
    const st = await lstat(path);
    if (st.isSocket() && st.ino === sock.ino) await unlink(path);
  } catch {
    // already gone
  }
}

/** Binds a grpc-js server on a Unix socket at `path` with `mode`, default owner-only 0600 (see bindOwnerOnlySocket). */
export async function bindGrpcServerOnUds(server: GrpcServer, path: string, processCwd: string, mode: number = OWNER_ONLY_SOCKET_MODE): Promise<BoundSocket> {
  return bindOwnerOnlySocket(
    path,
    (bindPath) =>
      new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix:${bindPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
      }),
    processCwd,
    mode,
  );
}

/** Graceful stop of a grpc-js server, forced after `timeoutMs` (open streams would otherwise hold it forever). */
export function shutdownGrpcServer(server: GrpcServer, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
