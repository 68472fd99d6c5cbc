import type { Server } from 'node:http';

/**
 * Starts listening, and turns "address in use" into a message that says which setting to
 * change (`inUse`), since that is what an operator starting a second process on a machine hits.
 */
export function listen(server: Server, port: number, host: string, inUse: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(inUse, { cause: error }) : error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
