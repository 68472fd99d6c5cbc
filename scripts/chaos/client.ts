/**
 * The GraphQL calls the run makes over HTTP, with what each answer means for a retry:
 * transport failures and SERVICE_UNAVAILABLE are temporary (retry with the same idempotency
 * key), anything else is final.
 */

export interface CreateInput {
  readonly email: string;
  readonly name: string;
}

export type CreateOutcome =
  | { readonly kind: 'ok'; readonly customerId: string; readonly eventId: string }
  | { readonly kind: 'retry'; readonly reason: string }
  | { readonly kind: 'failed'; readonly code: string; readonly message: string };

const CREATE = /* GraphQL */ `
  mutation ChaosCreate($input: CreateCustomerInput!) {
    createCustomer(input: $input) { eventId customer { id email } }
  }
`;

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

export async function createCustomer(
  url: string,
  input: CreateInput,
  idempotencyKey: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<CreateOutcome> {
  let response: Response;
  let body: GraphQLResponse<{ createCustomer: { eventId: string; customer: { id: string } } }>;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
      body: JSON.stringify({ query: CREATE, variables: { input } }),
      signal: signal
        ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
        : AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // A proxy page or a half-written answer: the request's fate is unknown, like a reset.
      return { kind: 'retry', reason: `HTTP ${response.status}, not JSON` };
    }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return { kind: 'retry', reason: cause ?? (error as Error).name };
  }
  const payload = body.data?.createCustomer;
  if (payload) return { kind: 'ok', customerId: String(payload.customer.id), eventId: payload.eventId };
  const first = body.errors?.[0];
  const code = first?.extensions?.code ?? `HTTP_${response.status}`;
  if (response.status === 503 || code === 'SERVICE_UNAVAILABLE') return { kind: 'retry', reason: code };
  return { kind: 'failed', code, message: first?.message ?? 'no data and no error' };
}

/** What the server's schema offers that the run can use (parts are still being built). */
export interface Capabilities {
  /** onCustomerEvent(after:) and CustomerEvent.cursor: resumable subscriptions. */
  readonly cursors: boolean;
  /** CustomerEvent.sequence: per-customer order can be checked. */
  readonly sequence: boolean;
}

const INTROSPECT = /* GraphQL */ `
  {
    subscription: __type(name: "Subscription") { fields { name args { name } } }
    event: __type(name: "CustomerEvent") { fields { name } }
  }
`;

export async function probeCapabilities(url: string): Promise<Capabilities> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: INTROSPECT }),
    signal: AbortSignal.timeout(5000),
  });
  const body = (await response.json()) as GraphQLResponse<{
    subscription: { fields: Array<{ name: string; args: Array<{ name: string }> }> } | null;
    event: { fields: Array<{ name: string }> } | null;
  }>;
  const onEvent = body.data?.subscription?.fields.find((f) => f.name === 'onCustomerEvent');
  const eventFields = new Set(body.data?.event?.fields.map((f) => f.name) ?? []);
  return {
    cursors: Boolean(onEvent?.args.some((a) => a.name === 'after')) && eventFields.has('cursor'),
    sequence: eventFields.has('sequence'),
  };
}
