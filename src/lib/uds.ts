// Creating the XDS (and SDS) Unix sockets with a chosen mode and no window in which they are more open.
// The socket is bound inside a fresh 0700 directory next to its final path (unreachable by anyone else),
// chmod'ed to its mode there (0600 by default: owner only), and only then renamed into place. rename(2) is
// atomic and keeps the bound socket, so the path either does not exist or is a listening socket with its
// final mode. No process-wide umask change is needed (that would race with other files the agent writes).
// Proxyless gRPC applications run as another user and reach ./etc/istio/proxy/XDS through a shared volume,
// so the agent binds it 0666 in that mode (pilot-agent always uses 0666).
//
// listenUds binds such a socket with node:net alone, so the agent can create the XDS and SDS sockets
// before it has loaded gRPC: Envoy, started right after, finds them listening (a missing socket would put
// it into its reconnect back-off), and connections that arrive before the gRPC server is ready wait,
// unread, until it adopts them (the gRPC servers of lib/grpc-h2/server.ts).
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { lstatPath as lstat } from './files.js';
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
  // the file system steps are synchronous: the sockets are bound on the way to Envoy's spawn (src/lib/files.ts)
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`failed to remove unix://${path}: ${(e as Error).message}`);
  }
  const tmpDir = mkdtempSync(join(dir, `.${basename(path)}-`)); // mode 0700
  try {
    const tmpSock = join(tmpDir, 's');
    await bind(bindablePath(tmpSock, processCwd));
    chmodSync(tmpSock, mode);
    renameSync(tmpSock, path);
    const st = lstatSync(path);
    if (!st.isSocket()) throw new Error(`${path} is not a socket after rename`);
    return { ino: st.ino };
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
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

/** Connections held before a server adopts the socket; more are refused (closed) until it does. */
export const MAX_WAITING_CONNECTIONS = 64;

/** A listening Unix socket whose connections are handed to a server once it is ready. */
export interface UdsListener {
  readonly path: string;
  /**
   * Hands every connection to `serve`: those waiting since the bind (paused, nothing read yet), then each
   * new one. Call once.
   */
  adopt(serve: (socket: Socket) => void): void;
  /** Stops accepting, closes connections still waiting, and removes the socket file if it is still ours. */
  close(): Promise<void>;
}

/** Binds a listening Unix socket at `path` with `mode` (see bindOwnerOnlySocket); see UdsListener. */
export async function listenUds(path: string, processCwd: string, mode: number = OWNER_ONLY_SOCKET_MODE): Promise<UdsListener> {
  const waiting = new Set<Socket>();
  let serve: ((socket: Socket) => void) | undefined;
  const server: NetServer = createServer({ pauseOnConnect: true }, (socket) => {
    if (serve) return serve(socket);
    if (waiting.size >= MAX_WAITING_CONNECTIONS) return void socket.destroy();
    socket.on('error', () => undefined);
    socket.once('close', () => waiting.delete(socket));
    waiting.add(socket);
  });
  const bound = await bindOwnerOnlySocket(
    path,
    (bindPath) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(bindPath, () => {
          server.off('error', reject);
          resolve();
        });
      }),
    processCwd,
    mode,
  );
  server.on('error', () => undefined); // accept errors (e.g. EMFILE) are retried by libuv
  let closed = false;
  return {
    path,
    adopt(s) {
      if (serve) throw new Error(`${path}: already adopted`);
      serve = s;
      for (const socket of waiting) if (!socket.destroyed) s(socket);
      waiting.clear();
    },
    async close() {
      if (closed) return;
      closed = true;
      // the waiting connections first: server.close() calls back only once every connection has ended
      // (closing a listener nothing adopted, e.g. start-up failed before the xDS proxy, would never finish)
      const closedServer = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of waiting) socket.destroy();
      waiting.clear();
      await closedServer;
      await removeOwnSocket(path, bound);
    },
  };
}
