import { graphql, uniqueSuffix } from './service.js';
import type { CustomerEventData } from './subscriptions.js';

export const CREATE_CUSTOMER = /* GraphQL */ `
  mutation Create($input: CreateCustomerInput!) {
    createCustomer(input: $input) {
      eventId
      customer { id email name createdAt }
    }
  }
`;

export interface CreatedCustomer {
  readonly customerId: string;
  readonly eventId: string;
  readonly email: string;
  readonly name: string;
  readonly createdAt: string;
}

/** Creates a customer with a unique e-mail over HTTP; fails loudly on any GraphQL error. */
export async function createCustomer(url: string, label = 'customer'): Promise<CreatedCustomer> {
  const email = `${label}.${uniqueSuffix()}@example.com`;
  const name = `Test ${label}`;
  const response = await graphql<{
    createCustomer: {
      eventId: string;
      customer: { id: string; email: string; name: string; createdAt: string };
    };
  }>(url, CREATE_CUSTOMER, { input: { email, name } });
  const created = response.data?.createCustomer;
  if (response.errors || !created) {
    throw new Error(`createCustomer failed: ${JSON.stringify(response)}`);
  }
  return {
    customerId: created.customer.id,
    eventId: created.eventId,
    email,
    name,
    createdAt: created.customer.createdAt,
  };
}

/**
 * A CustomerCreated message body as the broker contract describes it (src/relay/message.ts),
 * for publishing by hand: a later event of an existing customer, or a malformed variant.
 */
export function customerCreatedEnvelope(
  customer: { customerId: string; email: string; name: string },
  eventId: string,
): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    eventId,
    type: 'CustomerCreated',
    aggregateType: 'Customer',
    aggregateId: customer.customerId,
    sequence: 1,
    occurredAt: now,
    payload: { customerId: customer.customerId, email: customer.email, name: customer.name, createdAt: now },
  };
}

/** One handled event, as customerEvents and onCustomerEvent return it. */
export type HandledEvent = CustomerEventData;

const EVENT_FIELDS = 'eventId type customerId sequence occurredAt handledAt payload cursor';

/** One page of the customerEvents connection. */
export interface HandledEventPage {
  readonly edges: Array<{ cursor: string; node: HandledEvent }>;
  readonly pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/** One page of the customerEvents query; fails loudly on any GraphQL error. */
export async function customerEventPage(
  url: string,
  customerId: string,
  page: { first?: number; after?: string } = {},
): Promise<HandledEventPage> {
  const response = await graphql<{ customerEvents: HandledEventPage }>(
    url,
    `query($id: ID!, $first: Int, $after: String) {
      customerEvents(customerId: $id, first: $first, after: $after) {
        edges { cursor node { ${EVENT_FIELDS} } }
        pageInfo { hasNextPage endCursor }
      }
    }`,
    { id: customerId, first: page.first ?? 100, after: page.after },
  );
  if (response.errors || !response.data)
    throw new Error(`customerEvents failed: ${JSON.stringify(response)}`);
  return response.data.customerEvents;
}

/** The customerEvents query: a customer's handled events (the first 100), oldest first. */
export async function customerEvents(url: string, customerId: string): Promise<HandledEvent[]> {
  return (await customerEventPage(url, customerId)).edges.map((edge) => edge.node);
}

export const UPDATE_CUSTOMER = /* GraphQL */ `
  mutation Update($input: UpdateCustomerInput!) {
    updateCustomer(input: $input) {
      eventId
      customer { id email name sequence }
    }
  }
`;

/** Renames a customer (a CustomerUpdated event); returns the event id. Fails loudly on any error. */
export async function renameCustomer(url: string, customerId: string, name: string): Promise<string> {
  const response = await graphql<{ updateCustomer: { eventId: string } }>(url, UPDATE_CUSTOMER, {
    input: { id: customerId, name },
  });
  const updated = response.data?.updateCustomer;
  if (response.errors || !updated) throw new Error(`updateCustomer failed: ${JSON.stringify(response)}`);
  return updated.eventId;
}
