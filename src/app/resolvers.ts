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
import { InvalidInputError } from '../errors.js';
import { listDead, readStats, reviveDead } from '../outbox/store.js';
import type { AppContext } from './context.js';
import { decodeCursor, encodeCursor } from './cursor.js';

export interface ResolverOptions {
  readonly maxPageSize: number;
  /** Called after an outbox event committed, so an in-process relay can publish it at once. */
  readonly onEventsWritten: () => void;
}

export function createResolvers(options: ResolverOptions): IResolvers<unknown, AppContext> {
  return {
    DateTime: DateTimeResolver,
    JSON: JSONResolver,
    Query: {
      customer: (_: unknown, args: { id: string }, ctx: AppContext) =>
        findCustomer(ctx.db, parseCustomerId(args.id, 'id')),
      customers: async (_: unknown, args: { first: number; after?: string | null }, ctx: AppContext) => {
        if (args.first < 0 || args.first > options.maxPageSize) {
          throw new InvalidInputError('first', `first must be between 0 and ${options.maxPageSize}`);
        }
        const afterId = args.after == null ? undefined : decodeCursor(args.after, 'after');
        const page = await listCustomers(ctx.db, args.first, afterId);
        const edges = page.items.map((node) => ({ cursor: encodeCursor(node.id), node }));
        return {
          edges,
          pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
        };
      },
      outboxStats: (_: unknown, __: unknown, ctx: AppContext) => readStats(ctx.db),
      deadEvents: (_: unknown, args: { first: number }, ctx: AppContext) => {
        if (args.first < 0 || args.first > options.maxPageSize) {
          throw new InvalidInputError('first', `first must be between 0 and ${options.maxPageSize}`);
        }
        return listDead(ctx.db, args.first);
      },
    },
    Mutation: {
      createCustomer: async (_: unknown, args: { input: CreateCustomerInput }, ctx: AppContext) => {
        const result = await createCustomer(ctx.db, args.input, ctx.eventHeaders);
        options.onEventsWritten();
        return result;
      },
      reviveDeadEvents: async (_: unknown, args: { eventIds?: string[] | null }, ctx: AppContext) => {
        const eventIds = await reviveDead(ctx.db, args.eventIds ?? undefined);
        if (eventIds.length > 0) options.onEventsWritten();
        return { eventIds };
      },
    },
    Customer: {
      id: (customer: Customer) => String(customer.id),
    },
  };
}
