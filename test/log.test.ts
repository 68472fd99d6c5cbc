import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

const EMAIL = 'ada.lovelace@example.com';
const NAME = 'Ada Lovelace';
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('log');
  await db.query('CREATE TABLE people (email VARCHAR(100) PRIMARY KEY, name VARCHAR(100))');
});

afterAll(async () => {
  await db?.drop();
});

/** A logger writing into an array, and the text it wrote. */
function capture() {
  const lines: string[] = [];
  const log = createLogger('info', {}, { write: (line: string) => lines.push(line) });
  return { log, text: () => lines.join('') };
}

/** The error a real query throws: Drizzle's wrapper around the driver's error. */
async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('the query did not fail');
}

describe('error logs carry no personal data', () => {
  it("keeps a duplicate key's codes and statement, not the values in Drizzle's params, the SQL or MySQL's message", async () => {
    const insert = () => db.db.execute(sql`INSERT INTO people (email, name) VALUES (${EMAIL}, ${NAME})`);
    await insert();
    const error = await failure(insert);
    // The premise: the raw error holds the e-mail and the name.
    expect(JSON.stringify(error, Object.getOwnPropertyNames(error)) + String(error)).toContain(EMAIL);

    const { log, text } = capture();
    log.error({ err: error }, 'internal error in a GraphQL operation');
    const line = text();
    expect(line).not.toContain(EMAIL);
    expect(line).not.toContain(NAME);
    expect(line).not.toMatch(/"sql"|"sqlMessage"|"parameters"|"params"/);
    // What an operator needs is still there.
    expect(line).toContain('ER_DUP_ENTRY');
    expect(line).toContain('"errno":1062');
    expect(line).toContain('INSERT INTO people');
    expect(line).toContain('params: [withheld]');
    expect(line).toMatch(/"stack":".*\\n\s+at /);
  });

  it('withholds the parameters of a Drizzle message logged as a string under `error`', () => {
    const { log, text } = capture();
    log.warn({ error: `Failed query: select 1 where email = ?\nparams: ${EMAIL}` }, 'publish failed');
    expect(text()).not.toContain(EMAIL);
    expect(text()).toContain('params: [withheld]');
  });

  it('leaves ordinary errors readable', () => {
    const { log, text } = capture();
    log.warn({ err: new TypeError("Cannot read properties of undefined (reading 'id')") }, 'bug');
    expect(text()).toContain("(reading 'id')");
    expect(text()).toContain('"type":"TypeError"');
  });
});
