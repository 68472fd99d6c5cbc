/**
 * The floor: the least work this service's pipeline needs, hand-written in one Node process
 * with the same libraries (node:http, mysql2, amqplib, ws) and the same tables (the product's
 * migrations), so that `npm run bench -- floor` can set the product's CPU and latency against
 * it in the same run.
 *
 * What it does per create, as the product does: one round trip (INSERT customer, INSERT outbox
 * with the customer's id, COMMIT); a persistent, mandatory publish with a publisher confirm;
 * the row marked published after the confirm (marks gathered every 25 ms); a quorum-queue
 * consumer that writes the inbox rows, the welcome e-mails and the history rows (commit-ordered
 * positions from the same counter row) in one transaction per group of arrived messages, then
 * acks; a graphql-transport-ws `next` to each subscriber.
 *
 * What it leaves out, and so what the product pays above it: GraphQL parsing, validation and
 * execution (it reads `variables.input` from the JSON); the request budgets and input checks
 * beyond a non-empty name and an @ in the e-mail; Idempotency-Key; the relay's claim, leases,
 * retries, per-customer order and hand-off bookkeeping (it publishes from memory right after
 * the commit, and loses the event if it crashes in between: not a design, a floor); the
 * worker's stored-event check, per-customer progress, retry/wait/park queues and hostile-input
 * checks (it trusts the message); the live feed's reader (it pushes what it committed); hints,
 * metrics, logs, retention. Not for production.
 *
 * Environment: PORT, DATABASE_URL, AMQP_URL, OUTBOX_EXCHANGE, WORKER_QUEUE.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import amqp from 'amqplib';
import mysql from 'mysql2';
import { WebSocketServer } from 'ws';

const env = process.env;
const exchange = env.OUTBOX_EXCHANGE ?? 'floor.events';
const queue = env.WORKER_QUEUE ?? 'floor.worker';

const pool = mysql.createPool({
  uri: env.DATABASE_URL,
  connectionLimit: 20,
  multipleStatements: true,
  timezone: 'Z',
  trace: false,
});
pool.on('connection', (connection) => {
  connection.query("SET time_zone = '+00:00'");
  connection.query('SET autocommit = 0');
});
/** @returns {Promise<any>} */
const query = (sql, values) =>
  new Promise((resolve, reject) =>
    pool.query(sql, values, (error, rows) => (error ? reject(error) : resolve(rows))),
  );

// Without noDelay, Nagle's algorithm holds each small publish or ack until the broker's delayed
// ACK of the previous one: a wait of tens of milliseconds the product's connection does not have.
const connection = await amqp.connect(env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672', {
  noDelay: true,
});
const publisher = await connection.createConfirmChannel();
await publisher.assertExchange(exchange, 'topic', { durable: true });
const consumer = await connection.createChannel();
await consumer.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
await consumer.bindQueue(queue, exchange, 'customer.created');
await consumer.prefetch(32);

// --- the create ---------------------------------------------------------------------------
const INSERT_CREATE =
  'INSERT INTO customers (email, email_normalized, name, created_at, version) VALUES (?, ?, ?, ?, 1);' +
  ' INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, type, payload, headers, occurred_at, next_attempt_at)' +
  " VALUES (?, 'Customer', LAST_INSERT_ID(), 1, 'CustomerCreated', JSON_OBJECT('customerId', CAST(LAST_INSERT_ID() AS CHAR), 'email', ?, 'name', ?, 'createdAt', ?), '{}', ?, ?);" +
  ' COMMIT';

async function create(input) {
  const email = String(input?.email ?? '').trim();
  const name = String(input?.name ?? '').trim();
  if (!email.includes('@') || name === '')
    return { errors: [{ message: 'bad input', extensions: { code: 'BAD_USER_INPUT' } }] };
  const now = new Date();
  const at = now.toISOString().slice(0, 23).replace('T', ' ');
  const eventId = randomUUID();
  const [customer, event] = await query(INSERT_CREATE, [
    email,
    email.toLowerCase(),
    name,
    at,
    eventId,
    email,
    name,
    now.toISOString(),
    at,
    at,
  ]);
  const id = String(customer.insertId);
  publish(event.insertId, {
    eventId,
    type: 'CustomerCreated',
    aggregateType: 'Customer',
    aggregateId: id,
    sequence: 1,
    occurredAt: now.toISOString(),
    payload: { customerId: id, email, name, createdAt: now.toISOString() },
  });
  return {
    data: {
      createCustomer: { eventId, customer: { id, email, name, sequence: 1, createdAt: now.toISOString() } },
    },
  };
}

// --- the publish and the batched mark -------------------------------------------------------
/** @type {number[]} */
let confirmed = [];
function publish(rowId, envelope) {
  publisher.publish(
    exchange,
    'customer.created',
    Buffer.from(JSON.stringify(envelope)),
    {
      persistent: true,
      mandatory: true,
      messageId: envelope.eventId,
      type: envelope.type,
      contentType: 'application/json',
    },
    (error) => {
      if (!error) confirmed.push(rowId);
    },
  );
}
setInterval(() => {
  if (confirmed.length === 0) return;
  const ids = confirmed;
  confirmed = [];
  query('UPDATE outbox SET published_at = NOW(3) WHERE id IN (?); COMMIT', [ids]).catch(() => {
    confirmed.push(...ids);
  });
}, 25).unref();

// --- the consumer: one transaction per group of arrived messages ----------------------------
/** @type {import('amqplib').ConsumeMessage[]} */
let arrived = [];
let handling = false;
await consumer.consume(queue, (message) => {
  if (!message) return;
  arrived.push(message);
  if (!handling) setImmediate(handleArrived);
});

async function handleArrived() {
  if (handling || arrived.length === 0) return;
  handling = true;
  const group = arrived;
  arrived = [];
  try {
    const events = group.map((message) => JSON.parse(message.content.toString()));
    const handledAt = new Date();
    const at = handledAt.toISOString().slice(0, 23).replace('T', ' ');
    const n = events.length;
    const values = [];
    let sql = `INSERT INTO inbox (consumer, message_id, handled_at) VALUES ${events.map(() => "('floor', ?, ?)").join(', ')};`;
    for (const e of events) values.push(e.eventId, at);
    sql += ` INSERT INTO welcome_emails (customer_id, event_id, recipient, subject, body, sent_at) VALUES ${events.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')};`;
    for (const e of events)
      values.push(
        e.aggregateId,
        e.eventId,
        e.payload.email,
        `Welcome, ${e.payload.name}`,
        `Hello ${e.payload.name}, welcome aboard.`,
        at,
      );
    sql += ` INSERT INTO history_positions (id, position) VALUES (1, LAST_INSERT_ID(${n})) ON DUPLICATE KEY UPDATE position = LAST_INSERT_ID(position + ${n});`;
    sql += ` INSERT INTO handled_events (position, event_id, type, aggregate_type, aggregate_id, sequence, occurred_at, handled_at, handler, payload) VALUES ${events.map((_, i) => `(LAST_INSERT_ID() - ${n - 1 - i}, ?, ?, ?, ?, ?, ?, ?, 'welcome', ?)`).join(', ')};`;
    for (const e of events)
      values.push(
        e.eventId,
        e.type,
        e.aggregateType,
        e.aggregateId,
        e.sequence,
        e.occurredAt.slice(0, 23).replace('T', ' '),
        at,
        JSON.stringify(e.payload),
      );
    sql += ' COMMIT';
    await query(sql, values);
    consumer.ack(group[group.length - 1], true);
    const handled = handledAt.toISOString();
    for (const e of events) notify({ eventId: e.eventId, customerId: e.aggregateId, handledAt: handled });
  } catch (error) {
    process.stderr.write(`floor: handling failed: ${error}\n`);
    consumer.nack(group[group.length - 1], true, true);
  } finally {
    handling = false;
    if (arrived.length > 0) setImmediate(handleArrived);
  }
}

// --- HTTP and graphql-transport-ws ---------------------------------------------------------
const server = createServer((request, response) => {
  if (request.url === '/readyz' || request.url === '/healthz') {
    response.end('ok');
    return;
  }
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      body = {};
    }
    const answer = body.query?.includes('createCustomer')
      ? create(body.variables?.input)
      : Promise.resolve({ data: { __typename: 'Query' } });
    answer.then(
      (result) => {
        const text = JSON.stringify(result);
        response.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        response.end(text);
      },
      () => {
        response.writeHead(500, { 'content-type': 'application/json' });
        response.end('{"errors":[{"message":"Internal server error"}]}');
      },
    );
  });
});

/** @type {Map<import('ws').WebSocket, Set<string>>} */
const subscribers = new Map();
const sockets = new WebSocketServer({
  server,
  path: '/graphql',
  handleProtocols: () => 'graphql-transport-ws',
});
sockets.on('connection', (socket) => {
  subscribers.set(socket, new Set());
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString());
    if (message.type === 'connection_init') socket.send('{"type":"connection_ack"}');
    else if (message.type === 'ping') socket.send('{"type":"pong"}');
    else if (message.type === 'subscribe') subscribers.get(socket)?.add(message.id);
    else if (message.type === 'complete') subscribers.get(socket)?.delete(message.id);
  });
  socket.on('close', () => subscribers.delete(socket));
});
function notify(event) {
  for (const [socket, ids] of subscribers) {
    for (const id of ids)
      socket.send(JSON.stringify({ id, type: 'next', payload: { data: { onCustomerEvent: event } } }));
  }
}

server.listen(Number(env.PORT ?? 4100), '127.0.0.1');
const stop = () => {
  sockets.close();
  server.close();
  connection.close().finally(() => pool.end(() => process.exit(0)));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
