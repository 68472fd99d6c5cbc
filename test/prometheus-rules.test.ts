import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import {
  exposedNames,
  freePort,
  metricNamesIn,
  promtool,
  requirePrometheus,
  startPrometheus,
  type TestPrometheus,
} from './support/prometheus.js';
import { testConfig, testLogger } from './support/service.js';
import { waitFor } from './support/wait.js';

/**
 * ops/prometheus/rules.yml, proven by Prometheus itself: promtool's unit tests pass, every
 * metric a rule reads exists on /metrics, and the real Prometheus, scraping a service whose
 * broker is unreachable, fires the backlog and broker alerts.
 */

const RULES = new URL('../ops/prometheus/', import.meta.url);

let db: TestDatabase;
let service: RunningService;
let prometheus: TestPrometheus;

beforeAll(async () => {
  requirePrometheus();
  db = await createTestDatabase('prometheus_rules');
  // A broker that is not there: nothing listens on this port.
  const closedPort = await freePort();
  service = await startService(
    testConfig(db.url, { ROLES: 'app,relay,worker', AMQP_URL: `amqp://guest:guest@127.0.0.1:${closedPort}` }),
    testLogger(),
  );
  // The file's expressions as they are; every `for:` shortened so the alerts fire in seconds.
  const rules = (await readFile(new URL('rules.yml', RULES), 'utf8')).replace(
    /\bfor: \d+[smh]\b/g,
    'for: 1s',
  );
  prometheus = await startPrometheus([new URL(service.app?.url as string).host], rules);
});

afterAll(async () => {
  await prometheus?.stop();
  // The broker was never reached: there is nothing of it to clean.
  await service?.stop();
  await db?.drop();
});

describe('the alert and recording rules', () => {
  it('pass their promtool unit tests and check', async () => {
    const path = (file: string) => new URL(file, RULES).pathname;
    const check = await promtool('check', 'rules', path('rules.yml'));
    expect(check.code, check.output).toBe(0);
    const tests = await promtool('test', 'rules', path('rules.test.yml'));
    expect(tests.code, tests.output).toBe(0);
    expect(tests.output).toContain('SUCCESS');
  });

  it('name only metrics that /metrics exposes', async () => {
    const groups = await waitFor('Prometheus to load the rules', async () => {
      const response = await fetch(`${prometheus.url}/api/v1/rules`);
      const body = (await response.json()) as {
        data: { groups: Array<{ rules: Array<{ name: string; query: string }> }> };
      };
      return body.data.groups.length > 0 ? body.data.groups : undefined;
    });
    const rules = groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(16);
    const exposed = exposedNames(await service.metrics.registry.metrics());
    const missing = rules.flatMap((rule) =>
      metricNamesIn(rule.query)
        .filter((name) => !exposed.has(name))
        .map((name) => `${rule.name}: ${name}`),
    );
    expect(missing).toEqual([]);
  });

  it('the real Prometheus fires the backlog and broker alerts for a service whose broker is unreachable', async () => {
    const customer = await createCustomer(service.app?.url as string, 'stuck');

    // Waiting two minutes for the age to pass the rule's threshold is the rule's business;
    // the test makes the event ten minutes old instead.
    await db.query('UPDATE outbox SET occurred_at = NOW(3) - INTERVAL 10 MINUTE WHERE event_id = ?', [
      customer.eventId,
    ]);
    const firing = async (name: string) =>
      (await prometheus.alerts()).some((a) => a.labels.alertname === name && a.state === 'firing');
    await waitFor('OutboxBacklogStale to fire', () => firing('OutboxBacklogStale'), { timeoutMs: 60_000 });
    await waitFor('BrokerUnreachable to fire', () => firing('BrokerUnreachable'), { timeoutMs: 30_000 });
    const [age] = await prometheus.query('max(outbox_oldest_pending_age_seconds)');
    expect(Number(age?.value[1])).toBeGreaterThan(590);
    expect(await firing('DatabaseUnreachable')).toBe(false);
  }, 120_000);
});
