import type { IResolvers } from '@graphql-tools/utils';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import {
  type Customer,
  createCustomer,
  findCustomer,
  listCustomers,
  parseCustomerId,
} from '../customers/service.js';
import type { CreateCustomerInput } from '../customers/validation.js';
import { ForbiddenError, InvalidInputError } from '../errors.js';
import { listDead, readStats, reviveDead } from '../outbox/store.js';
import type { Handoff } from '../relay/handoff.js';
import type { AppContext } from './context.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { type CustomerEvent, type LiveEvents, loadCustomerEvents } from './live.js';

export interface ResolverOptions {
  readonly maxPageSize: number;
  /** Called after outbox events committed, so that relays publish them soon. */
  readonly onEventsWritten: () => void;
  /** The relay in this process, if any: new events are handed to it directly. */
  readonly handoff?: Handoff;
  /** The instance's feed of handled events; absent when subscriptions are not served. */
  readonly live?: LiveEvents;
  /** Messages in the worker's dead-letter queue, or null when the broker cannot say. */
  readonly workerDeadLetters?: () => Promise<number | null>;
}

export function createResolvers(options: ResolverOptions): IResolvers<unknown, AppContext> {
  return {
    DateTime: DateTimeResolver,
    JSON: JSONResolver,
    Query: {
      customer: (_: unknown, args: { id: string }, ctx: AppContext) =>
        findCustomer(ctx.db, parseCustomerId(args.id, 'id')),
      customers: async (_: unknown, args: { first: number; after?: string | null }, ctx: AppContext) => {
        const first = pageSize(args.first, options.maxPageSize);
        const afterId = args.after == null ? undefined : decodeCursor(args.after, 'after');
        const page = await listCustomers(ctx.db, first, afterId);
        const edges = page.items.map((node) => ({ cursor: encodeCursor(node.id), node }));
        return {
          edges,
          pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
        };
      },
      customerEvents: (_: unknown, args: { customerId: string }, ctx: AppContext) =>
        loadCustomerEvents(ctx.db, String(parseCustomerId(args.customerId, 'customerId'))),
      outboxStats: (_: unknown, __: unknown, ctx: AppContext) => readStats(ctx.db),
      deadEvents: (_: unknown, args: { first: number }, ctx: AppContext) => {
        requireAdmin(ctx);
        return listDead(ctx.db, pageSize(args.first, options.maxPageSize));
      },
    },
    Mutation: {
      createCustomer: async (_: unknown, args: { input: CreateCustomerInput }, ctx: AppContext) => {
        const result = await createCustomer(ctx.db, args.input, ctx.eventHeaders, options.handoff);
        if (!options.handoff) options.onEventsWritten();
        return result;
      },
      reviveDeadEvents: async (_: unknown, args: { eventIds?: string[] | null }, ctx: AppContext) => {
        requireAdmin(ctx);
        const eventIds = await reviveDead(ctx.db, args.eventIds ?? undefined);
        if (eventIds.length > 0) options.onEventsWritten();
        return { eventIds };
      },
    },
    Subscription: {
      onCustomerEvent: {
        subscribe: (_: unknown, args: { customerId?: string | null }) => {
          const customerId =
            args.customerId == null ? undefined : String(parseCustomerId(args.customerId, 'customerId'));
          if (!options.live) throw new Error('This instance does not serve subscriptions');
          return options.live.subscribe(customerId);
        },
        resolve: (event: CustomerEvent) => event,
      },
    },
    Customer: {
      id: (customer: Customer) => String(customer.id),
      events: (customer: Customer, _: unknown, ctx: AppContext) =>
        loadCustomerEvents(ctx.db, String(customer.id)),
    },
    OutboxStats: {
      workerDeadLetters: () => options.workerDeadLetters?.() ?? null,
    },
  };
}

/** `first` must ask for something; above the server's maximum it is capped, as the schema says. */
function pageSize(first: number, max: number): number {
  if (first < 1) throw new InvalidInputError('first', 'first must be at least 1');
  return Math.min(first, max);
}

function requireAdmin(ctx: AppContext): void {
  if (!ctx.admin) throw new ForbiddenError();
}
