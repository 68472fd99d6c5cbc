import type { IncomingMessage, Server } from 'node:http';
import {
  type ExecutionArgs,
  GraphQLError,
  type GraphQLSchema,
  getOperationAST,
  parse,
  specifiedRules,
  type ValidationRule,
  validate,
} from 'graphql';
// Renamed: it is not a React hook, whatever its name tells the linter.
import { useServer as serveGraphQLWs } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { Logger } from '../log.js';
import { type AppContext, eventHeadersFrom } from './context.js';
import { formatError } from './errors.js';
import { costError } from './limits.js';

/**
 * Decides whether a WebSocket connection may proceed, from its upgrade request and the
 * `connection_init` payload (where browser clients put tokens, since they cannot set headers).
 * Return false to refuse with close code 4403 Forbidden. Off by default: every connection is
 * accepted. See README, "Authentication".
 */
export type ConnectionAuthenticator = (
  request: IncomingMessage,
  connectionParams: Readonly<Record<string, unknown>> | undefined,
) => boolean | Promise<boolean>;

export interface WebSocketOptions {
  readonly httpServer: Server;
  readonly schema: GraphQLSchema;
  readonly log: Logger;
  readonly makeContext: (eventHeaders: AppContext['eventHeaders']) => AppContext;
  readonly validationRules: readonly ValidationRule[];
  readonly maxCost: number;
  readonly maxMessageBytes: number;
  readonly keepAliveMs: number;
  readonly exposeInternals: boolean;
  readonly authenticate?: ConnectionAuthenticator;
}

export interface WebSocketHandle {
  /** Closes every client and the server. */
  dispose(): Promise<void>;
}

/**
 * graphql-ws on the HTTP server's `/graphql`. graphql-ws runs none of Apollo's request
 * pipeline, so the HTTP side's rules are applied here again: the same validation rules (depth,
 * cost), the same error masking, a maximum message size, and only subscriptions: queries and
 * mutations go over HTTP, where Apollo's CSRF prevention and body limit apply.
 */
export function attachWebSocketServer(options: WebSocketOptions): WebSocketHandle {
  const { log } = options;
  const wss = new WebSocketServer({
    server: options.httpServer,
    path: '/graphql',
    maxPayload: options.maxMessageBytes,
  });
  const rules = [...specifiedRules, ...options.validationRules];
  const refuse = (message: string, code: string) => [new GraphQLError(message, { extensions: { code } })];

  const disposable = serveGraphQLWs<Record<string, unknown> | undefined>(
    {
      schema: options.schema,
      // Decided by our configuration, not by graphql-ws reading NODE_ENV on its own: outside
      // development, errors thrown in its message handling close the socket without details.
      isProd: !options.exposeInternals,
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
      context: (ctx) => options.makeContext(eventHeadersFrom(ctx.extra.request.headers)),
      onSubscribe: (_ctx, _id, payload): ExecutionArgs | readonly GraphQLError[] => {
        let document: ReturnType<typeof parse>;
        try {
          document = parse(payload.query, { maxTokens: 10_000 });
        } catch (error) {
          return refuse(
            error instanceof GraphQLError ? error.message : 'Syntax error',
            'GRAPHQL_PARSE_FAILED',
          );
        }
        const errors = validate(options.schema, document, rules);
        if (errors.length > 0) {
          return errors.map(
            (e) =>
              new GraphQLError(e.message, {
                nodes: e.nodes,
                extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
              }),
          );
        }
        const tooCostly = costError(
          options.schema,
          document,
          payload.variables ?? undefined,
          payload.operationName,
          options.maxCost,
        );
        if (tooCostly) return [tooCostly];
        const operation = getOperationAST(document, payload.operationName);
        if (!operation) return refuse('Operation not found', 'OPERATION_RESOLUTION_FAILURE');
        if (operation.operation !== 'subscription') {
          return refuse(
            'Only subscriptions are served over WebSocket; send queries and mutations over HTTP',
            'BAD_REQUEST',
          );
        }
        return {
          schema: options.schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
        };
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors
          ? {
              ...result,
              errors: result.errors.map((e) => formatError(e.toJSON(), e, log, options.exposeInternals)),
            }
          : undefined,
      onError: (_ctx, _id, _payload, errors) =>
        errors.map((e) => formatError(e.toJSON(), e, log, options.exposeInternals)),
    },
    wss,
    options.keepAliveMs,
  );

  wss.on('error', (error) => log.error({ err: error }, 'WebSocket server error'));

  return {
    async dispose() {
      // Closes every client with 1001 Going Away, then the server.
      await disposable.dispose();
    },
  };
}
