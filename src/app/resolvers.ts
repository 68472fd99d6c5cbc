import type { IResolvers } from '@graphql-tools/utils';
import { GraphQLError } from 'graphql';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { decodeCustomerCursor, encodeCustomerCursor } from '../customers/cursor.js';
import { type CustomerEvent, customerEventPage, customerEventStream } from '../customers/history.js';
import {
  type Customer,
  createCustomer,
  findCustomer,
  listCustomers,
  parseCustomerId,
  updateCustomer,
  type WriteContext,
} from '../customers/service.js';
import type { CreateCustomerInput, UpdateCustomerInput } from '../customers/validation.js';
import type { Database } from '../db/client.js';
import { ForbiddenError, InvalidInputError } from '../errors.js';
import type { HistoryFeed } from '../history/feed.js';
import { listDead, reviveDead, skipDead } from '../outbox/dead.js';
import { readStats } from '../outbox/stats.js';
import type { OutboxWriter } from '../outbox/writer.js';
import { SharedFigure } from '../support/shared-figure.js';
import type { DeadLetterQueue } from '../worker/dead-letters.js';
import type { AppContext } from './context.js';
import { parseEventIds } from './event-ids.js';

export interface ResolverOptions {
  readonly maxPageSize: number;
  /** The database outboxStats counts in. */
  readonly db: Database;
  /** How old a shared outboxStats figure may be (OUTBOX_STATS_MAX_AGE_MS). */
  readonly statsMaxAgeMs: number;
  /** Every event a mutation writes goes through it. */
  readonly writer: OutboxWriter;
  /** The instance's feed of handled events; absent when subscriptions are not served. */
  readonly feed?: HistoryFeed;
  /** The worker's dead-letter queue; absent, its operations answer null and nothing. */
  readonly deadLetters?: WorkerDeadLetters;
}

/** What the operator operations need of the worker's dead-letter queue (worker/dead-letters.ts). */
export type WorkerDeadLetters = Pick<DeadLetterQueue, 'count' | 'list' | 'requeue'>;

export function createResolvers(options: ResolverOptions): IResolvers<unknown, AppContext> {
  // Counting fields, computed once per OUTBOX_STATS_MAX_AGE_MS and shared by every request
  // meanwhile: priced like a point lookup, each alias of outboxStats once counted every
  // published row again, and 450 of them kept the database busy for minutes.
  const outboxStats = new SharedFigure(() => readStats(options.db), options.statsMaxAgeMs);
  const deadLetterCount = new SharedFigure(
    async () => (await options.deadLetters?.count()) ?? null,
    options.statsMaxAgeMs,
  );
  const writeContext = (ctx: AppContext): WriteContext => ({
    db: ctx.db,
    writer: options.writer,
    headers: ctx.eventHeaders,
    idempotencyKey: ctx.idempotencyKey,
  });
  const eventPage = (ctx: AppContext, customerId: string, args: { first: number; after?: string | null }) =>
    customerEventPage(ctx.db, customerId, pageSize(args.first, options.maxPageSize), args.after ?? undefined);

  return {
    DateTime: DateTimeResolver,
    JSON: JSONResolver,
    Query: {
      customer: (_: unknown, args: { id: string }, ctx: AppContext) =>
        findCustomer(ctx.db, parseCustomerId(args.id, 'id')),
      customers: async (_: unknown, args: { first: number; after?: string | null }, ctx: AppContext) => {
        const first = pageSize(args.first, options.maxPageSize);
        const afterId = args.after == null ? undefined : decodeCustomerCursor(args.after, 'after');
        const page = await listCustomers(ctx.db, first, afterId);
        const edges = page.items.map((node) => ({ cursor: encodeCustomerCursor(node.id), node }));
        return {
          edges,
          pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
        };
      },
      customerEvents: (
        _: unknown,
        args: { customerId: string; first: number; after?: string | null },
        ctx: AppContext,
      ) => eventPage(ctx, parseCustomerId(args.customerId, 'customerId'), args),
      outboxStats: async () => {
        const { value, ageMs } = await outboxStats.get();
        const age = value.oldestPendingAgeSeconds;
        return { ...value, oldestPendingAgeSeconds: age === null ? null : age + ageMs / 1000 };
      },
      deadEvents: (_: unknown, args: { first: number }, ctx: AppContext) => {
        requireAdmin(ctx);
        return listDead(ctx.db, pageSize(args.first, options.maxPageSize));
      },
      workerDeadLetters: async (_: unknown, args: { first: number }, ctx: AppContext) => {
        requireAdmin(ctx);
        return (await options.deadLetters?.list(pageSize(args.first, options.maxPageSize))) ?? [];
      },
    },
    Mutation: {
      createCustomer: (_: unknown, args: { input: CreateCustomerInput }, ctx: AppContext) =>
        createCustomer(writeContext(ctx), args.input),
      updateCustomer: (_: unknown, args: { input: UpdateCustomerInput }, ctx: AppContext) =>
        updateCustomer(writeContext(ctx), args.input),
      reviveDeadEvents: async (_: unknown, args: { eventIds?: string[] | null }, ctx: AppContext) => {
        requireAdmin(ctx);
        const wanted = args.eventIds == null ? undefined : parseEventIds(args.eventIds);
        const eventIds = await reviveDead(ctx.db, wanted);
        if (eventIds.length > 0) options.writer.wakeRelays();
        return { eventIds };
      },
      skipDeadEvents: async (_: unknown, args: { eventIds: string[] }, ctx: AppContext) => {
        requireAdmin(ctx);
        const eventIds = await skipDead(ctx.db, parseEventIds(args.eventIds));
        if (eventIds.length > 0) options.writer.wakeRelays();
        return { eventIds };
      },
      requeueWorkerDeadLetters: async (_: unknown, args: { ids?: string[] | null }, ctx: AppContext) => {
        requireAdmin(ctx);
        if (args.ids?.length === 0) return { ids: [] };
        return { ids: (await options.deadLetters?.requeue(args.ids ?? undefined)) ?? [] };
      },
    },
    Subscription: {
      onCustomerEvent: {
        subscribe: async (
          _: unknown,
          args: { customerId?: string | null; after?: string | null },
          ctx: AppContext,
        ) => {
          const customerId =
            args.customerId == null ? undefined : parseCustomerId(args.customerId, 'customerId');
          if (!options.feed) {
            throw new GraphQLError('This instance does not serve subscriptions', {
              extensions: { code: 'SERVICE_UNAVAILABLE' },
            });
          }
          const events = await customerEventStream(
            options.feed,
            customerId,
            {
              after: args.after ?? undefined,
              lastEventId: ctx.stream?.lastEventId,
            },
            ctx.deadline,
          );
          if (ctx.stream) ctx.stream.cursor = events.startCursor;
          return events;
        },
        // Runs for each event just before its result is sent: the SSE transport writes this
        // cursor as the event's id, whether or not the client selected `cursor`.
        resolve: (event: CustomerEvent, _: unknown, ctx: AppContext) => {
          if (ctx.stream) ctx.stream.cursor = event.cursor;
          return event;
        },
      },
    },
    Customer: {
      id: (customer: Customer) => customer.id,
      sequence: (customer: Customer) => customer.version,
      events: (customer: Customer, args: { first: number; after?: string | null }, ctx: AppContext) =>
        eventPage(ctx, customer.id, args),
    },
    OutboxStats: {
      workerDeadLetters: async () => (await deadLetterCount.get()).value,
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
