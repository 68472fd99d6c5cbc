import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { type ExecutionArgs, GraphQLError } from 'graphql';
import { WebSocketServer } from 'ws';
import type { Logger } from '../log.js';
import type { ConnectionBudget } from './connections.js';
import { type AppContext, eventHeadersFrom } from './context.js';
import { isAllowedOrigin } from './origin.js';
import type { OperationPipeline, TransportRules } from './pipeline.js';
import { serveGraphQLWs } from './ws-adapter.js';

/**
 * Decides whether a WebSocket connection may proceed, from its upgrade request and the
 * `connection_init` payload (where browser clients put tokens, since they cannot set headers).
 * Return false to refuse with close code 4403 Forbidden. Off by default: every connection is
 * accepted. See docs/api.md, "WebSocket rules and authentication".
 */
export type ConnectionAuthenticator = (
  request: IncomingMessage,
  connectionParams: Readonly<Record<string, unknown>> | undefined,
) => boolean | Promise<boolean>;

export interface WebSocketOptions {
  readonly httpServer: Server;
  readonly pipeline: OperationPipeline;
  readonly log: Logger;
  readonly makeContext: (eventHeaders: AppContext['eventHeaders']) => AppContext;
  readonly maxMessageBytes: number;
  /** Open connections of this process, shared with the HTTP streams; at the cap, upgrades get 503. */
  readonly connections: ConnectionBudget;
  /** Subscriptions at once on one connection; the next is refused with TOO_MANY_SUBSCRIPTIONS. */
  readonly maxSubscriptionsPerConnection: number;
  /** Cross origins allowed to open a connection, besides the service's own and no Origin at all. */
  readonly allowedOrigins: readonly string[];
  readonly keepAliveMs: number;
  readonly authenticate?: ConnectionAuthenticator;
}

export interface WebSocketHandle {
  /** Open WebSocket connections now. */
  readonly connections: number;
  /** Closes every client and the server. */
  dispose(): Promise<void>;
}

/** Queries and mutations go over HTTP, where Apollo's CSRF prevention and body limit apply. */
const WEBSOCKET: TransportRules = {
  serves: ['subscription'],
  elsewhere: 'Only subscriptions are served over WebSocket; send queries and mutations over HTTP',
};

/**
 * graphql-ws on the HTTP server's `/graphql`: every operation goes through the operation
 * pipeline (pipeline.ts), as over HTTP; this file adds what is the WebSocket's own: which
 * upgrades are accepted, a maximum message size, and subscriptions per connection.
 */
export function attachWebSocketServer(options: WebSocketOptions): WebSocketHandle {
  const { log, pipeline } = options;
  // noServer: the upgrade is ours to refuse (wrong path, foreign origin, too many connections)
  // with a plain HTTP answer before any WebSocket exists.
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxMessageBytes });
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Taken before the handshake, so a burst of upgrades cannot all pass the cap before any completes.
    const refusal = upgradeRefusal(request, options);
    const release = refusal ? undefined : options.connections.take();
    if (!release) {
      // A client that resets mid-answer must not become an unhandled 'error' event.
      socket.on('error', () => socket.destroy());
      rejectUpgrade(socket, ...(refusal ?? CAPPED));
      return;
    }
    // The socket's end frees the slot: a closed client, or a handshake that failed (a bad
    // Sec-WebSocket-Key, say), which never calls back.
    socket.once('close', release);
    wss.handleUpgrade(request, socket, head, (client) => {
      wss.emit('connection', client, request);
    });
  };
  options.httpServer.on('upgrade', onUpgrade);

  const disposable = serveGraphQLWs<Record<string, unknown> | undefined>(
    {
      connectionInitWaitTimeout: 10_000,
      onConnect: async (ctx) => {
        if (!options.authenticate) return true;
        try {
          return await options.authenticate(ctx.extra.request, ctx.connectionParams);
        } catch (error) {
          log.warn({ err: error }, 'WebSocket authentication failed');
          return false;
        }
      },
      onSubscribe: (ctx, _id, payload): ExecutionArgs | readonly GraphQLError[] => {
        // graphql-ws registers the id before it calls this hook, so the count includes it.
        if (Object.keys(ctx.subscriptions).length > options.maxSubscriptionsPerConnection) {
          return [
            new GraphQLError(
              `At most ${options.maxSubscriptionsPerConnection} subscriptions at once on one connection: complete one first, or open another connection`,
              { extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' } },
            ),
          ];
        }
        const prepared = pipeline.prepare(payload, WEBSOCKET);
        if (!('kind' in prepared)) return prepared;
        return pipeline.argsOf(prepared, options.makeContext(eventHeadersFrom(ctx.extra.request.headers)));
      },
      subscribe: (args) => pipeline.subscribe(args),
      onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? pipeline.format(result) : undefined),
      onError: (_ctx, _id, _payload, errors) => pipeline.formatErrors(errors),
    },
    wss,
    options.keepAliveMs,
    log,
  );

  wss.on('error', (error) => log.error({ err: error }, 'WebSocket server error'));

  return {
    get connections() {
      return wss.clients.size;
    },
    async dispose() {
      options.httpServer.off('upgrade', onUpgrade);
      // Closes every client with 1001 Going Away, then the server.
      await disposable.dispose();
    },
  };
}

type Refusal = [status: number, reason: string, code: string];

const CAPPED: Refusal = [503, 'Service Unavailable', 'SERVICE_UNAVAILABLE'];

/** Why an upgrade request is refused (the connection cap aside), or undefined to let it through. */
function upgradeRefusal(request: IncomingMessage, options: WebSocketOptions): Refusal | undefined {
  // As `ws` compares it: the path before any query string, no URL parsing that could throw.
  if ((request.url ?? '').split('?')[0] !== '/graphql') return [404, 'Not Found', 'NOT_FOUND'];
  // Browsers send Origin on every WebSocket and let any page open one to any host: without
  // this check, a page on another site could subscribe with the visitor's network position.
  if (!isAllowedOrigin(request.headers, options.allowedOrigins)) return [403, 'Forbidden', 'FORBIDDEN'];
  return undefined;
}

/** A plain HTTP answer on the raw socket, as `ws` itself does for a failed handshake. */
function rejectUpgrade(socket: Duplex, status: number, reason: string, code: string): void {
  const body = JSON.stringify({
    errors: [{ message: `WebSocket upgrade refused: ${reason}`, extensions: { code } }],
  });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
