import type { Pool } from 'mysql2/promise';
import type { Deadline } from '../support/deadline.js';
import { handingOver } from './bounds.js';
import { type Database, poolsOf, registerPools } from './run-transaction.js';

/**
 * What Drizzle's mysql2 session calls on its client (a pool), each call's checkout handed the
 * deadline. A class, not three closures: one is made per request.
 */
class BoundedPool {
  constructor(
    private readonly pool: Pool,
    private readonly deadline: Deadline,
  ) {}

  query(...args: unknown[]): unknown {
    return handingOver(this.deadline, () =>
      (this.pool.query as (...a: unknown[]) => unknown).apply(this.pool, args),
    );
  }

  execute(...args: unknown[]): unknown {
    return handingOver(this.deadline, () =>
      (this.pool.execute as (...a: unknown[]) => unknown).apply(this.pool, args),
    );
  }

  getConnection(): unknown {
    return handingOver(this.deadline, () => this.pool.getConnection());
  }
}

/**
 * `db` for work bounded by `deadline` (a request's): every statement it sends and every
 * transaction() on it takes its connection within what is left of the deadline and, once the
 * deadline has passed or its client has gone away, starts nothing more (db/bounds.ts). Costs
 * four small objects: a request makes one for its GraphQL context, and its resolvers, services
 * and transactions use it like the database itself. Work for the request on a database of
 * another component (the live feed's first read) is bounded the same way with the request's
 * deadline (AppContext.deadline).
 *
 * A database not made by connectDatabase (a test's own) is returned as it is.
 */
export function withDeadline(db: Database, deadline: Deadline): Database {
  const pools = poolsOf(db);
  if (!pools) return db;
  // Drizzle's database and its session keep the client as a field: the view shares everything
  // else with `db` (its prototype) and sends through the client above. Assigned, not defined
  // with descriptors, which would leave the objects in V8's slow dictionary mode.
  const session = Object.create((db as unknown as { session: object }).session) as { client: unknown };
  session.client = new BoundedPool(pools.statements, deadline);
  const view = Object.create(db) as Database & { session: unknown };
  view.session = session;
  registerPools(view, { ...pools, deadline });
  return view;
}
