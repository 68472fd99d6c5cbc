import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { listen } from '../support/listen.js';
import { Condition } from '../support/log-limit.js';
import type { Metrics } from './index.js';

/**
 * /metrics and /healthz for processes without the app role (a standalone relay or worker),
 * on a port of their own. With the app role, the app's HTTP server serves /metrics instead.
 */
export class MetricsServer {
  private readonly server: Server;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    // Scraped every few seconds: a collection failing through an outage is one line per interval.
    const failing = new Condition(log, 'metrics collection failing');
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/metrics') {
        this.metrics.registry.metrics().then(
          (text) => {
            failing.cleared();
            res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text);
          },
          (error: unknown) => {
            failing.occurred('error', { err: error }, 'metrics collection failed');
            res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
          },
        );
      } else if (req.method === 'GET' && path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
  }

  async start(port: number, host: string): Promise<void> {
    await listen(
      this.server,
      port,
      host,
      `METRICS_PORT ${port} is in use: give each relay or worker on this machine its own METRICS_PORT (0 picks a free one)`,
    );
    this.log.info({ port: this.port }, 'metrics server listening');
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  stop(): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.stopping;
  }
}
