import { describe, expect, it } from 'vitest';
import { multipartFraming } from '../../src/app/multipart.js';
import { sseFraming } from '../../src/app/sse.js';
import { encodeHistoryCursor } from '../../src/customers/cursor.js';
import { LAST_EVENT_ID, resumeAfter } from '../../src/customers/history.js';
import { InvalidInputError } from '../../src/errors.js';

/** The messages of an SSE body as the HTML standard's parser builds them (fields, no dispatch rules). */
function sseMessages(body: string): Array<Record<string, string>> {
  return body
    .split('\n\n')
    .filter((block) => block.length > 0)
    .map((block) => {
      const message: Record<string, string> = {};
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = line.slice(0, colon);
        message[field] = line.slice(colon + 1).replace(/^ /, '');
      }
      return message;
    });
}

describe('SSE framing', () => {
  it('opens with a comment, the reconnection delay and the start position as an id with no data', () => {
    const messages = sseMessages(sseFraming.open('abc'));
    expect(messages).toEqual([{}, { retry: '1000', id: 'abc' }]);
  });

  it('writes a result as a graphql-sse `next` event carrying its cursor as the SSE id', () => {
    const result = { data: { onCustomerEvent: { cursor: 'c1', payload: { note: 'two\nlines' } } } };
    const [message] = sseMessages(sseFraming.next(result, 'c1'));
    expect(message).toEqual({ id: 'c1', event: 'next', data: JSON.stringify(result) });
  });

  it('writes no id that could break out of its line', () => {
    expect(sseFraming.next({ data: null }, 'a\nevent: complete')).not.toContain('complete');
  });

  it('ends a failed stream with the errors and no `complete`, so EventSource reconnects', () => {
    const body = sseFraming.failed([{ message: 'away', extensions: { code: 'SERVICE_UNAVAILABLE' } }]);
    expect(sseMessages(body)).toEqual([
      { event: 'next', data: '{"errors":[{"message":"away","extensions":{"code":"SERVICE_UNAVAILABLE"}}]}' },
    ]);
    expect(sseMessages(sseFraming.complete())).toEqual([{ event: 'complete', data: '' }]);
  });
});

describe('multipart framing', () => {
  /** The JSON parts of a multipart body, as Apollo Client splits it (on CRLF + delimiter). */
  const parts = (body: string) =>
    body
      .split('\r\n--graphql')
      .map((chunk) => chunk.slice(chunk.indexOf('\r\n\r\n') + 4))
      .filter((chunk) => chunk.startsWith('{'))
      .map((chunk) => JSON.parse(chunk) as unknown);

  it('writes results as payload parts, heartbeats as {}, and closes the body', () => {
    const body =
      multipartFraming.open() +
      multipartFraming.next({ data: { a: 1 } }) +
      multipartFraming.heartbeat() +
      multipartFraming.complete();
    expect(parts(body)).toEqual([{ payload: { data: { a: 1 } } }, {}]);
    expect(body.endsWith('\r\n--graphql--\r\n')).toBe(true);
    expect(multipartFraming.contentType).toBe('multipart/mixed;boundary="graphql";subscriptionSpec="1.0"');
  });

  it('ends at a stop with a transport error (payload null), which ends the subscription with an error', () => {
    const body = multipartFraming.open() + multipartFraming.goingAway();
    expect(parts(body)).toEqual([
      { payload: null, errors: [expect.objectContaining({ extensions: { code: 'SERVICE_UNAVAILABLE' } })] },
    ]);
    expect(body.endsWith('--graphql--\r\n')).toBe(true);
  });
});

describe('resumeAfter', () => {
  const at = (position: number) => encodeHistoryCursor(position);

  it('takes the later of `after` and Last-Event-ID, and names the field that gave it', () => {
    expect(resumeAfter({})).toBeUndefined();
    expect(resumeAfter({ after: at(5) })).toEqual({ position: 5, field: 'after' });
    expect(resumeAfter({ lastEventId: at(5) })).toEqual({ position: 5, field: LAST_EVENT_ID });
    expect(resumeAfter({ after: at(3), lastEventId: at(9) })).toEqual({ position: 9, field: LAST_EVENT_ID });
    expect(resumeAfter({ after: at(9), lastEventId: at(3) })).toEqual({ position: 9, field: 'after' });
  });

  it('refuses a malformed Last-Event-ID as BAD_USER_INPUT on that field', () => {
    for (const lastEventId of ['', 'garbage!', at(1).slice(1), '9'.repeat(100)]) {
      let error: unknown;
      try {
        resumeAfter({ after: at(1), lastEventId });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe(LAST_EVENT_ID);
    }
  });
});
