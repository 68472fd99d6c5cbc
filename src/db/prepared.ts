import { fillPlaceholders, type SQL, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/mysql2';
import * as schema from './schema.js';

/** Renders statements to text without a connection: the dialect is all that takes. */
const renderer = drizzle.mock({ schema, mode: 'default' });
export type Renderer = typeof renderer;

interface Renderable {
  toSQL(): { sql: string; params: unknown[] };
}

/**
 * A statement of the hot paths (a create, a worker's handling) that Drizzle renders once, from
 * the schema, with named placeholders (`sql.placeholder`) where its values go; each call binds
 * the values, each through its column's encoding (dates, JSON), and gives a statement to run or
 * defer like any other. Drizzle's query builders, run again for every statement, were about an
 * eighth of the service's CPU in profiles of the write path; binding values is a small part of
 * that. The column list stays Drizzle's, so the schema remains the one place that names them.
 */
export function prepared<Values extends object>(
  build: (db: Renderer) => Renderable,
): (values: Values) => SQL {
  let compiled: { parts: TemplateStringsArray; params: unknown[] } | undefined;
  return (values) => {
    compiled ??= compile(build(renderer));
    return sql(compiled.parts, ...fillPlaceholders(compiled.params, values as Record<string, unknown>));
  };
}

function compile(statement: Renderable): { parts: TemplateStringsArray; params: unknown[] } {
  const { sql: text, params } = statement.toSQL();
  const parts = text.split('?');
  // Every value is a parameter, so the only ? in the text are the parameters' own.
  if (parts.length !== params.length + 1) {
    throw new Error(`a prepared statement has ${parts.length - 1} "?" for ${params.length} values: ${text}`);
  }
  return { parts: Object.assign(parts, { raw: parts }) as unknown as TemplateStringsArray, params };
}
