import type { Pool } from 'mysql2/promise';
import type { Deadline } from '../support/deadline.js';
import { handingOver } from './bounds.js';
import { type Database, poolsOf, registerPools } from './run-transaction.js';

/** What Drizzle's mysql2 session calls on its client (a pool), not in Drizzle's types. */
type SessionClient = Pick<Pool, 'query' | 'execute' | 'getConnection'>;

/**
 * `db` for work bounded by `deadline` (a request's): every statement it sends and every
 * transaction() on it takes its connection within what is left of the deadline and, once the
 * deadline has passed or its client has gone away, starts nothing more (db/bounds.ts). Costs two
 * small objects: a request makes one for its GraphQL context, and its resolvers, services and
 * transactions use it like the database itself, with nothing else to pass down.
 *
 * A database not made by connectDatabase (a test's own) is returned as it is.
 */
export function withDeadline(db: Database, deadline: Deadline): Database {
  const pools = poolsOf(db);
  if (!pools) return db;
  const { statements } = pools;
  const bounded =
    (method: keyof SessionClient) =>
    (...args: unknown[]) =>
      handingOver(deadline, () =>
        (statements[method] as (...a: unknown[]) => unknown).apply(statements, args),
      );
  const client = {
    query: bounded('query'),
    execute: bounded('execute'),
    getConnection: bounded('getConnection'),
  };
  // Drizzle's database and its session keep the client as a field: the view shares everything
  // else with `db` (its prototype) and sends through the client above.
  const { session } = db as unknown as { session: object };
  const view = Object.create(db, {
    session: { value: Object.create(session, { client: { value: client } }) },
  }) as Database;
  registerPools(view, { ...pools, deadline });
  return view;
}
