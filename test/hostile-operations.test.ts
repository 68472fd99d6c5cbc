import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { CREATE, ON_EVENT, operationCases } from './support/operation-cases.js';
import { countRows } from './support/rows.js';
import { stopAndClean, testConfig, uniqueSuffix } from './support/service.js';
import {
  type Operation,
  type OperationKind,
  POST,
  TRANSPORTS,
  type Transport,
  transportsFor,
} from './support/transports.js';

/**
 * Hostile and careless operations, each sent on every transport that serves its kind (and, for
 * a document refused by parsing or validation, on every transport that parses it first):
 * HTTP POST, HTTP GET, WebSocket (test/support/transports.ts; a new transport added there runs
 * them all). Every client mistake is a 4xx with a code, the same code everywhere; nothing is
 * written; the service stays healthy; and the log holds no error and no personal data.
 */

const SECRET = `hostileop${uniqueSuffix()}`;
const cases = operationCases(SECRET);

/** Each case on each transport it runs on, as one row. */
const rows = cases.flatMap((c) =>
  transportsFor(c.kind, c.refusedByValidation ?? false)
    .filter((t) => !c.skip?.[t.name])
    .map((transport) => ({ ...c, transport, label: `${c.name} [${transport.name}]` })),
);

/** Per transport, one operation of each kind it does not serve (but parses) is BAD_REQUEST. */
const misplaced: Array<{ transport: Transport; kind: OperationKind; operation: Operation }> =
  TRANSPORTS.flatMap((transport) =>
    (['query', 'mutation', 'subscription'] as const)
      .filter((kind) => !transport.serves.includes(kind) && transport.reachesValidation(kind))
      .map((kind) => ({
        transport,
        kind,
        operation:
          kind === 'query'
            ? { query: '{ __typename }' }
            : kind === 'mutation'
              ? {
                  query: CREATE,
                  variables: { input: { email: `${SECRET}.misplaced@example.com`, name: 'Misplaced' } },
                }
              : { query: ON_EVENT },
      })),
  );

let db: TestDatabase;
let service: RunningService;
let url: string;
const logLines: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase('hostile_operations');
  const log = createLogger('info', {}, { write: (line: string) => logLines.push(line) });
  service = await startService(testConfig(db.url, { ROLES: 'app' }), log);
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
  await createCustomer(url, SECRET);
});

afterAll(async () => {
  await stopAndClean(service);
  await db?.drop();
});

describe('hostile operations on every transport', () => {
  it('runs every case on at least one transport, and most on several', () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    for (const c of cases)
      expect(
        rows.some((r) => r.name === c.name),
        c.name,
      ).toBe(true);
    expect(new Set(rows.map((r) => r.transport.name))).toEqual(new Set(TRANSPORTS.map((t) => t.name)));
  });

  it.each(rows)('$label → $code', async (row) => {
    const customers = await countRows(db, 'customers');
    const outbox = await countRows(db, 'outbox');

    const answer = await row.transport.send(url, row.operation);

    const status = answer.status === undefined ? undefined : row.status;
    expect({ status: answer.status, code: answer.code }, JSON.stringify(answer.errors[0])).toEqual({
      status,
      code: row.code,
    });
    if (row.message) expect(answer.errors[0]?.message).toMatch(row.message);
    expect(await countRows(db, 'customers')).toBe(customers);
    expect(await countRows(db, 'outbox')).toBe(outbox);
    const control = await POST.send(url, { query: '{ customers(first: 1) { edges { node { id } } } }' });
    expect(control).toMatchObject({ status: 200, code: undefined });
  });

  it.each(misplaced)('a $kind over $transport.name is BAD_REQUEST, naming where it goes', async (row) => {
    const answer = await row.transport.send(url, row.operation);
    expect({ status: answer.status, code: answer.code }).toEqual({
      status: answer.status === undefined ? undefined : 400,
      code: 'BAD_REQUEST',
    });
    expect(answer.errors[0]?.message).toMatch(/over (WebSocket|HTTP)|connect to ws:/);
  });

  it('logged no error and no personal data', () => {
    const text = logLines.join('');
    expect(text).not.toContain(SECRET);
    const errors = logLines
      .map((line) => JSON.parse(line) as { level: number; msg: string })
      .filter((l) => l.level >= 50);
    expect(errors).toEqual([]);
  });
});
