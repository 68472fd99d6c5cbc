import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TEST_AMQP_URL } from './support/env.js';
import { startTcpProxy, type TcpProxy } from './support/proxy.js';
import { stopAndClean, testConfig } from './support/service.js';
import { connectWs, subscribeCustomerEvents, type WsClient } from './support/subscriptions.js';
import { untilLive, waitFor } from './support/wait.js';

/**
 * Item 7 of the black-holed links: a long outage of the database and the broker leaves the logs
 * readable. Every role of one process (app, relay, worker, live feed, retention) reaches both
 * through TCP proxies that black-hole them for OUTAGE_MS while creates keep coming, /readyz
 * and /metrics are probed and a subscriber listens. Every repeated condition may say so once
 * per LOG_REPEAT_INTERVAL_MS (and once more when it clears), not once per failure; and the
 * recovery is logged.
 */

const INTERVAL_MS = 2_000;
/** Both away this long; the broker goes first and comes back first by STAGGER_MS. */
const OUTAGE_MS = 8_000;
const STAGGER_MS = 2_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Line {
  readonly time: number;
  readonly level: number;
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

let db: TestDatabase;
let dbProxy: TcpProxy;
let brokerProxy: TcpProxy;
let service: RunningService;
let url: string;
let ws: WsClient | undefined;
const lines: Line[] = [];

beforeAll(async () => {
  db = await createTestDatabase('outage_logs');
  const direct = new URL(db.url);
  dbProxy = await startTcpProxy(direct.hostname, Number(direct.port || 3306));
  const broker = new URL(TEST_AMQP_URL);
  brokerProxy = await startTcpProxy(broker.hostname, Number(broker.port || 5672));
  const viaDbProxy = new URL(db.url);
  viaDbProxy.host = `127.0.0.1:${dbProxy.port}`;
  broker.host = `127.0.0.1:${brokerProxy.port}`;
  const log = createLogger('info', {}, { write: (text: string) => lines.push(parse(text)) }, INTERVAL_MS);
  service = await startService(
    testConfig(viaDbProxy.toString(), {
      ROLES: 'app,relay,worker',
      AMQP_URL: broker.toString(),
      REQUEST_TIMEOUT_MS: '1500',
      DB_QUERY_TIMEOUT_MS: '1000',
      DB_ACQUIRE_TIMEOUT_MS: '1000',
      DB_CONNECT_TIMEOUT_MS: '1000',
      AMQP_HEARTBEAT_S: '1',
      AMQP_CONNECT_TIMEOUT_MS: '1000',
      RELAY_CONFIRM_TIMEOUT_MS: '1000',
      RELAY_POLL_INTERVAL_MS: '100',
      PRUNE_INTERVAL_MS: '200',
    }),
    log,
  );
  if (!service.app) throw new Error('the app role did not start');
  url = service.app.url;
});

afterAll(async () => {
  dbProxy?.restore();
  brokerProxy?.restore();
  await ws?.dispose();
  await stopAndClean(service);
  await dbProxy?.close();
  await brokerProxy?.close();
  await db?.drop();
});

function parse(text: string): Line {
  const { time, level, msg, ...fields } = JSON.parse(text) as Record<string, unknown>;
  return { time: Date.parse(String(time)), level: Number(level), msg: String(msg), fields };
}

/** What one repeated condition is: the limiter's key, or the message and whose it is. */
function conditionOf(line: Line): string {
  const { condition, role, connection, session, loop } = line.fields;
  if (typeof condition === 'string') return `${String(role)} ${condition}`;
  return JSON.stringify([line.msg, role, connection, session, loop]);
}

/** The most lines any condition wrote within `windowMs`. */
function busiest(of: readonly Line[], windowMs: number): { condition: string; lines: number } {
  const byCondition = new Map<string, number[]>();
  for (const line of of) {
    const key = conditionOf(line);
    byCondition.set(key, [...(byCondition.get(key) ?? []), line.time]);
  }
  let most = { condition: '', lines: 0 };
  for (const [condition, times] of byCondition) {
    for (const [i, start] of times.entries()) {
      const within = times.slice(i).filter((t) => t < start + windowMs).length;
      if (within > most.lines) most = { condition, lines: within };
    }
  }
  return most;
}

/** Conditions with two `cleared` lines in a row: a clearing said twice. */
function clearedTwice(of: readonly Line[]): string[] {
  const lastCleared = new Map<string, boolean>();
  const twice = new Set<string>();
  for (const line of of.filter((l) => l.fields.condition !== undefined)) {
    const cleared = line.fields.cleared === true;
    if (cleared && lastCleared.get(conditionOf(line))) twice.add(conditionOf(line));
    lastCleared.set(conditionOf(line), cleared);
  }
  return [...twice];
}

/** Lines per condition, for reading a failure. */
function summary(of: readonly Line[]): string {
  const counts = new Map<string, number>();
  for (const line of of) counts.set(conditionOf(line), (counts.get(conditionOf(line)) ?? 0) + 1);
  return [...counts].map(([condition, n]) => `${n}\t${condition}`).join('\n');
}

/** Creates at a steady pace until stopped; failures during the outage are expected. */
function steadyCreates(perSecond: number): { stop(): Promise<number> } {
  let stopped = false;
  let sent = 0;
  const inFlight = new Set<Promise<unknown>>();
  const timer = setInterval(() => {
    if (stopped) return;
    sent++;
    const request = createCustomer(url, 'outage-logs').catch(() => {});
    inFlight.add(request);
    void request.finally(() => inFlight.delete(request));
    for (const path of ['/readyz', '/metrics']) {
      const probe = fetch(new URL(path, url))
        .then((r) => r.text())
        .catch(() => {});
      inFlight.add(probe);
      void probe.finally(() => inFlight.delete(probe));
    }
  }, 1000 / perSecond);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.allSettled([...inFlight]);
      return sent;
    },
  };
}

describe('logs during a long outage of the database and the broker', () => {
  it('write one line per condition per interval, with the count held back, and say when each cleared', async () => {
    ws = connectWs(url);
    const live = subscribeCustomerEvents(ws);
    await untilLive(
      'a created customer to reach the subscriber',
      () => createCustomer(url),
      (id) => live.count(id) === 1,
    );
    const creates = steadyCreates(20);
    const cutAt = Date.now();
    // The broker first (creates commit, their hand-offs come back), then the database too, then
    // the broker back alone (the worker's redeliveries fail on the database).
    brokerProxy.silence();
    await sleep(STAGGER_MS);
    dbProxy.silence();
    await sleep(OUTAGE_MS);
    brokerProxy.restore();
    await sleep(STAGGER_MS);
    dbProxy.restore();
    await untilLive(
      'a customer created after the heal to reach the subscriber',
      () => waitFor('a create to succeed', () => createCustomer(url), { timeoutMs: 15_000 }),
      (id) => live.count(id) === 1,
      { timeoutMs: 15_000 },
    );
    const sent = await creates.stop();
    expect(sent).toBeGreaterThan(100);
    const since = lines.filter((l) => l.time >= cutAt);

    // Each role reported the outage through its conditions.
    const reported = new Set(since.filter((l) => l.fields.condition !== undefined).map(conditionOf));
    expect([...reported]).toEqual(
      expect.arrayContaining([
        'app database unavailable for GraphQL operations',
        'app request deadline passed',
        'app history feed',
        'relay relay lanes failing',
        'retention retention',
        expect.stringMatching(/^worker broker connection /),
      ]),
    );
    // One line per condition per interval (a few ms of leeway: the line's time is taken a moment
    // after the limiter's), what was held back counted in the next one…
    const happening = since.filter((l) => l.fields.condition !== undefined && l.fields.cleared !== true);
    const most = busiest(happening, INTERVAL_MS - 100);
    expect(most.lines, `${most.condition} in:\n${summary(since)}`).toBe(1);
    expect(happening.some((l) => Number(l.fields.suppressed) > 0)).toBe(true);
    // …and at most one line that it cleared after each (a condition that flaps during the heal
    // may say so again, an interval later).
    expect(clearedTwice(since)).toEqual([]);
    // A connection's own events are one line each per connection lost.
    const plain = busiest(
      since.filter((l) => l.fields.condition === undefined),
      INTERVAL_MS,
    );
    expect(plain.lines, `${plain.condition} in:\n${summary(since)}`).toBeLessThanOrEqual(2);
    // And every one of them said, once, that it cleared.
    const unresolved = () => {
      const last = new Map<string, Line>();
      for (const line of lines.filter((l) => l.time >= cutAt && l.fields.condition !== undefined)) {
        last.set(conditionOf(line), line);
      }
      return [...last].filter(([, line]) => line.fields.cleared !== true).map(([condition]) => condition);
    };
    // Cleared by work that succeeds: a request stuck in the cut may fail after the heal, and only
    // a later one says the database is back.
    await waitFor(
      'every condition to clear',
      async () => {
        await createCustomer(url, 'outage-logs').catch(() => {});
        return unresolved().length === 0;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    ).catch(() => {});
    expect(unresolved()).toEqual([]);
  }, 40_000);
});
