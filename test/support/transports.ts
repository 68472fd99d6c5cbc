import { expect } from 'vitest';
import WebSocket from 'ws';
import { MULTIPART_ACCEPT, parseMultipart, parseSse, SSE_ACCEPT } from './http-streams.js';
import { INTERNALS } from './rows.js';
import { wsUrlOf } from './subscriptions.js';

export type OperationKind = 'query' | 'mutation' | 'subscription';

/** One GraphQL operation, as every transport carries it. */
export interface Operation {
  readonly query: string;
  /** An object, or JSON text sent as it is (a value too deep for this process to stringify). */
  readonly variables?: Record<string, unknown> | { readonly json: string };
  readonly operationName?: string;
}

/** The operation as JSON text, with its variables' text spliced in as given. */
function operationJson({ query, variables, operationName }: Operation): string {
  const json = variables && 'json' in variables ? variables.json : JSON.stringify(variables ?? null);
  return `{"query":${JSON.stringify(query)},"operationName":${JSON.stringify(operationName ?? null)},"variables":${json}}`;
}

/** What came back: the HTTP status where there is one, and every error. */
export interface Answer {
  /** Undefined on transports without a status per operation (WebSocket). */
  readonly status: number | undefined;
  readonly errors: ReadonlyArray<{ message: string; extensions?: Record<string, unknown> }>;
  readonly data?: unknown;
  readonly headers?: Headers;
  /** The first error's code, or undefined when the operation succeeded. */
  readonly code: string | undefined;
}

/**
 * A way to send one operation to the service. The hostile suites run every case on every
 * transport that `reaches` it: add a transport here (SSE, multipart) and they all run there too.
 */
export interface Transport {
  readonly name: string;
  /** The operation kinds it serves. */
  readonly serves: readonly OperationKind[];
  /**
   * Whether a document of this kind reaches the pipeline's parse and validation on this
   * transport (GET refuses anything but a query before: Apollo's rule, 405).
   */
  reachesValidation(kind: OperationKind): boolean;
  send(url: string, operation: Operation, headers?: Record<string, string>): Promise<Answer>;
}

function answerOf(status: number | undefined, body: unknown, headers?: Headers): Answer {
  const { errors = [], data } = (body ?? {}) as Pick<Answer, 'errors' | 'data'>;
  for (const pattern of INTERNALS) expect(JSON.stringify(body)).not.toMatch(pattern);
  const code = errors[0]?.extensions?.code;
  return { status, errors, data, headers, code: typeof code === 'string' ? code : undefined };
}

async function http(url: string, init: RequestInit): Promise<Answer> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { errors: [{ message: text }] };
  }
  return answerOf(response.status, body, response.headers);
}

export const POST: Transport = {
  name: 'HTTP POST',
  serves: ['query', 'mutation'],
  reachesValidation: () => true,
  send: (url, operation, headers = {}) =>
    http(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: operationJson(operation),
    }),
};

export const GET: Transport = {
  name: 'HTTP GET',
  serves: ['query'],
  reachesValidation: (kind) => kind === 'query',
  send: (url, operation, headers = {}) => {
    const params = new URLSearchParams({ query: operation.query });
    const { variables } = operation;
    if (variables)
      params.set('variables', 'json' in variables ? String(variables.json) : JSON.stringify(variables));
    if (operation.operationName) params.set('operationName', operation.operationName);
    return http(`${url}?${params}`, {
      method: 'GET',
      headers: { 'apollo-require-preflight': 'true', ...headers },
    });
  },
};

/**
 * graphql-ws, spoken on a raw socket (the message is text we write, so variables of any depth
 * go as given): answered by the first `next`, `error` or `complete`. A close is a failure of the
 * server, never an answer.
 */
export const WEBSOCKET: Transport = {
  name: 'WebSocket',
  serves: ['subscription'],
  reachesValidation: () => true,
  send: (url, operation) =>
    new Promise<Answer>((resolve, reject) => {
      const socket = new WebSocket(wsUrlOf(url), 'graphql-transport-ws');
      const fail = (why: string) => {
        socket.terminate();
        reject(new Error(why));
      };
      const timer = setTimeout(() => fail('no answer over WebSocket within 10 s'), 10_000);
      socket.on('open', () => socket.send('{"type":"connection_init"}'));
      socket.on('error', (error) => fail(String(error)));
      socket.on('close', (code, reason) => fail(`closed ${code} ${reason.toString()}`));
      socket.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString('utf8')) as { type: string; payload?: unknown };
        if (message.type === 'connection_ack') {
          socket.send(`{"id":"1","type":"subscribe","payload":${operationJson(operation)}}`);
          return;
        }
        if (message.type === 'ping') return socket.send('{"type":"pong"}');
        clearTimeout(timer);
        socket.removeAllListeners('close');
        socket.close();
        const body =
          message.type === 'error'
            ? { errors: message.payload }
            : message.type === 'next'
              ? message.payload
              : {};
        resolve(answerOf(undefined, body));
      });
    }),
};

/**
 * A subscription over HTTP (SSE, multipart): the JSON refusal when the stream did not start,
 * else the first result it carries (a `next` event, a `payload` part). A stream that ends with
 * no result, or none within 10 s, is a failure of the server, never an answer.
 */
async function stream(url: string, init: RequestInit, first: (body: string) => unknown): Promise<Answer> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    const response = await fetch(url, { ...init, signal: controller.signal });
    const type = response.headers.get('content-type') ?? '';
    if (!type.startsWith('text/event-stream') && !type.startsWith('multipart/mixed')) {
      return answerOf(response.status, JSON.parse(await response.text()), response.headers);
    }
    const decoder = new TextDecoder();
    let body = '';
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      body += decoder.decode(chunk, { stream: true });
      const result = first(body);
      if (result !== undefined) return answerOf(response.status, result, response.headers);
    }
    throw new Error(`the stream ended with no result: ${JSON.stringify(body)}`);
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

const firstNext = (body: string) => {
  const next = parseSse(body).messages.find((m) => m.event === 'next');
  return next === undefined ? undefined : (JSON.parse(next.data) as unknown);
};

const firstPayload = (body: string) => {
  const part = parseMultipart(body).find((p) => 'payload' in p);
  return part === undefined ? undefined : (part.payload ?? { errors: part.errors });
};

/** A streaming transport's send: the operation in a JSON body, POSTed with `accept`. */
const streamingPost =
  (accept: string, first: typeof firstNext): Transport['send'] =>
  (url, operation, headers = {}) =>
    stream(
      url,
      {
        method: 'POST',
        headers: { accept, 'content-type': 'application/json', ...headers },
        body: operationJson(operation),
      },
      first,
    );

/** GraphQL over SSE, distinct connections, the operation in a JSON body. */
export const SSE_POST: Transport = {
  name: 'SSE POST',
  serves: ['subscription'],
  reachesValidation: () => true,
  send: streamingPost(SSE_ACCEPT, firstNext),
};

/** GraphQL over SSE as a browser's EventSource sends it: the operation in the URL, no CSRF header. */
export const SSE_GET: Transport = {
  name: 'SSE GET',
  serves: ['subscription'],
  reachesValidation: () => true,
  send: (url, operation, headers = {}) => {
    const params = new URLSearchParams({ query: operation.query });
    const { variables } = operation;
    if (variables)
      params.set('variables', 'json' in variables ? String(variables.json) : JSON.stringify(variables));
    if (operation.operationName) params.set('operationName', operation.operationName);
    return stream(
      `${url}?${params}`,
      { method: 'GET', headers: { accept: SSE_ACCEPT, ...headers } },
      firstNext,
    );
  },
};

/** Apollo's multipart subscriptions, as Apollo Client's HttpLink sends them. */
export const MULTIPART: Transport = {
  name: 'multipart',
  serves: ['subscription'],
  reachesValidation: () => true,
  send: streamingPost(MULTIPART_ACCEPT, firstPayload),
};

/** Every transport the service serves operations on. */
export const TRANSPORTS: readonly Transport[] = [POST, GET, WEBSOCKET, SSE_POST, SSE_GET, MULTIPART];

/** The transports a case of this kind runs on: those that serve it, or validate it first. */
export function transportsFor(kind: OperationKind, refusedByValidation: boolean): Transport[] {
  return TRANSPORTS.filter(
    (t) => t.serves.includes(kind) || (refusedByValidation && t.reachesValidation(kind)),
  );
}
