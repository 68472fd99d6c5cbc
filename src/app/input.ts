import { GraphQLError, type GraphQLSchema, getVariableValues, type OperationDefinitionNode } from 'graphql';

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Nesting beyond this is not walked further; coercion against the schema refuses it anyway. */
const MAX_WALK_DEPTH = 32;

/**
 * The first string among the variables that is not valid Unicode, as a dotted path
 * (`input.email`, `ids.2`). JSON can carry a lone surrogate (`"a\ud800b"`), which is no text at
 * all: MySQL refuses it with an error that quotes the statement and its values, so it is turned
 * away here, at the edge, for every argument of every operation. (String literals in the
 * document itself need no check: the GraphQL parser refuses lone surrogates.)
 */
export function invalidStringPath(value: unknown): string | undefined {
  return firstPathTo(value, (v) => typeof v === 'string' && LONE_SURROGATE.test(v));
}

/** BAD_USER_INPUT naming the variable that holds invalid Unicode, or undefined when all is text. */
export function invalidStringError(
  variables: Record<string, unknown> | null | undefined,
): GraphQLError | undefined {
  const field = invalidStringPath(variables ?? {});
  if (field === undefined) return undefined;
  return new GraphQLError(`Variable "$${field}" is not valid Unicode text (it holds a lone surrogate)`, {
    extensions: { code: 'BAD_USER_INPUT', field, http: { status: 400 } },
  });
}

/**
 * The first number among the variables that JSON cannot have carried exactly: an integer beyond
 * ±(2^53 − 1). JSON.parse has already rounded it (`9007199254740993` arrives as
 * 9007199254740992), and an `ID` variable takes it as the text of the rounded number: another
 * customer's id. Nothing in the schema takes such a number (Int is 32-bit), so the request is
 * refused rather than run on a value the client did not send; ids go as strings.
 */
export function inexactNumberPath(value: unknown): string | undefined {
  return firstPathTo(value, (v) => typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v));
}

/**
 * The dotted path (`input.email`, `ids.2`) to the first value, or object key, that `bad` picks
 * among the variables, walked depth first up to MAX_WALK_DEPTH.
 */
function firstPathTo(
  value: unknown,
  bad: (value: unknown) => boolean,
  path: readonly string[] = [],
  depth = 0,
): string | undefined {
  if (bad(value)) return path.join('.');
  if (value === null || typeof value !== 'object' || depth > MAX_WALK_DEPTH) return undefined;
  for (const [key, child] of Object.entries(value)) {
    const keyPath = [...path, key];
    if (bad(key)) return keyPath.join('.');
    const found = firstPathTo(child, bad, keyPath, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** BAD_USER_INPUT naming the variable that holds an integer JSON cannot carry exactly. */
export function inexactNumberError(
  variables: Record<string, unknown> | null | undefined,
): GraphQLError | undefined {
  const field = inexactNumberPath(variables ?? {});
  if (field === undefined) return undefined;
  return new GraphQLError(
    `Variable "$${field}" is a number beyond 2^53, which JSON does not carry exactly: send ids as strings`,
    { extensions: { code: 'BAD_USER_INPUT', field, http: { status: 400 } } },
  );
}

/**
 * Variables that do not fit their declared types (an object for an `ID`), as BAD_USER_INPUT.
 * Apollo does this over HTTP; graphql-ws leaves GraphQL's bare errors, which would otherwise
 * be masked as internal.
 */
export function variableErrors(
  schema: GraphQLSchema,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown> | null | undefined,
): GraphQLError[] {
  const { errors } = getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {});
  return (errors ?? []).map(
    (error) =>
      new GraphQLError(error.message, { nodes: error.nodes, extensions: { code: 'BAD_USER_INPUT' } }),
  );
}
