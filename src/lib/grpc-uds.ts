// gRPC servers on Unix sockets bound by lib/uds.ts: the server adopts the socket's connections (those
// that waited while gRPC was loading, then each new one) through grpc-js's connection injector.
import { ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';
import type { UdsListener } from './uds.js';

/** Serves `server` (plaintext HTTP/2: the socket is local and owner-only) on the connections of `listener`. */
export function serveGrpcOnUds(server: GrpcServer, listener: UdsListener): void {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  listener.adopt((socket) => {
    injector.injectConnection(socket);
    socket.resume();
  });
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
