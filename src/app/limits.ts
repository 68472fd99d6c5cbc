import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import type { ValidationRule } from 'graphql';

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxCost: number;
}

/**
 * Validation rules that refuse expensive operations before they run. The same list is given to
 * Apollo (HTTP) and to the graphql-ws server, which runs none of Apollo's pipeline.
 */
export function limitRules(limits: QueryLimits): ValidationRule[] {
  return [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, exposeLimits: true }),
    costLimitRule({ maxCost: limits.maxCost, ignoreIntrospection: true, exposeLimits: true }),
  ] as ValidationRule[];
}
