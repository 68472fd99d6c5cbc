import { createRequire } from 'node:module';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import {
  type DocumentNode,
  GraphQLError,
  type GraphQLSchema,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import type { ComplexityEstimator } from 'graphql-query-complexity';

// The CommonJS build, loaded with require() on purpose: the ESM one imports
// `graphql/index.mjs`, a second copy of graphql beside the one the schema is built with
// ("Cannot use GraphQLObjectType from another module or realm").
const { getComplexity, simpleEstimator } = createRequire(import.meta.url)(
  'graphql-query-complexity',
) as typeof import('graphql-query-complexity');

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxCost: number;
}

/**
 * Validation rules that refuse deep operations before they run. The same list is given to
 * Apollo (HTTP) and to the graphql-ws server, which runs none of Apollo's pipeline.
 */
export function limitRules(limits: QueryLimits): ValidationRule[] {
  // By default graphql-armor throws out of validate(), which Apollo answers with a 500.
  // Reporting through the validation context makes a refusal an ordinary validation error:
  // 400 GRAPHQL_VALIDATION_FAILED over HTTP, an error message over WebSocket.
  const report = { propagateOnRejection: false, onReject: [reportError] };
  return [maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, exposeLimits: true, ...report })];
}

function reportError(context: ValidationContext | null, error: GraphQLError): void {
  context?.reportError(error);
}

/**
 * A page costs its `first` times what one item costs. `args` are the coerced arguments, with
 * variables and schema defaults applied, so `first: $n` or an omitted `first` (default 20) are
 * priced like the literal they stand for. (A validation rule sees only the document, and would
 * price `first: $n` as 1.)
 */
const pageEstimator: ComplexityEstimator = ({ args, childComplexity }) =>
  typeof args.first === 'number' ? 1 + childComplexity * Math.max(0, args.first) : undefined;

/**
 * The operation's cost, or an error when it is above `maxCost`. Run after validation, once the
 * variables are known: in an Apollo plugin over HTTP, in onSubscribe over WebSocket.
 */
export function costError(
  schema: GraphQLSchema,
  document: DocumentNode,
  variables: Record<string, unknown> | undefined,
  operationName: string | undefined | null,
  maxCost: number,
): GraphQLError | undefined {
  let cost: number;
  try {
    cost = getComplexity({
      schema,
      query: document,
      variables: variables ?? {},
      operationName: operationName ?? undefined,
      estimators: [pageEstimator, simpleEstimator({ defaultComplexity: 1 })],
    });
  } catch {
    // Variables that do not coerce: execution refuses them next, with GraphQL's own message
    // (BAD_USER_INPUT), and runs nothing.
    return undefined;
  }
  if (cost <= maxCost) return undefined;
  return new GraphQLError(`Query cost ${cost} exceeds the limit of ${maxCost}`, {
    extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400 } },
  });
}
