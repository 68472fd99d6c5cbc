import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import type { ConsumeMessage, GetMessage, Options } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customers, outbox } from '../src/db/schema.js';
import { type RunningService, startService } from '../src/service.js';
import { connectTestBroker, type TestBroker } from './support/amqp.js';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { type CreatedCustomer, createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { graphql, testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

/**
 * The worker's trust boundary on the broker side: anyone who can publish to the exchange or the
 * worker's queue can send it anything. Each case below is a hostile or broken message; each
 * must be parked in the dead-letter queue with a reason that says what was wrong, write
 * nothing at all, and leave the worker consuming.
 */

const MAX_MESSAGE_BYTES = 4096;
const TABLES = [
  'customers',
  'outbox',
  'inbox',
  'welcome_emails',
  'email_change_notices',
  'handled_events',
  'worker_progress',
] as const;

let db: TestDatabase;
let broker: TestBroker;
let service: RunningService;
let url: string;
let exchange: string;
let workerQueue: string;
let deadQueue: string;

/** Real messages the relay published, captured from the exchange, to tamper with. */
let created: ConsumeMessage; // customer A's CustomerCreated
let updated: ConsumeMessage; // customer A's CustomerUpdated (e-mail change)
let customerA: CreatedCustomer;
let customerB: CreatedCustomer;
const ATTACKER = 'attacker@evil.example';

interface HostileCase {
  readonly name: string;
  /** Where it goes in: through the exchange with a routing key, or straight into the worker queue. */
  readonly route: { readonly routingKey: string } | 'queue';
  readonly body: () => Buffer;
  /** The message id property; defaults to the body's eventId. */
  readonly messageId?: () => string | undefined;
  /** What x-last-error must say. */
  readonly reason: RegExp;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const bodyOf = (message: ConsumeMessage) =>
  JSON.parse(message.content.toString('utf8')) as Record<string, unknown>;
/** A real message's envelope (captured in beforeAll, hence the function) with some fields replaced. */
const tampered = (message: () => ConsumeMessage, change: (body: Record<string, unknown>) => void) => () => {
  const body = bodyOf(message());
  change(body);
  return json(body);
};

const CASES: readonly HostileCase[] = [
  {
    name: 'a made-up customer.created for an existing customer with someone else’s e-mail',
    route: { routingKey: 'customer.created' },
    body: () => {
      const now = new Date().toISOString();
      return json({
        eventId: randomUUID(),
        type: 'CustomerCreated',
        aggregateType: 'Customer',
        aggregateId: customerB.customerId,
        sequence: 1,
        occurredAt: now,
        payload: {
          customerId: customerB.customerId,
          email: customerA.email,
          name: 'Mallory',
          createdAt: now,
        },
      });
    },
    reason: /^PermanentFailure: no stored event with this id/,
  },
  {
    name: 'a made-up customer.updated that would send an e-mail-change notice to the attacker',
    route: { routingKey: 'customer.updated' },
    // Built from the real update, with a new id and the next sequence: a plausible forgery.
    body: tampered(
      () => updated,
      (b) => {
        b.eventId = randomUUID();
        b.sequence = 3;
        (b.payload as { changes: { email: { after: string } } }).changes.email.after = ATTACKER;
      },
    ),
    reason: /^PermanentFailure: no stored event with this id/,
  },
  {
    name: 'a real event id with another payload (the e-mail swapped)',
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        (b.payload as Record<string, unknown>).email = ATTACKER;
      },
    ),
    reason: /^PermanentFailure: message payload disagrees with the stored event$/,
  },
  {
    name: 'a real e-mail change with the old address swapped for the attacker’s',
    route: { routingKey: 'customer.updated' },
    body: tampered(
      () => updated,
      (b) => {
        const email = (b.payload as { changes: { email: { before: string } } }).changes.email;
        email.before = ATTACKER;
      },
    ),
    reason: /^PermanentFailure: message payload disagrees with the stored event$/,
  },
  {
    name: 'a real event id claiming another customer',
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        b.aggregateId = customerB.customerId;
      },
    ),
    reason: /^PermanentFailure: message aggregateId disagrees with the stored event$/,
  },
  {
    name: 'a real event id whose aggregateId is spelled as the stored occurredAt',
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        b.aggregateId = b.occurredAt;
      },
    ),
    reason: /^PermanentFailure: message aggregateId disagrees with the stored event$/,
  },
  {
    name: 'a real event id with another sequence',
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        b.sequence = 7;
      },
    ),
    reason: /^PermanentFailure: message sequence disagrees with the stored event$/,
  },
  {
    name: 'a real CustomerCreated id sent as a CustomerUpdated',
    route: { routingKey: 'customer.updated' },
    body: tampered(
      () => created,
      (b) => {
        b.type = 'CustomerUpdated';
      },
    ),
    reason: /^PermanentFailure: message type disagrees with the stored event$/,
  },
  {
    name: 'a real event id with another occurredAt',
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        b.occurredAt = '2001-01-01T00:00:00.000Z';
      },
    ),
    reason: /^PermanentFailure: message occurredAt disagrees with the stored event$/,
  },
  {
    name: `a body over WORKER_MAX_MESSAGE_BYTES (${MAX_MESSAGE_BYTES})`,
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        (b.payload as Record<string, unknown>).name = 'x'.repeat(MAX_MESSAGE_BYTES);
      },
    ),
    reason: /^PermanentFailure: body is \d+ bytes, over the 4096 allowed$/,
  },
  {
    name: 'a body that is not JSON',
    route: 'queue',
    body: () => Buffer.from('\u0000\u00ff{"eventId":'),
    messageId: () => randomUUID(),
    reason: /^PermanentFailure: body is not JSON$/,
  },
  {
    name: 'JSON that is not an object',
    route: 'queue',
    body: () => json([1, 2, 3]),
    messageId: () => randomUUID(),
    reason: /^PermanentFailure: envelope body: /,
  },
  {
    name: 'an envelope with a field the contract does not have',
    route: { routingKey: 'customer.created' },
    body: tampered(
      () => created,
      (b) => {
        b.handler = 'welcome-email';
      },
    ),
    reason: /^PermanentFailure: envelope body: Unrecognized key/,
  },
  {
    name: 'an eventId that is not a UUID',
    route: 'queue',
    body: tampered(
      () => created,
      (b) => {
        b.eventId = "1' OR '1'='1";
      },
    ),
    reason: /^PermanentFailure: envelope eventId: /,
  },
  {
    name: 'a sequence that is not a positive integer',
    route: 'queue',
    body: tampered(
      () => created,
      (b) => {
        b.sequence = -1;
      },
    ),
    reason: /^PermanentFailure: envelope sequence: /,
  },
  {
    name: 'a messageId that is not the envelope’s eventId',
    route: { routingKey: 'customer.created' },
    body: () => created.content,
    messageId: () => randomUUID(),
    reason: /^PermanentFailure: messageId does not match the envelope eventId$/,
  },
  {
    name: 'no messageId at all',
    route: 'queue',
    body: () => created.content,
    messageId: () => undefined,
    reason: /^PermanentFailure: messageId does not match the envelope eventId$/,
  },
  {
    name: 'an event type the worker has no handler for',
    route: 'queue',
    body: tampered(
      () => created,
      (b) => {
        b.eventId = randomUUID();
        b.type = 'CustomerDeleted';
      },
    ),
    reason: /^PermanentFailure: no handler for event type "CustomerDeleted"$/,
  },
];

async function tableCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of TABLES) {
    const [row] = await db.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM \`${table}\``);
    counts[table] = Number(row?.n);
  }
  return counts;
}

async function outcomes(): Promise<Record<string, number>> {
  const { values } = await service.metrics.workerHandled.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
}

let before: Record<string, number>;
let parked: Map<string, GetMessage>;
/** The body each case sent, by case name. */
const sent = new Map<string, Buffer>();

beforeAll(async () => {
  db = await createTestDatabase('hostile_amqp');
  broker = await connectTestBroker();
  const config = testConfig(db.url, {
    ROLES: 'app,relay,worker',
    WORKER_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
  });
  service = await startService(config, testLogger());
  url = service.app?.url as string;
  ({ exchange, workerQueue, workerDeadLetterQueue: deadQueue } = service.topology);
  await waitFor('the worker to consume', async () => (await broker.consumerCount(workerQueue)) > 0);

  const captured = await broker.capture(exchange, '#');
  customerA = await createCustomer(url, 'victim');
  customerB = await createCustomer(url, 'bystander');
  const changed = await graphql<{ updateCustomer: { eventId: string } }>(
    url,
    'mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { eventId } }',
    { input: { id: customerA.customerId, email: `victim.new.${randomUUID()}@example.com` } },
  );
  expect(changed.errors).toBeUndefined();
  const updateId = changed.data?.updateCustomer.eventId;
  created = await waitFor('A’s CustomerCreated on the exchange', () =>
    captured.find((m) => m.properties.messageId === customerA.eventId),
  );
  updated = await waitFor('A’s CustomerUpdated on the exchange', () =>
    captured.find((m) => m.properties.messageId === updateId),
  );
  await waitFor('the three real events handled', async () => (await outcomes()).handled === 3);
  before = await tableCounts();

  for (const c of CASES) {
    const body = c.body();
    sent.set(c.name, body);
    const messageId = c.messageId
      ? c.messageId()
      : (JSON.parse(body.toString('utf8')) as { eventId?: string }).eventId;
    const options: Options.Publish = {
      messageId,
      contentType: 'application/json',
      persistent: true,
      headers: { 'x-case': c.name },
    };
    if (c.route === 'queue') await broker.sendToQueue(workerQueue, body, options);
    else await broker.publish(exchange, c.route.routingKey, body, options);
  }
  await waitFor(`all ${CASES.length} cases parked`, async () => (await outcomes()).parked === CASES.length);
  await waitFor(
    'the dead-letter queue to hold them',
    async () => (await broker.messageCount(deadQueue)) === CASES.length,
  );
  parked = new Map((await broker.drain(deadQueue)).map((m) => [String(m.properties.headers?.['x-case']), m]));
});

afterAll(async () => {
  await service?.stop();
  await broker?.close();
  await db?.drop();
  if (exchange) await deleteBrokerObjects(brokerObjectsOf(exchange, workerQueue));
});

describe('hostile AMQP messages: parked with a reason, nothing written', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const message = parked.get(c.name);
    expect(message, 'parked in the dead-letter queue').toBeDefined();
    expect(String(message?.properties.headers?.['x-last-error'])).toMatch(c.reason);
    // Parked at the first delivery: retrying cannot fix a forgery.
    expect(message?.properties.headers?.['x-attempts']).toBe(1);
    // Parked as it came, for an operator to look at.
    expect(message?.content.equals(sent.get(c.name) as Buffer)).toBe(true);
  });

  it('no case wrote a row: no inbox, e-mail, notice, history or progress', async () => {
    expect(await tableCounts()).toEqual(before);
    expect(await outcomes()).toEqual({ handled: 3, parked: CASES.length });
    const notices = await db.query<{ recipient: string }>('SELECT recipient FROM email_change_notices');
    expect(notices.map((n) => n.recipient)).toEqual([customerA.email]);
    const emails = await db.query<{ recipient: string }>('SELECT recipient FROM welcome_emails');
    expect(emails.map((e) => e.recipient)).not.toContain(ATTACKER);
  });

  it('the worker is still healthy afterwards: a new customer is handled', async () => {
    const customer = await createCustomer(url, 'after-hostile');
    await waitFor('the new customer’s welcome e-mail', async () => {
      const [row] = await db.query<{ n: number | string }>(
        'SELECT COUNT(*) AS n FROM welcome_emails WHERE customer_id = ?',
        [customer.customerId],
      );
      return Number(row?.n) === 1;
    });
    expect(await outcomes()).toEqual({ handled: 4, parked: CASES.length });
    expect(await broker.messageCount(workerQueue)).toBe(0);
  });
});

/**
 * Publishes a message whose header table nests `depth` levels, from a plain Node process: a test
 * worker's smaller stack cannot even encode it.
 */
async function publishDeepHeaders(queue: string, depth: number, body: string): Promise<void> {
  const script = `
    const amqp = require(require.resolve('amqplib', { paths: [process.cwd()] }));
    (async () => {
      let headers = { leaf: 1 };
      for (let i = 0; i < ${depth}; i++) headers = { n: headers };
      const connection = await amqp.connect(process.argv[1]);
      const channel = await connection.createConfirmChannel();
      channel.sendToQueue(process.argv[2], Buffer.from(process.argv[3]), { persistent: true, headers });
      await channel.waitForConfirms();
      await connection.close();
    })().catch((error) => { console.error(error); process.exit(1); });`;
  // A larger stack than Node's default, for amqplib's recursive encoder (the OS stack is 8 MB).
  await promisify(execFile)(process.execPath, [
    '--stack-size=6000',
    '-e',
    script,
    TEST_AMQP_URL,
    queue,
    body,
  ]);
}

/**
 * Messages no case above can reach with a small WORKER_MAX_MESSAGE_BYTES: a service of its own,
 * with the defaults. Each must be set aside without holding up the real events behind it.
 */
describe('hostile AMQP messages that would stall the worker or suppress a real event', () => {
  let hdb: TestDatabase;
  let hostile: RunningService;
  let hurl: string;

  beforeAll(async () => {
    hdb = await createTestDatabase('hostile_amqp_stall');
    hostile = await startService(testConfig(hdb.url, { ROLES: 'app,relay,worker' }), testLogger());
    hurl = hostile.app?.url as string;
    await waitFor(
      'the worker to consume',
      async () => (await broker.consumerCount(hostile.topology.workerQueue)) > 0,
    );
  });

  afterAll(async () => {
    await hostile?.stop();
    await hdb?.drop();
    if (hostile)
      await deleteBrokerObjects(brokerObjectsOf(hostile.topology.exchange, hostile.topology.workerQueue));
  });

  const hcount = async (sql: string, params: unknown[] = []) =>
    Number((await hdb.query<{ n: number | string }>(sql, params))[0]?.n);
  const houtcomes = async () => {
    const { values } = await hostile.metrics.workerHandled.get();
    return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
  };
  const ready = async () => (await fetch(new URL('/readyz', hurl))).status;
  const handledFor = async (customerId: string) => ({
    emails: await hcount('SELECT COUNT(*) AS n FROM welcome_emails WHERE customer_id = ?', [customerId]),
    history: await hcount(
      "SELECT COUNT(*) AS n FROM handled_events WHERE aggregate_type = 'Customer' AND aggregate_id = ?",
      [customerId],
    ),
  });

  it('a header table nested 9,000 levels deep (amqplib cannot decode it) is parked at its first delivery; the customers behind it are handled', async () => {
    const { workerQueue, workerDeadLetterQueue } = hostile.topology;
    await publishDeepHeaders(workerQueue, 9_000, '{"poison":true}');
    const behind = await Promise.all([1, 2, 3].map((i) => createCustomer(hurl, `behind-poison-${i}`)));

    await waitFor('the customers behind it handled', async () => {
      for (const c of behind) if ((await handledFor(c.customerId)).emails !== 1) return false;
      return true;
    });
    await waitFor('the poison parked', async () => (await houtcomes()).parked === 1);
    const [parked, ...more] = await broker.drain(workerDeadLetterQueue);
    expect(more).toHaveLength(0);
    expect(String(parked?.properties.headers?.['x-last-error'])).toMatch(
      /^PermanentFailure: its properties could not be decoded \(RangeError: Maximum call stack size exceeded\)$/,
    );
    expect(parked?.content.toString()).toBe('{"poison":true}');
    for (const c of behind) expect(await handledFor(c.customerId)).toEqual({ emails: 1, history: 1 });
    expect(await hcount('SELECT COUNT(*) AS n FROM inbox')).toBe(3);
    expect(await houtcomes()).toEqual({ parked: 1, handled: 3 });
    expect(await broker.messageCount(workerQueue)).toBe(0);
    expect(await broker.consumerCount(workerQueue)).toBe(1);
    expect(await ready()).toBe(200);
  });

  it('a forged copy of a real, unhandled CustomerCreated (payload 60,000 deep, x-attempts 4) is parked as a forgery, and the real message is still handled', async () => {
    const { exchange, workerDeadLetterQueue } = hostile.topology;
    const before = await houtcomes();
    // A customer whose event the relay will not publish (marked published): the real message is
    // sent below, after the forgery, as the relay would have sent it.
    const email = `forged.${randomUUID()}@example.com`;
    const [inserted] = await hdb.db
      .insert(customers)
      .values({ email, emailNormalized: email, name: 'Real', createdAt: new Date() })
      .$returningId();
    const customerId = String(inserted?.id);
    const eventId = randomUUID();
    const occurredAt = new Date();
    const payload = { customerId, email, name: 'Real', createdAt: occurredAt.toISOString() };
    await hdb.db.insert(outbox).values({
      eventId,
      aggregateType: 'Customer',
      aggregateId: customerId,
      sequence: 1,
      type: 'CustomerCreated',
      payload,
      headers: {},
      occurredAt,
      nextAttemptAt: occurredAt,
      publishedAt: occurredAt,
    });
    const envelope = {
      eventId,
      type: 'CustomerCreated',
      aggregateType: 'Customer',
      aggregateId: customerId,
      sequence: 1,
      occurredAt: occurredAt.toISOString(),
    };
    const deep = `${'['.repeat(60_000)}${']'.repeat(60_000)}`;
    const forged = Buffer.from(`${JSON.stringify(envelope).slice(0, -1)},"payload":${deep}}`);
    const options = { messageId: eventId, contentType: 'application/json', persistent: true };
    await broker.publish(exchange, 'customer.created', forged, { ...options, headers: { 'x-attempts': 4 } });

    await waitFor('the forgery parked', async () => (await houtcomes()).parked === (before.parked ?? 0) + 1);
    const [parked] = await broker.drain(workerDeadLetterQueue);
    expect(String(parked?.properties.headers?.['x-last-error'])).toBe(
      'PermanentFailure: message payload cannot be compared with the stored event',
    );
    // Parking a forgery writes nothing of the real event: no progress, no inbox row.
    expect(
      await hcount('SELECT COUNT(*) AS n FROM worker_progress WHERE aggregate_id = ?', [customerId]),
    ).toBe(0);
    expect(await hcount('SELECT COUNT(*) AS n FROM inbox WHERE message_id = ?', [eventId])).toBe(0);
    expect(await handledFor(customerId)).toEqual({ emails: 0, history: 0 });

    await broker.publish(
      exchange,
      'customer.created',
      Buffer.from(JSON.stringify({ ...envelope, payload })),
      options,
    );
    await waitFor('the real event handled', async () => (await handledFor(customerId)).emails === 1);
    expect(await handledFor(customerId)).toEqual({ emails: 1, history: 1 });
    expect(await houtcomes()).toEqual({
      ...before,
      parked: (before.parked ?? 0) + 1,
      handled: (before.handled ?? 0) + 1,
    });
    expect(await ready()).toBe(200);
  });
});
