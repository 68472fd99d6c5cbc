import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  execute,
  type FormattedExecutionResult,
  GraphQLError,
  type GraphQLFormattedError,
  type GraphQLSchema,
  getOperationAST,
  NoSchemaIntrospectionCustomRule,
  type OperationDefinitionNode,
  parse,
  specifiedRules,
  type ValidationRule,
  validate,
} from 'graphql';
import type { Logger } from '../log.js';
import type { Condition } from '../support/log-limit.js';
import type { AppContext } from './context.js';
import { subscribeDelivering } from './deliveries.js';
import { DocumentCache } from './documents.js';
import { databaseCondition, formatError } from './errors.js';
import { inexactNumberError, invalidStringError, variableErrors } from './input.js';
import { costError, limitRules, type QueryLimits } from './limits.js';
import { type OperationStream, streamOf } from './stream.js';
import { traceOperation, traceRefusal } from './tracing.js';

export type { OperationStream } from './stream.js';
export { OperationFailure } from './stream.js';

/**
 * Tokens one document may have. MAX_BODY_BYTES bounds a document already, but parsing runs
 * before any other rule: the cap keeps a body of one-byte tokens from costing more to parse
 * than every rule after it. The 1,000-alias documents the cost limit exists to refuse (up to
 * about 21,000 tokens) still parse, so their refusal names the cost, which the client can act on.
 */
export const MAX_TOKENS = 50_000;

/**
 * How much document text the pipeline keeps parsed (documents.ts): hundreds of the documents an
 * application sends. A syntax tree keeps every token of its text, up to about 260 bytes a
 * character for the densest text a client can send (`@a@a…`), so this holds a client sending
 * ever new documents to about 26 MB.
 */
const DOCUMENT_CACHE_LENGTH = 100_000;

export type OperationKind = 'query' | 'mutation' | 'subscription';

/**
 * One operation as a client sent it. Fields are `unknown` on purpose: a transport hands over
 * what it decoded (a JSON body, URL parameters, a WebSocket message) and the pipeline refuses
 * a wrong shape with BAD_REQUEST, the same on every transport.
 */
export interface OperationRequest {
  /** The document's text; ignored when `document` is given. */
  readonly query?: unknown;
  /** A document the transport parsed already (Apollo's document store), with MAX_TOKENS. */
  readonly document?: DocumentNode;
  readonly operationName?: unknown;
  readonly variables?: unknown;
}

/** What a transport serves, and what to tell a client that sent another kind there. */
export interface TransportRules {
  readonly serves: readonly OperationKind[];
  /** BAD_REQUEST message for an operation of a kind not in `serves`, naming where to send it. */
  readonly elsewhere: string;
}

/** An operation that passed every rule: what `execute` or `subscribe` is given. */
export interface PreparedOperation {
  readonly kind: OperationKind;
  readonly document: DocumentNode;
  readonly operation: OperationDefinitionNode;
  readonly operationName: string | undefined;
  readonly variables: Record<string, unknown> | undefined;
}

/**
 * What a transport sends back. `refused`: nothing ran (status 400, or 503 while a dependency
 * is away). `result`: a query's or mutation's answer, or a subscription that failed to start.
 * `stream`: a subscription's results. Errors in all three are masked already; `headers` are
 * for HTTP transports (Retry-After with a 503).
 */
export type OperationOutcome =
  | {
      readonly kind: 'refused' | 'result';
      readonly status: number;
      readonly headers: Readonly<Record<string, string>>;
      readonly result: FormattedExecutionResult;
    }
  | { readonly kind: 'stream'; readonly results: OperationStream };

export interface PipelineOptions {
  readonly schema: GraphQLSchema;
  readonly log: Logger;
  readonly limits: QueryLimits;
  /** Whether `__schema` and `__type` are served (GRAPHQL_INTROSPECTION). */
  readonly introspection: boolean;
  /** Show internal errors' messages to clients (development only). */
  readonly exposeInternals: boolean;
}

/** What a 503 tells clients to wait before retrying. */
export const RETRY_AFTER_SECONDS = 1;

/**
 * The one path every GraphQL operation takes, whatever carried it (Apollo over HTTP POST and
 * GET, graphql-ws, SSE, multipart): shape, parse with MAX_TOKENS, validate (depth, mutations,
 * introspection; a rule that throws is a validation error, not a crash), resolve the
 * operation, the transport's kinds, variables against their types, then Unicode and cost, then
 * execute or subscribe, and every error masked by formatError. Each rule lives here once, so
 * a transport cannot miss one. A transport calls `run` (docs/pipeline.md); graphql-ws, which
 * calls execute and subscribe itself, uses `prepare`, `subscribe` and `format`.
 */
export class OperationPipeline {
  readonly schema: GraphQLSchema;
  private readonly rules: readonly ValidationRule[];
  /** Validation errors per parsed document: Apollo hands every request of one text the same. */
  private readonly validated = new WeakMap<DocumentNode, readonly GraphQLError[]>();
  private readonly databaseAway: Condition;
  /** Parsed documents by text, for the transports that send text (Apollo sends its own). */
  private readonly documents = new DocumentCache(DOCUMENT_CACHE_LENGTH);

  constructor(private readonly options: PipelineOptions) {
    this.schema = options.schema;
    this.databaseAway = databaseCondition(options.log);
    this.rules = [
      ...specifiedRules,
      ...limitRules(options.limits),
      ...(options.introspection ? [] : [NoSchemaIntrospectionCustomRule]),
    ];
  }

  /** Parses and checks an operation: the prepared operation, or the errors refusing it. */
  prepare(request: OperationRequest, transport: TransportRules): PreparedOperation | readonly GraphQLError[] {
    const { variables } = request;
    if (request.operationName != null && typeof request.operationName !== 'string') {
      return [badRequest('operationName must be a string')];
    }
    const operationName = request.operationName as string | null | undefined;
    if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) {
      return [badRequest('variables must be a JSON object')];
    }
    const vars = (variables ?? undefined) as Record<string, unknown> | undefined;
    const document = request.document ?? this.parse(request.query);
    if (!('kind' in document)) return document;
    const invalid = this.validate(document);
    if (invalid.length > 0) return invalid;
    const operation = getOperationAST(document, operationName);
    if (!operation) return [unresolved(operationName)];
    if (!transport.serves.includes(operation.operation)) return [badRequest(transport.elsewhere)];
    // Types first: every later use (the cost cache's key, the Unicode walk, execution) sees
    // variables of the declared shapes, never a 5,000-deep array where an Int was declared.
    const coercion = variableErrors(this.schema, operation, vars);
    if (coercion.length > 0) return coercion;
    const badText = invalidStringError(vars) ?? inexactNumberError(vars);
    if (badText) return [badText];
    const tooCostly = costError(this.schema, document, vars, operationName, this.options.limits.maxCost);
    if (tooCostly) return [tooCostly];
    return {
      kind: operation.operation,
      document,
      operation,
      operationName: operationName ?? undefined,
      variables: vars,
    };
  }

  /** prepare, then execute or subscribe, with every error masked: what a transport calls. */
  async run(
    request: OperationRequest,
    transport: TransportRules,
    context: () => AppContext | Promise<AppContext>,
  ): Promise<OperationOutcome> {
    const prepared = this.prepare(request, transport);
    if (!('kind' in prepared)) {
      traceRefusal(prepared);
      return this.answer('refused', { errors: prepared });
    }
    if (prepared.kind !== 'subscription') {
      return traceOperation(prepared, await context(), async (traced) =>
        this.answer('result', await execute(this.argsOf(prepared, traced))),
      );
    }
    const args = this.argsOf(prepared, await context());
    const stream = await this.subscribe(args);
    if (!(Symbol.asyncIterator in stream)) return this.answer('result', stream);
    return {
      kind: 'stream',
      results: streamOf(
        stream,
        (result) => this.format(result),
        (errors) => this.formatErrors(errors),
      ),
    };
  }

  /** The arguments graphql-js's execute and subscribe take for a prepared operation. */
  argsOf(prepared: PreparedOperation, contextValue: AppContext): ExecutionArgs {
    return {
      schema: this.schema,
      document: prepared.document,
      operationName: prepared.operationName,
      variableValues: prepared.variables,
      contextValue,
    };
  }

  /**
   * graphql-js's subscribe, each event's delivery traced (deliveries.ts). A subscription whose source fails later (the database away
   * mid-stream) rejects its iterator's next(); transports turn that into their error message
   * through `format`/`formatErrors`, which follow the error to its cause.
   */
  async subscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
    return subscribeDelivering(args);
  }

  /** A result as the client sees it: errors masked (internal ones logged), nothing else changed. */
  format(result: ExecutionResult): FormattedExecutionResult {
    const { errors, ...rest } = result;
    return errors ? { ...rest, errors: this.formatErrors(errors) } : rest;
  }

  formatErrors(errors: readonly unknown[]): GraphQLFormattedError[] {
    const { log, exposeInternals } = this.options;
    return errors.map((error) => {
      const graphqlError =
        error instanceof GraphQLError
          ? error
          : new GraphQLError(error instanceof Error ? error.message : String(error), {
              originalError: error instanceof Error ? error : undefined,
            });
      return formatError(graphqlError.toJSON(), graphqlError, log, exposeInternals);
    });
  }

  private answer(kind: 'refused' | 'result', result: ExecutionResult): OperationOutcome {
    const formatted = this.format(result);
    const unavailable = formatted.errors?.some((e) => e.extensions?.code === 'SERVICE_UNAVAILABLE');
    if (unavailable) {
      // A dependency away is temporary: 503 with Retry-After tells clients and proxies to
      // retry (with the same Idempotency-Key), unlike a 200 with an error in the body.
      return {
        kind,
        status: 503,
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
        result: formatted,
      };
    }
    if (!formatted.errors) this.databaseAway.cleared({}, 'GraphQL operations served again');
    return { kind, status: kind === 'refused' ? 400 : 200, headers: {}, result: formatted };
  }

  private parse(query: unknown): DocumentNode | readonly GraphQLError[] {
    if (typeof query !== 'string' || query.length === 0) {
      return [badRequest('GraphQL operations must contain a non-empty `query`')];
    }
    const known = this.documents.get(query);
    if (known) return known;
    try {
      const document = parse(query, { maxTokens: MAX_TOKENS });
      this.documents.set(query, document);
      return document;
    } catch (error) {
      const message = error instanceof GraphQLError ? error.message : 'Syntax Error';
      return [new GraphQLError(message, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })];
    }
  }

  private validate(document: DocumentNode): readonly GraphQLError[] {
    const known = this.validated.get(document);
    if (known) return known;
    let errors: readonly GraphQLError[];
    try {
      errors = validate(this.schema, document, this.rules).map((e) => validationFailed(e.message, e.nodes));
    } catch (error) {
      // A rule that throws instead of reporting (graphql-js's single-field subscription rule
      // on `@include(if: $b)` at a subscription's root) refuses the document like any other
      // rule, instead of failing the request as ours or closing a WebSocket with 4500.
      errors = [
        validationFailed(
          error instanceof GraphQLError ? error.message : 'The operation could not be validated',
          error instanceof GraphQLError ? error.nodes : undefined,
        ),
      ];
    }
    this.validated.set(document, errors);
    return errors;
  }
}

const badRequest = (message: string) => new GraphQLError(message, { extensions: { code: 'BAD_REQUEST' } });

const validationFailed = (message: string, nodes: GraphQLError['nodes']) =>
  new GraphQLError(message, { nodes, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });

function unresolved(operationName: string | null | undefined): GraphQLError {
  return new GraphQLError(
    operationName
      ? `Unknown operation named "${operationName}".`
      : 'Must provide operation name if query contains multiple operations.',
    { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } },
  );
}
