import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { Deadline } from '../support/deadline.js';
import { Condition } from '../support/log-limit.js';

/** What a 503 tells clients to wait before retrying. */
export const RETRY_AFTER_SECONDS = 1;

const UNAVAILABLE_BODY = JSON.stringify({
  errors: [
    {
      message: 'The service did not answer in time; retry (with the same Idempotency-Key for a mutation)',
      extensions: { code: 'SERVICE_UNAVAILABLE' },
    },
  ],
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
type DeadlineHandler = (req: IncomingMessage, res: ServerResponse, deadline: Deadline) => void;

/**
 * A server-side deadline for every HTTP request: a request that has not begun its answer within
 * `timeoutMs` is answered 503 SERVICE_UNAVAILABLE with Retry-After, whatever it waits for (a
 * pool checkout, a statement in a dead link, the broker). `handle` gets the request's Deadline
 * (support/deadline.ts), which aborts then, or as soon as the client goes away, and hands it to
 * the database with the request's work (db/deadline.ts), so the database starts none of its
 * statements later, for a client that is no longer there: a retry with the same
 * Idempotency-Key finds either the first attempt committed or nothing.
 *
 * A response that has begun (its headers written, as a subscription's stream does at once) is
 * released from the deadline and goes on as long as it needs.
 */
export function withRequestDeadline(timeoutMs: number, log: Logger, handle: DeadlineHandler): Handler {
  const missed = new Condition(log, 'request deadline passed');
  return (req, res) => {
    const deadline = new Deadline(Date.now() + timeoutMs);
    const writeHead = res.writeHead;
    const settle = () => {
      clearTimeout(timer);
      deadline.release();
    };
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      if (!timedOut) {
        settle();
        missed.cleared({}, 'requests answered in time again');
      }
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } as ServerResponse['writeHead'];
    let timedOut = false;
    const timer = setTimeout(() => {
      if (res.headersSent) return settle();
      timedOut = true;
      deadline.abort(Object.assign(new Error('request deadline passed'), { code: 'REQUEST_TIMEOUT' }));
      missed.occurred('warn', { timeoutMs }, 'request deadline passed; answered 503');
      res.writeHead(503, {
        'content-type': 'application/json; charset=utf-8',
        'retry-after': String(RETRY_AFTER_SECONDS),
      });
      res.end(UNAVAILABLE_BODY);
      // The abandoned work may still try to answer: it has been answered.
      muzzle(res);
    }, timeoutMs);
    res.once('close', () => {
      // Gone before its answer was complete: nothing more is started for it.
      if (!res.writableFinished) {
        deadline.abort(Object.assign(new Error('client went away'), { code: 'CLIENT_GONE' }));
      }
      clearTimeout(timer);
    });
    handle(req, res, deadline);
  };
}

/** Makes later writes to an answered response do nothing (instead of throwing). */
function muzzle(res: ServerResponse): void {
  res.setHeader = () => res;
  res.writeHead = () => res;
  res.write = () => true;
  res.end = () => res;
  res.removeHeader = () => {};
}
