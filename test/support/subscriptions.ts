import { type Client, type ClientOptions, createClient, type FormattedExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';

/** One event as onCustomerEvent delivers it. */
export interface CustomerEventData {
  readonly eventId: string;
  readonly type: string;
  readonly customerId: string;
  readonly sequence: number;
  readonly occurredAt: string;
  readonly handledAt: string;
  readonly payload: Record<string, unknown>;
  /** Opaque position in the history: `after` resumes right after this event. */
  readonly cursor: string;
}

export const ON_CUSTOMER_EVENT = /* GraphQL */ `
  subscription OnCustomerEvent($customerId: ID, $after: String) {
    onCustomerEvent(customerId: $customerId, after: $after) {
      eventId
      type
      customerId
      sequence
      occurredAt
      handledAt
      payload
      cursor
    }
  }
`;

/** What a WebSocket close looked like to the client. */
export interface Closed {
  readonly code: number;
  readonly reason: string;
}

export interface WsClient {
  readonly client: Client;
  /** Every close the client saw, in order. */
  readonly closes: Closed[];
  /** Errors the client reported outside any subscription (e.g. the connection was refused). */
  readonly connectionErrors: unknown[];
  /** True once the server acknowledged connection_init. */
  connected(): boolean;
  dispose(): Promise<void>;
}

/** `http://host:port/graphql` → `ws://host:port/graphql`. */
export const wsUrlOf = (httpUrl: string): string => httpUrl.replace(/^http/, 'ws');

/**
 * A graphql-ws client on the service's /graphql that connects at once (not lazily) and never
 * retries, so a refusal or a close is visible to the test as it happened.
 */
export function connectWs(httpUrl: string, options: Partial<ClientOptions> = {}): WsClient {
  const closes: Closed[] = [];
  const connectionErrors: unknown[] = [];
  let acknowledged = false;
  const client = createClient({
    url: wsUrlOf(httpUrl),
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: (error) => connectionErrors.push(error),
    ...options,
    on: {
      connected: () => {
        acknowledged = true;
      },
      closed: (event) => {
        const { code, reason } = event as { code: number; reason: unknown };
        closes.push({ code, reason: String(reason) });
      },
      ...options.on,
    },
  });
  return {
    client,
    closes,
    connectionErrors,
    connected: () => acknowledged,
    async dispose() {
      await client.dispose();
    },
  };
}

export interface Subscription<T = Record<string, unknown>> {
  /** Every `next` payload, in order (data or errors). */
  readonly results: FormattedExecutionResult<T, unknown>[];
  /** What the error sink received: GraphQL errors from the server, or a close event. */
  readonly errors: unknown[];
  completed(): boolean;
  unsubscribe(): void;
}

/** Subscribes with any operation and records everything the sink receives. */
export function subscribe<T = Record<string, unknown>>(
  ws: WsClient,
  query: string,
  variables?: Record<string, unknown>,
): Subscription<T> {
  const results: FormattedExecutionResult<T, unknown>[] = [];
  const errors: unknown[] = [];
  let done = false;
  const unsubscribe = ws.client.subscribe<T>(
    { query, variables },
    {
      next: (result) => {
        results.push(result);
      },
      error: (error) => {
        errors.push(error);
      },
      complete: () => {
        done = true;
      },
    },
  );
  return { results, errors, completed: () => done, unsubscribe };
}

export interface EventSubscription extends Subscription<{ onCustomerEvent: CustomerEventData }> {
  /** The events received, in order. */
  events(): CustomerEventData[];
  /** How many times `eventId` was received. */
  count(eventId: string): number;
  /** The cursor of the last event received: what a resume passes as `after`. */
  lastCursor(): string | undefined;
}

export interface EventSubscriptionOptions {
  /** Only this customer's events. */
  readonly customerId?: string;
  /** Resume right after this cursor. */
  readonly after?: string;
}

/** onCustomerEvent, for every customer or (with `customerId`) for one, optionally after a cursor. */
export function subscribeCustomerEvents(
  ws: WsClient,
  options: string | EventSubscriptionOptions = {},
): EventSubscription {
  const { customerId, after } =
    typeof options === 'string' ? { customerId: options, after: undefined } : options;
  const variables: Record<string, unknown> = {};
  if (customerId !== undefined) variables.customerId = customerId;
  if (after !== undefined) variables.after = after;
  const subscription = subscribe<{ onCustomerEvent: CustomerEventData }>(ws, ON_CUSTOMER_EVENT, variables);
  const events = () =>
    subscription.results.flatMap((r) => (r.data?.onCustomerEvent ? [r.data.onCustomerEvent] : []));
  return {
    ...subscription,
    events,
    count: (eventId) => events().filter((e) => e.eventId === eventId).length,
    lastCursor: () => events().at(-1)?.cursor,
  };
}
