import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import type { GraphQLError, ValidationContext, ValidationRule } from 'graphql';

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxCost: number;
}

/**
 * Validation rules that refuse expensive operations before they run. The same list is given to
 * Apollo (HTTP) and to the graphql-ws server, which runs none of Apollo's pipeline.
 */
export function limitRules(limits: QueryLimits): ValidationRule[] {
  // By default graphql-armor throws out of validate(), which Apollo answers with a 500.
  // Reporting through the validation context makes a refusal an ordinary validation error:
  // 400 GRAPHQL_VALIDATION_FAILED over HTTP, an error message over WebSocket.
  const report = { propagateOnRejection: false, onReject: [reportError] };
  return [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, exposeLimits: true, ...report }),
    costLimitRule({ maxCost: limits.maxCost, ignoreIntrospection: true, exposeLimits: true, ...report }),
  ] as ValidationRule[];
}

function reportError(context: ValidationContext | null, error: GraphQLError): void {
  context?.reportError(error);
}
