import { inArray, type SQLWrapper } from 'drizzle-orm';
import type { MySqlColumn } from 'drizzle-orm/mysql-core';
import { placeholderAt, preparedPerCount } from '../db/prepared.js';
import type { GroupLoad, LoadColumns, LoadedRow } from '../outbox/handler.js';

/**
 * The engine's side of Handler.loads: a handler declares the rows it reads for a group, and
 * the worker turns that into a statement rendered once per count of keys (a group is 1 to the
 * prefetch), sends it with the group's stored-event read (handling.ts), and gives the rows back
 * as the schema types them, by key. The domain never sees a placeholder or a driver row.
 */

type Statement = (count: number) => (ids: readonly string[]) => SQLWrapper;

const statements = new WeakMap<GroupLoad, Statement>();

/** The key column's, and through it its table's. */
const keyColumn = <C extends LoadColumns>(load: GroupLoad<C>): MySqlColumn =>
  load.columns[load.key] as MySqlColumn;

function statementOf<C extends LoadColumns>(load: GroupLoad<C>): Statement {
  let statement = statements.get(load as object as GroupLoad);
  if (!statement) {
    const key = keyColumn(load);
    statement = preparedPerCount<readonly string[]>((n) => (db) => {
      const ids = Array.from({ length: n }, (_, i) => placeholderAt(i));
      return db.select(load.columns).from(key.table).where(inArray(key, ids));
    });
    statements.set(load as object as GroupLoad, statement);
  }
  return statement;
}

/** A decimal integer a BIGINT can hold: what a numeric key's aggregate id must be to match a row. */
const DECIMAL_INTEGER = /^-?[0-9]{1,20}$/;

/**
 * The read of `load` for the aggregate ids a group's messages claim, each once; undefined when
 * none can be a key. Claimed ids are unchecked, so one that cannot be a numeric key's value is
 * left out rather than compared (the server would convert it, '1e3' to 1000): that event's
 * handler finds no row for it and reads its own.
 */
export function loadStatement<C extends LoadColumns>(
  load: GroupLoad<C>,
  aggregateIds: readonly string[],
): SQLWrapper | undefined {
  const numeric = isNumeric(keyColumn(load));
  const ids = [...new Set(aggregateIds)].filter((id) => !numeric || DECIMAL_INTEGER.test(id));
  if (ids.length === 0) return undefined;
  return statementOf(load)(ids.length)(ids);
}

/**
 * The rows the driver gave for `load`'s read, by key (as text), each column's value mapped as
 * Drizzle maps it: a BIGINT the driver gives as a number while exact and as decimal text beyond
 * becomes what the schema says (a bigint, say), JSON text is parsed. A DATETIME the connection
 * gives as a Date stays one.
 */
export function loadedRows<C extends LoadColumns>(
  load: GroupLoad<C>,
  rows: readonly unknown[],
): Map<string, LoadedRow<C>> {
  const columns = Object.entries(load.columns as LoadColumns);
  const key = keyColumn(load).name;
  const loaded = new Map<string, LoadedRow<C>>();
  for (const row of rows as ReadonlyArray<Record<string, unknown>>) {
    const mapped: Record<string, unknown> = {};
    for (const [name, column] of columns) mapped[name] = fromDriver(column, row[column.name]);
    loaded.set(String(row[key]), mapped as LoadedRow<C>);
  }
  return loaded;
}

function fromDriver(column: MySqlColumn, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value;
  return column.mapFromDriverValue(value);
}

function isNumeric(column: MySqlColumn): boolean {
  return column.dataType === 'bigint' || column.dataType === 'number';
}
