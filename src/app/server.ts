import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginLandingPageDisabled,
} from '@apollo/server/plugin/disabled';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type ErrorRequestHandler } from 'express';
import type { AppConfig } from '../config/index.js';
import { type Database, withDeadline } from '../db/client.js';
import type { HistoryFeed } from '../history/feed.js';
import type { Logger } from '../log.js';
import type { OutboxWriter } from '../outbox/writer.js';
import type { Deadline } from '../support/deadline.js';
import { listen } from '../support/listen.js';
import { pipelinePlugin } from './apollo-plugin.js';
import { ConnectionBudget } from './connections.js';
import { type AppContext, eventHeadersFrom, idempotencyKeyFrom, isAdmin } from './context.js';
import { withRequestDeadline } from './deadline.js';
import { formatError } from './errors.js';
import { graphqlPost, refusalBody } from './http.js';
import { corsFor } from './origin.js';
import { MAX_TOKENS, OperationPipeline } from './pipeline.js';
import { mountPlayground } from './playground.js';
import { type ReadinessCheck, readinessHandler } from './readiness.js';
import type { WorkerDeadLetters } from './resolvers.js';
import { buildSchema } from './schema.js';
import { HttpSubscriptions } from './streams.js';
import { attachWebSocketServer, type ConnectionAuthenticator, type WebSocketHandle } from './ws.js';

export interface AppServerOptions {
  readonly config: Omit<AppConfig, 'live' | 'confirmTimeoutMs'>;
  readonly db: Database;
  readonly log: Logger;
  /** Dependencies `/readyz` checks (readiness.ts). */
  readonly readiness: Readonly<Record<string, ReadinessCheck>>;
  /** Every event a mutation writes goes through it. */
  readonly writer: OutboxWriter;
  /** The instance's feed of handled events, for subscriptions. */
  readonly feed?: HistoryFeed;
  /** The worker's dead-letter queue, for the operator operations. */
  readonly deadLetters?: WorkerDeadLetters;
  /** Extra HTTP routes mounted before /graphql (e.g. /metrics, the playground). */
  readonly routes?: (app: express.Express) => void;
  readonly authenticateWebSocket?: ConnectionAuthenticator;
}

/**
 * Apollo Server over HTTP and graphql-ws over WebSocket, sharing one http.Server and one path,
 * /graphql. stop() refuses new work, lets in-flight requests finish, then closes the sockets.
 */
export class AppServer {
  private readonly httpServer: Server;
  private readonly apollo: ApolloServer<AppContext>;
  private readonly pipeline: OperationPipeline;
  private ws: WebSocketHandle | undefined;
  private streams: HttpSubscriptions | undefined;
  /** Open WebSocket and HTTP subscription connections, against WS_MAX_CONNECTIONS. */
  private readonly connections: ConnectionBudget;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: AppServerOptions) {
    const { config, log } = options;
    const exposeInternals = config.env === 'development';
    this.httpServer = createServer({
      // Slow clients (a header a minute, a body a byte at a time) hold a socket each; these
      // bound how long. Node checks them only every connectionsCheckingInterval.
      headersTimeout: config.http.headersTimeoutMs,
      requestTimeout: config.http.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.http.headersTimeoutMs),
    });
    const schema = buildSchema({
      maxPageSize: config.http.maxPageSize,
      db: options.db,
      statsMaxAgeMs: config.http.statsMaxAgeMs,
      writer: options.writer,
      feed: options.feed,
      deadLetters: options.deadLetters,
    });
    // The rules of every operation on every transport (GRAPHQL_INTROSPECTION included).
    this.pipeline = new OperationPipeline({
      schema,
      log,
      limits: config.http,
      introspection: config.http.introspection,
      exposeInternals,
    });
    this.connections = new ConnectionBudget(config.http.maxWsConnections);
    const ws = () => this.ws;
    const streams = () => this.streams;
    this.apollo = new ApolloServer<AppContext>({
      schema,
      csrfPrevention: true,
      // Validated by the pipeline (apollo-plugin.ts), where a rule that throws is a
      // validation error; Apollo's validation would turn it into a 500.
      dangerouslyDisableValidation: true,
      parseOptions: { maxTokens: MAX_TOKENS },
      // main.ts owns the process signals; Apollo's own handler would race it and re-raise the signal.
      stopOnTerminationSignals: false,
      includeStacktraceInErrorResponses: exposeInternals,
      formatError: (formatted, error) => formatError(formatted, error, log, exposeInternals),
      // Apollo prints a GraphQLError with the lines of the query around it, which may hold an
      // e-mail address or a name: only the first line, the error's own message, is logged.
      logger: {
        debug: (m) => log.debug(firstLine(m)),
        info: (m) => log.info(firstLine(m)),
        warn: (m) => log.warn(firstLine(m)),
        error: (m) => log.error(firstLine(m)),
      },
      plugins: [
        // The playground (app/playground.ts) replaces Apollo's CDN-loaded landing page.
        ApolloServerPluginLandingPageDisabled(),
        // No field has a cache hint and no response is cacheable (every operation reads or writes
        // live data); Apollo's default cache-control plugin would wrap every resolver to find that out.
        ApolloServerPluginCacheControlDisabled(),
        // Stop accepting connections and wait for in-flight HTTP requests…
        ApolloServerPluginDrainHttpServer({ httpServer: this.httpServer }),
        // Every operation's rules, its execution and the masking of its errors.
        pipelinePlugin(this.pipeline),
        // …then end the WebSocket clients and the HTTP streams, which it would wait for in vain.
        {
          async serverWillStart() {
            return {
              async drainServer() {
                await Promise.all([ws()?.dispose(), streams()?.stop()]);
              },
            };
          },
        },
      ],
    });
  }

  /** Open WebSocket connections (graphql_ws_connections). */
  get webSocketConnections(): number {
    return this.ws?.connections ?? 0;
  }

  async start(): Promise<void> {
    const { config, log, db } = this.options;
    await this.apollo.start();
    const app = express();
    app.disable('x-powered-by');
    app.set('trust proxy', false);
    app.get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    });
    app.get('/readyz', readinessHandler(this.options.readiness));
    this.options.routes?.(app);
    mountPlayground(app);
    // The root leads a browser to the playground (and a GraphQL client to the endpoint).
    app.get('/', (_req, res) => {
      res.redirect('/graphql');
    });
    const cors = config.http.corsOrigins.length > 0 ? corsFor(config.http.corsOrigins) : undefined;
    // The request's database is bounded by its deadline (db/deadline.ts).
    const context = async (req: IncomingMessage, deadline: Deadline | undefined): Promise<AppContext> => ({
      db: deadline ? withDeadline(db, deadline) : db,
      deadline,
      log,
      eventHeaders: eventHeadersFrom(req.headers),
      admin: isAdmin(req.headers, config.http.adminToken),
      idempotencyKey: idempotencyKeyFrom(req.headers),
    });
    if (cors) app.use('/graphql', cors);
    app.use(
      '/graphql',
      express.json({ limit: config.http.maxBodyBytes }),
      expressMiddleware(this.apollo, { context: ({ req, res }) => context(req, deadlineOf(res)) }),
    );
    app.use((_req, res) => {
      res.status(404).json({ errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND' } }] });
    });
    app.use(jsonErrors(log));
    // JSON POSTs to /graphql skip Express (http.ts); everything else is Express's.
    const post = graphqlPost({
      apollo: this.apollo,
      log,
      maxBodyBytes: config.http.maxBodyBytes,
      context,
      cors,
    });
    // Subscriptions over HTTP (SSE, multipart), told apart by their Accept header.
    const streams = new HttpSubscriptions({
      pipeline: this.pipeline,
      log,
      maxBodyBytes: config.http.maxBodyBytes,
      allowedOrigins: config.http.corsOrigins,
      cors,
      connections: this.connections,
      // Subscriptions only: no operator operation runs there.
      makeContext: (req, stream, deadline) => ({
        db: withDeadline(db, deadline),
        deadline,
        log,
        eventHeaders: eventHeadersFrom(req.headers),
        admin: false,
        stream,
      }),
    });
    this.streams = streams;
    // A stream is under the deadline until it begins (its headers), then released from it.
    this.httpServer.on(
      'request',
      withRequestDeadline(config.requestTimeoutMs, log, (req, res, deadline) => {
        if (streams.handle(req, res, deadline) || post(req, res, deadline)) return;
        // Express keeps res.locals as it finds them: the deadline reaches the context there.
        app(req, Object.assign(res, { locals: { deadline } }));
      }),
    );

    this.ws = attachWebSocketServer({
      httpServer: this.httpServer,
      pipeline: this.pipeline,
      log,
      // Subscriptions only over WebSocket: no operator operation runs there.
      makeContext: (eventHeaders) => ({ db, log, eventHeaders, admin: false }),
      maxMessageBytes: config.http.maxBodyBytes,
      connections: this.connections,
      maxSubscriptionsPerConnection: config.http.maxSubscriptionsPerConnection,
      allowedOrigins: config.http.corsOrigins,
      keepAliveMs: 12_000,
      authenticate: this.options.authenticateWebSocket,
    });

    await listen(
      this.httpServer,
      config.port,
      config.host,
      `PORT ${config.port} is in use: choose another PORT for this app instance`,
    );
    log.info({ url: this.url }, 'GraphQL server listening');
  }

  /** http://host:port/graphql, with the port actually bound (PORT=0 picks a free one). */
  get url(): string {
    const address = this.httpServer.address() as AddressInfo | null;
    const host = this.options.config.host === '0.0.0.0' ? '127.0.0.1' : this.options.config.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${address?.port ?? this.options.config.port}/graphql`;
  }

  get port(): number {
    return (this.httpServer.address() as AddressInfo | null)?.port ?? this.options.config.port;
  }

  /** Idempotent: a second call returns the first call's promise. */
  stop(): Promise<void> {
    this.stopping ??= this.apollo.stop();
    return this.stopping;
  }
}

/** The deadline server.ts put in an Express response's locals. */
const deadlineOf = (res: { locals?: { deadline?: Deadline } }): Deadline | undefined => res.locals?.deadline;

const firstLine = (message: unknown): string => String(message).split('\n', 1)[0] ?? '';

/**
 * Errors raised before Apollo runs (body too large, malformed JSON) answer in GraphQL's error
 * shape with a code (refusalBody), never with Express's default HTML page, which shows a stack
 * trace outside production.
 */
function jsonErrors(log: Logger): ErrorRequestHandler {
  return (error, _req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const status =
      typeof error?.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
    if (status >= 500) log.error({ err: error }, 'HTTP request failed');
    res.status(status).json(refusalBody(status));
  };
}
