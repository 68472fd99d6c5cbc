import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../log.js';

/** What graphql-ws hands our hooks about the connection (`ctx.extra`). */
export interface SocketExtra {
  readonly socket: WebSocket;
  readonly request: IncomingMessage;
}

/**
 * graphql-ws's protocol core on a `ws` server: its own `use/ws` adapter, with two differences.
 * A write to a socket the client already reset ("Cannot call write after a stream was
 * destroyed") ends that socket quietly instead of rejecting: rejected, it failed the
 * subscription's loop, was reported as an error of ours and then closed the socket with 4500.
 * And whatever does fail in message handling goes to our log, not to console.error.
 */
export function serveGraphQLWs<P extends Record<string, unknown> | undefined>(
  options: ServerOptions<P, SocketExtra>,
  wss: WebSocketServer,
  keepAliveMs: number,
  log: Logger,
): { dispose(): Promise<void> } {
  const server = makeServer(options);
  wss.options.handleProtocols = handleProtocols;
  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    // A reset connection emits 'error' before 'close'; the close below cleans up.
    socket.on('error', (error) => log.debug({ err: error }, 'WebSocket client connection failed'));
    const keepAlive = keepAliveMs > 0 ? pingUntilClosed(socket, keepAliveMs) : undefined;
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, (error) => {
              if (error) socket.terminate();
              resolve();
            });
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) =>
          socket.on('message', (data: Buffer) => {
            handle(data.toString('utf8')).catch((error: unknown) => {
              log.error({ err: error }, 'internal error handling a WebSocket message');
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            });
          }),
      },
      { socket, request },
    );
    socket.once('close', (code, reason) => {
      keepAlive?.stop();
      closed(code, reason.toString('utf8')).catch((error: unknown) =>
        log.error({ err: error }, 'internal error closing a WebSocket connection'),
      );
    });
  });
  return {
    async dispose() {
      for (const client of wss.clients) client.close(1001, 'Going away');
      wss.removeAllListeners('connection');
      await new Promise<void>((resolve, reject) => wss.close((error) => (error ? reject(error) : resolve())));
    },
  };
}

/** Pings every `intervalMs`; a client that does not answer within as long is terminated. */
function pingUntilClosed(socket: WebSocket, intervalMs: number): { stop(): void } {
  let pongWait: NodeJS.Timeout | undefined;
  const interval = setInterval(() => {
    if (socket.readyState !== socket.OPEN) return;
    pongWait = setTimeout(() => socket.terminate(), intervalMs);
    socket.once('pong', () => {
      clearTimeout(pongWait);
      pongWait = undefined;
    });
    socket.ping();
  }, intervalMs);
  return {
    stop() {
      clearInterval(interval);
      clearTimeout(pongWait);
    },
  };
}
