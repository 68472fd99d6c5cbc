import type { Server } from 'node:http';
import { StartupError } from './startup-error.js';

type ErrorListener = (error: Error) => void;

/**
 * Starts listening, and turns "address in use" into a message that says which setting to
 * change (`inUse`), since that is what an operator starting a second process on a machine hits.
 *
 * A failed listen is reported once, by the caller of this function. The server's other 'error'
 * listeners are there for a running server, and the WebSocket server re-emits every error of
 * the HTTP server it is attached to (graphql-ws prints it to stderr, app/ws.ts logs it): they
 * are set aside until the server listens or has failed to, or one taken port logs three times.
 */
export function listen(server: Server, port: number, host: string, inUse: string): Promise<void> {
  const others = server.rawListeners('error') as ErrorListener[];
  server.removeAllListeners('error');
  const restore = () => {
    for (const listener of others) server.on('error', listener);
  };
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      restore();
      reject(error.code === 'EADDRINUSE' ? new StartupError(inUse, { cause: error }) : error);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      restore();
      resolve();
    });
  });
}
