import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { makeExecutableSchema } from '@graphql-tools/schema';
import type { GraphQLSchema } from 'graphql';
import { createResolvers, type ResolverOptions } from './resolvers.js';

/** schema.graphql at the repository root is the one source of the SDL. */
export const SCHEMA_PATH = fileURLToPath(new URL('../../schema.graphql', import.meta.url));

export function buildSchema(options: ResolverOptions): GraphQLSchema {
  return makeExecutableSchema({
    typeDefs: readFileSync(SCHEMA_PATH, 'utf8'),
    resolvers: createResolvers(options),
    // Every field in the SDL must have a way to be resolved; a typo fails at start, not at query time.
    resolverValidationOptions: { requireResolversToMatchSchema: 'error' },
  });
}
