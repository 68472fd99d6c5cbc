import { createRequire } from 'node:module';
import {
  type ASTNode,
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  GraphQLError,
  type GraphQLSchema,
  getIntrospectionQuery,
  getVariableValues,
  Kind,
  type OperationDefinitionNode,
  parse,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
  visit,
} from 'graphql';
import type { ComplexityEstimator } from 'graphql-query-complexity';

// The CommonJS build, loaded with require() on purpose: the ESM one imports
// `graphql/index.mjs`, a second copy of graphql beside the one the schema is built with
// ("Cannot use GraphQLObjectType from another module or realm").
const { getComplexity } = createRequire(import.meta.url)(
  'graphql-query-complexity',
) as typeof import('graphql-query-complexity');

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxCost: number;
  readonly maxMutations: number;
}

/**
 * What one resolution of a field costs, for the fields that reach MySQL or RabbitMQ: a round
 * trip or an AMQP channel each. Every other field costs 1. Without these, 1,000 aliases of
 * `outboxStats { workerDeadLetters }` priced 2 each passed a limit of 5,000 and opened 1,000
 * channels; now they are refused before anything runs. Fields that count many rows
 * (outboxStats) are served from a figure shared by all requests (app/resolvers.ts,
 * OUTBOX_STATS_MAX_AGE_MS), so their price is one computation however often they are asked.
 * Keyed `Type.field`; a unit test checks
 * every key against the schema, so a renamed field cannot silently become cheap.
 */
export const FIELD_COSTS: Readonly<Record<string, number>> = {
  'Query.customer': 10,
  'Query.customers': 10,
  'Query.customerEvents': 10,
  'Query.outboxStats': 10,
  'Query.deadEvents': 10,
  'Query.workerDeadLetters': 100,
  'Customer.events': 10,
  'OutboxStats.workerDeadLetters': 10,
  'Mutation.createCustomer': 10,
  'Mutation.updateCustomer': 10,
  'Mutation.reviveDeadEvents': 10,
  'Mutation.skipDeadEvents': 10,
  'Mutation.requeueWorkerDeadLetters': 100,
  'Subscription.onCustomerEvent': 10,
};

/**
 * `__schema` and `__type` cost what a database field does: each alias builds the schema's
 * description anew, so a thousand of them are refused like a thousand `customers`, while the
 * one that GraphiQL sends (cost about 150) passes.
 */
const INTROSPECTION_ROOTS = new Set(['__schema', '__type']);

/**
 * Validation rules that refuse oversized operations before anything runs: too deep, or more
 * mutation fields than allowed. The same list is given to Apollo (HTTP) and to the graphql-ws
 * server, which runs none of Apollo's pipeline. Each reports through the validation context,
 * so a refusal is an ordinary validation error: 400 GRAPHQL_VALIDATION_FAILED over HTTP, an
 * error message over WebSocket.
 */
export function limitRules(limits: Pick<QueryLimits, 'maxDepth' | 'maxMutations'>): ValidationRule[] {
  return [depthRule(limits.maxDepth), mutationCountRule(limits.maxMutations)];
}

const refusal = (message: string, node: OperationDefinitionNode) =>
  new GraphQLError(message, { nodes: [node], extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });

/**
 * The deepest chain of fields under a selection set. Fragments (named or inline) add no depth
 * of their own: what Apollo Client and Relay send (a fragment per component, spread into one
 * another) is as deep as the fields it selects, no deeper. Each named fragment is measured
 * once, so a fragment spread a thousand times costs nothing extra; a cycle (which the
 * specified rules refuse) counts as no depth instead of recursing forever.
 */
class DepthMeter {
  private readonly fragmentDepths = new Map<string, { plain: number; introspection: number }>();
  private readonly measuring = new Set<string>();

  constructor(private readonly fragment: (name: string) => FragmentDefinitionNode | null | undefined) {}

  /**
   * `plain`: the depth of ordinary fields, where an introspection field counts as a leaf.
   * `introspection`: the depth of the deepest `__schema`/`__type` subtree, which has its own
   * allowance (tools' introspection queries are deeper than any application query).
   */
  measure(selectionSet: SelectionSetNode | undefined, inIntrospection = false) {
    let plain = 0;
    let introspection = 0;
    for (const selection of selectionSet?.selections ?? []) {
      let child: { plain: number; introspection: number };
      if (selection.kind === Kind.FIELD) {
        const meta = selection.name.value === '__schema' || selection.name.value === '__type';
        const below = this.measure(selection.selectionSet, inIntrospection || meta);
        child =
          inIntrospection || meta
            ? { plain: 1, introspection: 1 + Math.max(below.plain, below.introspection) }
            : { plain: 1 + below.plain, introspection: below.introspection };
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        child = this.measure(selection.selectionSet, inIntrospection);
      } else {
        child = this.measureFragment(selection.name.value, inIntrospection);
      }
      plain = Math.max(plain, child.plain);
      introspection = Math.max(introspection, child.introspection);
    }
    return { plain, introspection };
  }

  private measureFragment(name: string, inIntrospection: boolean) {
    const key = `${inIntrospection}:${name}`;
    const known = this.fragmentDepths.get(key);
    if (known) return known;
    const definition = this.fragment(name);
    if (!definition || this.measuring.has(key)) return { plain: 0, introspection: 0 };
    this.measuring.add(key);
    const depth = this.measure(definition.selectionSet, inIntrospection);
    this.measuring.delete(key);
    this.fragmentDepths.set(key, depth);
    return depth;
  }
}

/**
 * How deep the introspection query of graphql-js (which GraphiQL and Apollo's tools send) is,
 * measured rather than written down, so that an upgrade that deepens it cannot lock the
 * playground out. Deeper introspection is refused: `fields { type { fields { type … } } }`
 * nested fifty times is a known way to make a server build megabytes of schema.
 */
export const INTROSPECTION_DEPTH = (() => {
  const document = parse(
    getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true }),
  );
  const fragments = new Map(
    document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d]] : [])),
  );
  const meter = new DepthMeter((name) => fragments.get(name));
  const operation = document.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION);
  return operation ? meter.measure(operation.selectionSet).introspection : 0;
})();

function depthRule(maxDepth: number): ValidationRule {
  const introspectionLimit = Math.max(maxDepth, INTROSPECTION_DEPTH);
  return (context: ValidationContext): ASTVisitor => {
    const meter = new DepthMeter((name) => context.getFragment(name));
    return {
      OperationDefinition(node) {
        const { plain, introspection } = meter.measure(node.selectionSet);
        if (plain > maxDepth) {
          context.reportError(
            refusal(
              `Query depth limit of ${maxDepth} exceeded: the operation nests fields ${plain} deep`,
              node,
            ),
          );
        }
        if (introspection > introspectionLimit) {
          context.reportError(
            refusal(
              `Introspection depth limit of ${introspectionLimit} exceeded: the operation nests fields ${introspection} deep`,
              node,
            ),
          );
        }
      },
    };
  };
}

/**
 * Counts the root fields of each mutation by response key, through fragments and aliases:
 * `a: createCustomer(…) b: createCustomer(…)` is two, the same field selected twice under one
 * key runs once and is one. `@skip`/`@include` are not evaluated (they may hang on variables
 * this rule does not see), so a conditional field counts as if it ran.
 */
function mutationCountRule(maxMutations: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(node) {
      if (node.operation !== 'mutation') return;
      const keys = new Set<string>();
      const seen = new Set<string>();
      const collect = (selectionSet: SelectionSetNode) => {
        for (const selection of selectionSet.selections) {
          if (selection.kind === Kind.FIELD) {
            if (selection.name.value !== '__typename') keys.add((selection.alias ?? selection.name).value);
          } else if (selection.kind === Kind.INLINE_FRAGMENT) {
            collect(selection.selectionSet);
          } else if (!seen.has(selection.name.value)) {
            seen.add(selection.name.value);
            const fragment = context.getFragment(selection.name.value);
            if (fragment) collect(fragment.selectionSet);
          }
        }
      };
      collect(node.selectionSet);
      if (keys.size > maxMutations) {
        context.reportError(
          refusal(
            `At most ${maxMutations} mutation field${maxMutations === 1 ? '' : 's'} per request, this one has ${keys.size}: send them as separate requests`,
            node,
          ),
        );
      }
    },
  });
}

/**
 * A field's own cost (FIELD_COSTS, else 1) plus its children's; a page costs its `first` times
 * one item. `args` are the coerced arguments, with variables and schema defaults applied, so
 * `first: $n` or an omitted `first` (default 20) are priced like the literal they stand for.
 * (A validation rule sees only the document, and would price `first: $n` as 1.)
 */
const estimator: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  const own = FIELD_COSTS[`${type.name}.${field.name}`] ?? (INTROSPECTION_ROOTS.has(field.name) ? 10 : 1);
  const items = typeof args.first === 'number' ? Math.max(0, args.first) : 1;
  return own + childComplexity * items;
};

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
  // A cost known to be within the limit answers at once; any other case is priced again, so a
  // refusal and the precedence of a variable error over it stay exactly as below.
  const known = costsOf(schema, document);
  const key = costKey(document, variables, operationName);
  const cached = known.get(key);
  if (cached !== undefined && cached <= maxCost) return undefined;
  const operation = document.definitions.find(
    (d): d is OperationDefinitionNode =>
      d.kind === Kind.OPERATION_DEFINITION && (!operationName || d.name?.value === operationName),
  );
  // Variables that do not coerce: execution refuses them next, with GraphQL's own message
  // (BAD_USER_INPUT), and runs nothing.
  if (operation && getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {}).errors) {
    return undefined;
  }
  let cost: number;
  try {
    cost = getComplexity({
      schema,
      query: document,
      variables: variables ?? {},
      operationName: operationName ?? undefined,
      estimators: [estimator],
    });
  } catch {
    // The only way left to fail is an operation too large to price (graphql-query-complexity
    // stops at 10,000 nodes, fragments expanded): refused, never waved through.
    return tooCostly('Query is too large to price');
  }
  if (known.size >= COSTS_PER_DOCUMENT) known.clear();
  known.set(key, cost);
  return cost <= maxCost ? undefined : tooCostly(`Query cost ${cost} exceeds the limit of ${maxCost}`);
}

/**
 * Operations priced before, per document. Apollo hands every request of the same query text
 * the same parsed document (its document store), so a mutation sent a thousand times with
 * different inputs is priced once: pricing walked the whole operation and coerced its
 * variables on every request, a few percent of the service's CPU. Only the variables the
 * price can depend on are in the key: those given to a `first` argument (the estimator's page
 * size) and to directives (`@skip`, `@include`, which graphql-query-complexity evaluates).
 */
const priced = new WeakMap<GraphQLSchema, WeakMap<DocumentNode, Map<string, number>>>();
const pricedVariables = new WeakMap<DocumentNode, readonly string[]>();
/** Distinct keys kept per document, so varied page sizes cannot grow the cache without end. */
const COSTS_PER_DOCUMENT = 64;

function costsOf(schema: GraphQLSchema, document: DocumentNode): Map<string, number> {
  let bySchema = priced.get(schema);
  if (!bySchema) {
    bySchema = new WeakMap();
    priced.set(schema, bySchema);
  }
  let costs = bySchema.get(document);
  if (!costs) {
    costs = new Map();
    bySchema.set(document, costs);
  }
  return costs;
}

function costKey(
  document: DocumentNode,
  variables: Record<string, unknown> | undefined,
  operationName: string | undefined | null,
): string {
  let names = pricedVariables.get(document);
  if (!names) {
    const found = new Set<string>();
    const collect = (node: ASTNode) => {
      visit(node, {
        Variable(variable) {
          found.add(variable.name.value);
        },
      });
    };
    visit(document, {
      Argument(argument) {
        if (argument.name.value === 'first') collect(argument.value);
      },
      Directive(directive) {
        collect(directive);
        return false;
      },
    });
    names = [...found].sort();
    pricedVariables.set(document, names);
  }
  // Absent and null differ: an absent variable takes its default, a null one does not. Own
  // properties only: `$constructor` must not be found on Object.prototype and read as given.
  return JSON.stringify([
    operationName ?? null,
    ...names.map((name) => (variables && Object.hasOwn(variables, name) ? [variables[name] ?? null] : [])),
  ]);
}

const tooCostly = (message: string) =>
  new GraphQLError(message, {
    extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400 } },
  });
