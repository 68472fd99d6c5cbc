import { is, Param, Placeholder, type SQL, type SQLWrapper, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/mysql2';
import { drizzleDialect } from './dialect.js';
import { type DriverEncoder, toDriverValue } from './driver-values.js';
import { type RenderedStatement, renderedInsert } from './rendered-inserts.js';
import * as schema from './schema.js';

/** The dialect's renderer, for statements not prepared (renderStatements). */
export const dialect = drizzleDialect;

/** Renders statements to text without a connection: the dialect is all that takes. */
const renderer = drizzle.mock({ schema, mode: 'default' });
export type Renderer = typeof renderer;

interface Renderable {
  toSQL(): { sql: string; params: unknown[] };
}

/** Where one `?` of a prepared statement takes its value from. */
type Binder =
  | { readonly constant: unknown }
  | { readonly name: string; readonly index?: number; readonly encoder?: DriverEncoder };

/**
 * A statement with its values bound: text with `?` and the values for them, ready to send as it
 * is (a Transaction does, transaction.ts) or as a Drizzle statement (getSQL) anywhere else.
 */
export class BoundStatement implements SQLWrapper {
  constructor(
    readonly text: string,
    readonly values: readonly unknown[],
    /** The text around the values; by default the text split at each `?` (prepared's, whose only `?` are its values). */
    private readonly parts?: TemplateStringsArray,
  ) {}

  getSQL(): SQL {
    const parts = this.parts ?? templateOf(this.text.split('?'));
    return sql(parts, ...this.values);
  }
}

/**
 * Statements as the text and values of one query (a multi-statement one if more than one): a
 * BoundStatement as it is, a plain insert from its shape's text (rendered-inserts.ts), anything
 * else rendered by Drizzle's dialect.
 */
export function renderStatements(statements: readonly SQLWrapper[]): { text: string; values: unknown[] } {
  const texts: string[] = [];
  const values: unknown[] = [];
  for (const statement of statements) {
    const rendered =
      statement instanceof BoundStatement
        ? statement
        : (renderedInsert(statement, render) ?? render(statement));
    texts.push(rendered.text);
    values.push(...rendered.values);
  }
  return { text: texts.join('; '), values };
}

/** A statement rendered by Drizzle's dialect. */
function render(statement: SQLWrapper): RenderedStatement {
  const query = dialect.sqlToQuery(statement.getSQL());
  return { text: query.sql, values: query.params };
}

/** `parts` as the strings of a tagged template (Drizzle's sql`` takes them so). */
const templateOf = (parts: string[]): TemplateStringsArray =>
  Object.assign(parts, { raw: parts }) as unknown as TemplateStringsArray;

/** A statement without values (COMMIT, a session setting), ready to send as it is. */
export function constantStatement(text: string): BoundStatement {
  return textStatement([text], []);
}

/**
 * A statement from its text around its values (`parts` one longer than `values`), each value
 * sent as a `?`: for a hot statement whose text changes with its input (an inlined id list),
 * put together without Drizzle's builders. Any `?` inside `parts` stays text.
 */
export function textStatement(parts: readonly string[], values: readonly unknown[]): BoundStatement {
  if (parts.length !== values.length + 1)
    throw new Error(`${parts.length} parts for ${values.length} values`);
  return new BoundStatement(parts.join('?'), values, templateOf([...parts]));
}

/**
 * A statement of the hot paths (a create, a worker's handling) that Drizzle renders once, from
 * the schema, with named placeholders (`sql.placeholder`) where its values go; each call binds
 * the values, each through its column's encoding (dates, JSON), so the hot paths do not build
 * and render the same query again for every statement. The column list stays Drizzle's, so the
 * schema remains the one place that names the columns.
 *
 * Placeholders named by index (`sql.placeholder('0')`, '1', …) take their values from an array
 * (see placeholderAt): a statement of n rows binds a flat list, not an object of n × columns
 * names built for each call, which cost more than the rest of the bind.
 */
export function prepared<Values extends object>(
  build: (db: Renderer) => Renderable,
): (values: Values) => BoundStatement {
  let compiled: { text: string; binders: readonly Binder[] } | undefined;
  return (values) => {
    compiled ??= compile(build(renderer));
    const named = values as Record<string, unknown>;
    const bound = compiled.binders.map((b) => {
      if ('constant' in b) return b.constant;
      if (b.index !== undefined ? b.index >= (values as unknown[]).length : !(b.name in named))
        throw new Error(`no value for placeholder "${b.name}"`);
      const value = b.index !== undefined ? (values as unknown[])[b.index] : named[b.name];
      // NULL stays NULL, as Drizzle binds it (a JSON column would otherwise get the text 'null').
      return b.encoder && value !== null && value !== undefined ? toDriverValue(b.encoder, value) : value;
    });
    return new BoundStatement(compiled.text, bound);
  };
}

/**
 * prepared() for statements whose shape depends on a count (n rows inserted, n ids in an IN
 * list): each count's is rendered once, on first use, and kept for the first `maxCounts`
 * counts seen (a worker's groups run from 1 to its prefetch, 128 by default: all of them kept,
 * about 10 MB for all of them at 128).
 */
export function preparedPerCount<Values extends object>(
  build: (count: number) => (db: Renderer) => Renderable,
  maxCounts = 128,
): (count: number) => (values: Values) => BoundStatement {
  const byCount = new Map<number, (values: Values) => BoundStatement>();
  return (count) => {
    let statement = byCount.get(count);
    if (!statement) {
      statement = prepared<Values>(build(count));
      if (byCount.size < maxCounts) byCount.set(count, statement);
    }
    return statement;
  };
}

/** prepared() for a statement written as SQL (sql`…`, with sql.placeholder) rather than built. */
export function preparedSql<Values extends object>(statement: SQL): (values: Values) => BoundStatement {
  return prepared<Values>(() => ({ toSQL: () => dialect.sqlToQuery(statement) }));
}

/** The placeholder of a prepared statement bound from an array: its value is `values[index]`. */
export const placeholderAt = (index: number) => sql.placeholder(String(index));

/** A placeholder's index in an array of values, if its name is one ('0', '1', …). */
const indexOf = (name: string): number | undefined =>
  /^(0|[1-9][0-9]*)$/.test(name) ? Number(name) : undefined;

function compile(statement: Renderable) {
  const { sql: text, params } = statement.toSQL();
  const parts = text.split('?');
  // Every value is a parameter, so the only ? in the text are the parameters' own.
  if (parts.length !== params.length + 1) {
    throw new Error(`a prepared statement has ${parts.length - 1} "?" for ${params.length} values: ${text}`);
  }
  const binders = params.map((p): Binder => {
    if (is(p, Placeholder)) return { name: p.name, index: indexOf(p.name) };
    if (is(p, Param)) {
      const encoder = p.encoder as DriverEncoder | undefined;
      if (is(p.value, Placeholder)) return { name: p.value.name, index: indexOf(p.value.name), encoder };
      return { constant: encoder ? toDriverValue(encoder, p.value) : p.value };
    }
    return { constant: p };
  });
  // Kept per count of rows, up to a worker's prefetch: only the text and a binder per value.
  return { text, binders };
}
