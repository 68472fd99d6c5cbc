import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ApolloServer, HeaderMap } from '@apollo/server';
import type { Logger } from '../log.js';
import type { Deadline } from '../support/deadline.js';
import type { AppContext } from './context.js';

/**
 * The answer to a request refused before GraphQL runs (body too large, not JSON), in GraphQL's
 * error shape with a code: never a framework's HTML page, which shows a stack trace outside
 * production. Both HTTP paths (graphqlPost below and Express's error handler) send it.
 */
export function refusalBody(status: number): { errors: [{ message: string; extensions: { code: string } }] } {
  const known: Record<number, [string, string]> = {
    413: ['PAYLOAD_TOO_LARGE', 'Request body is too large'],
    400: ['BAD_REQUEST', 'Request body is not valid JSON'],
    415: ['BAD_REQUEST', 'Unsupported content type'],
  };
  const [code, message] =
    known[status] ??
    (status < 500 ? ['BAD_REQUEST', 'Bad request'] : ['INTERNAL_SERVER_ERROR', 'Internal server error']);
  return { errors: [{ message, extensions: { code } }] };
}

export interface GraphqlPostOptions {
  readonly apollo: ApolloServer<AppContext>;
  readonly log: Logger;
  readonly maxBodyBytes: number;
  readonly context: (req: IncomingMessage, deadline: Deadline) => Promise<AppContext>;
  /** CORS for the request (origin.ts); calls `next` unless it answered the request itself. */
  readonly cors?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void;
}

/**
 * `POST /graphql` with a JSON body, the one request every mutation and most queries are,
 * handed to Apollo without Express: this one request pays for none of Express's routing,
 * body-parser, content negotiation and per-response ETag, which it does not need.
 * It answers exactly as the Express path does (same limits, same refusals, same Apollo call);
 * anything else (another method or path, a charset other than UTF-8, a compressed body)
 * returns false and goes to Express, which owns every other case.
 */
export function graphqlPost(
  options: GraphqlPostOptions,
): (req: IncomingMessage, res: ServerResponse, deadline: Deadline) => boolean {
  const { apollo, log, maxBodyBytes, context, cors } = options;
  const respond = (res: ServerResponse, status: number, body: unknown) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(body));
  };
  const refuse = (res: ServerResponse, status: number) => respond(res, status, refusalBody(status));

  const run = async (req: IncomingMessage, res: ServerResponse, search: string, deadline: Deadline) => {
    let text = await readBody(req, maxBodyBytes);
    if (typeof text === 'number') {
      refuse(res, text);
      return;
    }
    let body: unknown;
    // As body-parser's strict mode: an empty body is {}, anything but an object or array is
    // refused; a leading byte-order mark (some .NET and PowerShell clients send one) is dropped.
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.length === 0) body = {};
    else {
      const first = text.trimStart()[0];
      if (first !== '{' && first !== '[') return refuse(res, 400);
      try {
        body = JSON.parse(text);
      } catch {
        return refuse(res, 400);
      }
    }
    const headers = new HeaderMap();
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
    }
    const response = await apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: 'POST', headers, search, body },
      context: () => context(req, deadline),
    });
    for (const [key, value] of response.headers) res.setHeader(key, value);
    res.statusCode = response.status ?? 200;
    if (response.body.kind === 'complete') {
      res.end(response.body.string);
      return;
    }
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
  };

  return (req, res, deadline) => {
    if (req.method !== 'POST' || !req.url) return false;
    const query = req.url.indexOf('?');
    const path = query === -1 ? req.url : req.url.slice(0, query);
    if (path !== '/graphql' || !plainJson(req)) return false;
    const go = () => {
      run(req, res, query === -1 ? '' : (req.url?.slice(query) ?? ''), deadline).catch((error: unknown) => {
        log.error({ err: error }, 'HTTP request failed');
        if (res.headersSent) res.destroy();
        else refuse(res, 500);
      });
    };
    if (cors) cors(req, res, go);
    else go();
    return true;
  };
}

/** `application/json`, UTF-8 (said or implied), not compressed: what graphqlPost reads itself. */
function plainJson(req: IncomingMessage): boolean {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
  const [type, ...parameters] = (req.headers['content-type'] ?? '').split(';');
  if (type?.trim().toLowerCase() !== 'application/json') return false;
  return parameters.every((p) => {
    const [name, value] = p.split('=').map((s) => s.trim().toLowerCase());
    return name !== 'charset' || value === 'utf-8' || value === '"utf-8"';
  });
}

/** The body as text, or the status refusing it: 413 above `limit` bytes, 400 if cut short. */
export function readBody(req: IncomingMessage, limit: number): Promise<string | number> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  // A body refused for its size is read and dropped, as body-parser does, so the connection
  // stays usable and the client is not reset before it reads the 413; HTTP_REQUEST_TIMEOUT_MS
  // bounds how long that may take.
  if (declared > limit) {
    req.resume();
    return Promise.resolve(413);
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: string | number) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onError);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        done(413);
        chunks.length = 0;
        req.resume();
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      if (!Number.isNaN(declared) && size !== declared) return done(400);
      done(
        chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'),
      );
    };
    const onError = () => done(400);
    req.on('data', onData).on('end', onEnd).on('error', onError).on('aborted', onError);
  });
}
