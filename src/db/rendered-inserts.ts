import { Param, Placeholder, type SQLWrapper } from 'drizzle-orm';
import { MySqlInsertBase, type MySqlTable } from 'drizzle-orm/mysql-core';
import { getTableColumns } from 'drizzle-orm/utils';
import { toDriverValue } from './driver-values.js';

/** A statement's text, with a `?` for each of its values. */
export interface RenderedStatement {
  readonly text: string;
  readonly values: unknown[];
}

/**
 * A plain Drizzle insert (`insert(table).values(…)`, no select, no on-duplicate clause) rendered
 * from a text kept per table and shape, instead of by Drizzle's dialect every time: the text of
 * an insert depends only on which columns each row sets, so Drizzle renders it once and every
 * later insert of that shape only binds its values (each through its column's encoding, as
 * Drizzle binds it). The worker's handlers are plain Drizzle and insert per event; rendering
 * was the largest part of their cost. Anything else (an SQL value, a column's default function,
 * a value whose encoding is SQL) is left to Drizzle: undefined.
 */
export function renderedInsert(
  statement: SQLWrapper,
  render: (statement: SQLWrapper) => RenderedStatement,
): RenderedStatement | undefined {
  if (!(statement instanceof MySqlInsertBase)) return undefined;
  const config = (statement as unknown as { config: InsertConfig }).config;
  if (config.select || config.onConflict || !Array.isArray(config.values)) return undefined;
  const columns = insertableColumns(config.table);
  const values: unknown[] = [];
  let shape = config.ignore ? 'i' : '';
  for (const row of config.values) {
    shape += '|';
    for (const [key, column] of columns) {
      const value = row[key];
      if (value === undefined || (value instanceof Param && value.value === undefined)) {
        // Drizzle renders `default` here, unless the column computes its value each time.
        if (column.defaultFn !== undefined || column.onUpdateFn !== undefined) return undefined;
        shape += '0';
        continue;
      }
      if (!(value instanceof Param) || value.encoder !== column || value.value instanceof Placeholder)
        return undefined;
      const bound = value.value === null ? null : toDriverValue(column, value.value);
      if (bound !== null && typeof bound === 'object' && 'getSQL' in bound) return undefined;
      values.push(bound);
      shape += '1';
    }
  }
  const texts = textsOf(config.table);
  let text = texts.get(shape);
  if (text === undefined) {
    const rendered = render(statement);
    // The shape decides the text only if every value became one `?` (a Placeholder would not).
    if (rendered.values.length !== values.length) return undefined;
    text = rendered.text;
    if (texts.size < MAX_SHAPES_PER_TABLE) texts.set(shape, text);
  }
  return { text, values };
}

interface InsertConfig {
  readonly table: MySqlTable;
  readonly values: ReadonlyArray<Record<string, unknown>>;
  readonly select?: boolean;
  readonly ignore?: boolean;
  readonly onConflict?: unknown;
}

type InsertColumn = MySqlTable['_']['columns'][string] & {
  readonly defaultFn?: unknown;
  readonly onUpdateFn?: unknown;
  shouldDisableInsert(): boolean;
};

/** Shapes kept per table: a handful in practice (the columns a domain's inserts set). */
const MAX_SHAPES_PER_TABLE = 64;

const texts = new WeakMap<MySqlTable, Map<string, string>>();
const columnsOf = new WeakMap<MySqlTable, ReadonlyArray<readonly [string, InsertColumn]>>();

function textsOf(table: MySqlTable): Map<string, string> {
  let map = texts.get(table);
  if (!map) {
    map = new Map();
    texts.set(table, map);
  }
  return map;
}

/** The columns Drizzle's insert lists, in its order (the table's, less generated ones). */
function insertableColumns(table: MySqlTable): ReadonlyArray<readonly [string, InsertColumn]> {
  let columns = columnsOf.get(table);
  if (!columns) {
    columns = (Object.entries(getTableColumns(table)) as Array<[string, InsertColumn]>).filter(
      ([, column]) => !column.shouldDisableInsert(),
    );
    columnsOf.set(table, columns);
  }
  return columns;
}
