import type { ApolloServerPlugin } from '@apollo/server';
import { GraphQLError } from 'graphql';
import type { AppContext } from './context.js';
import { invalidStringError } from './input.js';
import { costError } from './limits.js';

/**
 * The checks of an HTTP request that need the resolved operation and its variables, which
 * validation rules do not see. They run after validation and before execution, so a refusal
 * runs nothing; ws.ts runs the same checks for WebSocket operations.
 */
export function requestGuard(limits: { readonly maxCost: number }): ApolloServerPlugin<AppContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ request, document, schema, operation }) {
          if (operation?.operation === 'subscription') {
            // Left to Apollo, it fails inside execution as INTERNAL_SERVER_ERROR.
            throw new GraphQLError(
              'Subscriptions are served over WebSocket (graphql-ws, subprotocol graphql-transport-ws) at this same path: connect to ws://…/graphql',
              { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } },
            );
          }
          const error =
            invalidStringError(request.variables) ??
            costError(schema, document, request.variables, request.operationName, limits.maxCost);
          if (error) throw error;
        },
      };
    },
  };
}
