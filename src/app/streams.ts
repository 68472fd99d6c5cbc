import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FormattedExecutionResult } from 'graphql';
import type { Logger } from '../log.js';
import type { Deadline } from '../support/deadline.js';
import type { ConnectionBudget } from './connections.js';
import type { AppContext, EventStreamPosition } from './context.js';
import type { StreamFraming } from './framing.js';
import { readBody, refusalBody } from './http.js';
import { multipartFraming } from './multipart.js';
import { isAllowedOrigin } from './origin.js';
import {
  type OperationPipeline,
  type OperationRequest,
  RETRY_AFTER_SECONDS,
  type TransportRules,
} from './pipeline.js';
import { sseFraming } from './sse.js';
import { StreamWriter } from './stream-writer.js';

const STREAMS: TransportRules = {
  serves: ['subscription'],
  elsewhere:
    'Only subscriptions are served as event streams; send queries and mutations over HTTP as a POST with content-type application/json',
};

/** Which HTTP subscription protocol an `Accept` header asks for, if any: the first one it lists. */
export function framingFor(accept: string | undefined): StreamFraming | undefined {
  for (const range of (accept ?? '').toLowerCase().split(',')) {
    const [type, ...parameters] = range.split(';').map((s) => s.trim());
    if (type === 'text/event-stream') return sseFraming;
    // Apollo Client sends subscriptionSpec=1.0, Apollo iOS and Kotlin "1.0". Without it,
    // multipart/mixed asks for @defer, which this service does not serve.
    if (
      type === 'multipart/mixed' &&
      parameters.some((p) => p.replaceAll('"', '') === 'subscriptionspec=1.0')
    ) {
      return multipartFraming;
    }
  }
  return undefined;
}

export interface HttpSubscriptionsOptions {
  readonly pipeline: OperationPipeline;
  readonly log: Logger;
  readonly maxBodyBytes: number;
  /** Cross origins allowed besides the service's own (CORS_ORIGINS). */
  readonly allowedOrigins: readonly string[];
  /** CORS for the request (origin.ts); calls `next` unless it answered the request itself. */
  readonly cors?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void;
  /** Shared with the WebSocket server. */
  readonly connections: ConnectionBudget;
  readonly makeContext: (
    req: IncomingMessage,
    stream: EventStreamPosition | undefined,
    deadline: Deadline,
  ) => AppContext;
}

/**
 * Subscriptions over plain HTTP on /graphql: GraphQL over SSE (distinct connections, GET and
 * POST, `Accept: text/event-stream`) and Apollo's multipart protocol (`Accept:
 * multipart/mixed;subscriptionSpec="1.0"`), through the operation pipeline like every other
 * transport. This file is the HTTP edge (origin, connection cap, request decoding, refusals);
 * stream-writer.ts writes a stream, sse.ts and multipart.ts frame it. docs/http-subscriptions.md
 * says why graphql-sse's own handler is not used.
 */
export class HttpSubscriptions {
  private readonly open = new Set<StreamWriter>();
  private stopping = false;

  constructor(private readonly options: HttpSubscriptionsOptions) {}

  /** Takes a GET or POST to /graphql that asks for a stream; false for anything else. */
  handle(req: IncomingMessage, res: ServerResponse, deadline: Deadline): boolean {
    if ((req.method !== 'GET' && req.method !== 'POST') || pathOf(req.url) !== '/graphql') return false;
    const framing = framingFor(req.headers.accept);
    if (!framing) return false;
    const serve = () => {
      this.serve(req, res, framing, deadline).catch((error: unknown) => {
        this.options.log.error({ err: error }, 'HTTP subscription failed');
        if (res.headersSent) res.destroy();
        else answer(res, 500, refusalBody(500));
      });
    };
    if (this.options.cors) this.options.cors(req, res, serve);
    else serve();
    return true;
  }

  /** Ends every stream (clients reconnect elsewhere and resume) and refuses new ones. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.open].map((stream) => stream.stop()));
  }

  private async serve(
    req: IncomingMessage,
    res: ServerResponse,
    framing: StreamFraming,
    deadline: Deadline,
  ): Promise<void> {
    const { options } = this;
    if (this.stopping) return unavailable(res, 'The server is shutting down: connect again');
    // What a browser page elsewhere may not do, as for WebSocket upgrades: a GET carries no
    // CSRF header (EventSource cannot set one), so its Origin is what keeps other sites out.
    if (!isAllowedOrigin(req.headers, options.allowedOrigins)) {
      return answer(res, 403, error('This origin may not subscribe: see CORS_ORIGINS', 'FORBIDDEN'));
    }
    const request = await readRequest(req, options.maxBodyBytes);
    if ('refused' in request) return answer(res, request.refused, request.body);
    const release = options.connections.take();
    if (!release) {
      return unavailable(
        res,
        `At most ${options.connections.max} open subscriptions connections: retry later`,
      );
    }
    try {
      const position = framing === sseFraming ? { lastEventId: lastEventIdOf(req) } : undefined;
      const context = options.makeContext(req, position, deadline);
      const outcome = await options.pipeline.run(request, STREAMS, () => context);
      // Answered meanwhile (the request deadline passed) or the client left: nothing to write.
      if (res.headersSent || res.destroyed) {
        if (outcome.kind === 'stream') await outcome.results.return?.();
        return;
      }
      if (outcome.kind === 'stream') {
        const writer = new StreamWriter(res, framing, outcome.results, position);
        this.open.add(writer);
        if (this.stopping) void writer.stop();
        await writer.finished;
        this.open.delete(writer);
        return;
      }
      if (outcome.kind === 'refused' || outcome.status !== 200) {
        return answer(res, outcome.status, outcome.result, outcome.headers);
      }
      // A subscription that failed to start (a cursor refused, say): the protocol's way, a
      // stream with the one result and its end, which tells a client not to reconnect.
      res.writeHead(200, { 'content-type': framing.contentType, 'cache-control': 'no-cache' });
      res.end(framing.open() + framing.next(outcome.result) + framing.complete());
    } finally {
      release();
    }
  }
}

type Refusal = { readonly refused: number; readonly body: unknown };

const refusal = (status: number, body: unknown = refusalBody(status)): Refusal => ({ refused: status, body });

/** The operation from the URL (GET) or a JSON body (POST), or the answer refusing it. */
async function readRequest(req: IncomingMessage, maxBodyBytes: number): Promise<OperationRequest | Refusal> {
  if (req.method === 'GET') {
    const search = new URLSearchParams((req.url ?? '').slice(pathOf(req.url).length + 1));
    const variables = search.get('variables');
    let parsed: unknown;
    try {
      parsed = variables === null ? undefined : JSON.parse(variables);
    } catch {
      return refusal(400, error('variables must be JSON', 'BAD_REQUEST'));
    }
    return {
      query: search.get('query') ?? undefined,
      operationName: search.get('operationName') ?? undefined,
      variables: parsed,
    };
  }
  // A JSON body is what makes a cross-site POST need a preflight: the CSRF prevention the
  // other POSTs get from Apollo.
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    return refusal(415);
  }
  const text = await readBody(req, maxBodyBytes);
  if (typeof text === 'number') return refusal(text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return refusal(400);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return refusal(400, error('The body must be one GraphQL request: a JSON object', 'BAD_REQUEST'));
  }
  const { query, operationName, variables } = body as Record<string, unknown>;
  return { query, operationName, variables };
}

/** `Last-Event-ID`, which EventSource sends only when it has an id; an empty one is none. */
function lastEventIdOf(req: IncomingMessage): string | undefined {
  const value = req.headers['last-event-id'];
  const id = Array.isArray(value) ? value[0] : value;
  return id === undefined || id === '' ? undefined : id;
}

const pathOf = (url: string | undefined): string => (url ?? '').split('?')[0] ?? '';

const error = (message: string, code: string): FormattedExecutionResult => ({
  errors: [{ message, extensions: { code } }],
});

function answer(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

function unavailable(res: ServerResponse, message: string): void {
  answer(res, 503, error(message, 'SERVICE_UNAVAILABLE'), { 'retry-after': String(RETRY_AFTER_SECONDS) });
}
