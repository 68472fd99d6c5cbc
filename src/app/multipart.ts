import type { FormattedExecutionResult, GraphQLFormattedError } from 'graphql';
import type { StreamFraming } from './framing.js';

const BOUNDARY = 'graphql';
const PART_HEADERS = '\r\ncontent-type: application/json; charset=utf-8\r\n\r\n';

/**
 * Apollo's multipart subscription protocol (subscriptionSpec 1.0), as Apollo Client's HttpLink,
 * Apollo iOS and Apollo Kotlin read it: each part a JSON object, `{"payload": result}` for a
 * result, `{}` as a heartbeat every 5 s, and `{"payload": null, "errors": [...]}` for an error
 * that ends the subscription (the client's error callback fires). The body opens with a
 * delimiter and every part is followed by one, so a part is complete the moment it is written.
 */
export const multipartFraming: StreamFraming = {
  contentType: `multipart/mixed;boundary="${BOUNDARY}";subscriptionSpec="1.0"`,
  heartbeatMs: 5_000,
  open: () => `\r\n--${BOUNDARY}`,
  next: (result) => part({ payload: result }),
  heartbeat: () => part({}),
  complete: () => '--\r\n',
  failed: (errors) => `${part({ payload: null, errors })}--\r\n`,
  // Ended with an error rather than a bare end: a bare end completes the subscription, and a
  // client would not know to subscribe again (with its last cursor as `after`).
  goingAway: () =>
    `${part({
      payload: null,
      errors: [
        {
          message: 'The server is shutting down: subscribe again, with the last cursor as `after`',
          extensions: { code: 'SERVICE_UNAVAILABLE' },
        },
      ],
    })}--\r\n`,
};

function part(body: {
  payload?: FormattedExecutionResult | null;
  errors?: readonly GraphQLFormattedError[];
}) {
  return `${PART_HEADERS}${JSON.stringify(body)}\r\n--${BOUNDARY}`;
}
