import { type ApolloServerPlugin, HeaderMap } from '@apollo/server';
import type { AppContext } from './context.js';
import type { OperationPipeline, TransportRules } from './pipeline.js';

/** Subscriptions are not served by Apollo: left to it, one fails inside execution as INTERNAL_SERVER_ERROR. */
export const HTTP: TransportRules = {
  serves: ['query', 'mutation'],
  elsewhere:
    'Subscriptions are served as streams at this same path: over WebSocket (graphql-ws, subprotocol graphql-transport-ws), or over HTTP with Accept: text/event-stream (GraphQL over SSE) or Accept: multipart/mixed;subscriptionSpec="1.0" (Apollo Client)',
};

/**
 * Apollo Server as a transport of the operation pipeline (pipeline.ts). Apollo keeps what is
 * HTTP's: content negotiation, CSRF prevention, persisted queries, GET for queries only, its
 * document store (parsing with the pipeline's MAX_TOKENS). Validation is switched off in
 * Apollo (`dangerouslyDisableValidation`) and done by the pipeline, which answers the operation
 * here, before Apollo's own execution: every rule, the execution and the masking of errors are
 * the pipeline's, as for every other transport.
 */
export function pipelinePlugin(pipeline: OperationPipeline): ApolloServerPlugin<AppContext> {
  return {
    async requestDidStart() {
      return {
        async responseForOperation({ request, document, contextValue }) {
          const outcome = await pipeline.run(
            { document, operationName: request.operationName, variables: request.variables },
            HTTP,
            () => contextValue,
          );
          // HTTP serves no subscription, so run() never streams here.
          if (outcome.kind === 'stream') throw new Error('a subscription reached the HTTP transport');
          return {
            http: { status: outcome.status, headers: new HeaderMap(Object.entries(outcome.headers)) },
            body: { kind: 'single', singleResult: outcome.result },
          };
        },
      };
    },
  };
}
