import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../src/service.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { exposedNames, metricNamesIn, startPrometheus, type TestPrometheus } from './support/prometheus.js';
import { stopAndClean, testConfig, testLogger } from './support/service.js';
import { connectWs, subscribeCustomerEvents, type WsClient } from './support/subscriptions.js';
import { waitFor } from './support/wait.js';

/**
 * ops/grafana/graphql-outbox.json against the real Prometheus scraping a service under a little
 * load (creates, a live subscriber): every query of every panel returns data, and names only
 * metrics that /metrics exposes.
 */

interface Dashboard {
  panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
}

let db: TestDatabase;
let service: RunningService;
let prometheus: TestPrometheus;
let ws: WsClient;
let load: NodeJS.Timeout | undefined;

const dashboard = async (): Promise<Dashboard> =>
  JSON.parse(await readFile(new URL('../ops/grafana/graphql-outbox.json', import.meta.url), 'utf8'));
const queries = async () =>
  (await dashboard()).panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));

beforeAll(async () => {
  db = await createTestDatabase('grafana_dashboard');
  service = await startService(testConfig(db.url, { ROLES: 'app,relay,worker' }), testLogger());
  const url = service.app?.url as string;
  ws = connectWs(url);
  await waitFor('the WebSocket to connect', () => ws.connected());
  subscribeCustomerEvents(ws);
  prometheus = await startPrometheus([new URL(url).host]);
  // A little load for as long as the test runs: a create every 200 ms.
  let creating = false;
  load = setInterval(() => {
    if (creating) return;
    creating = true;
    void createCustomer(url, 'load').finally(() => {
      creating = false;
    });
  }, 200);
});

afterAll(async () => {
  if (load) clearInterval(load);
  await prometheus?.stop();
  await ws?.dispose();
  await stopAndClean(service);
  await db?.drop();
});

describe('the Grafana dashboard', () => {
  it('names only metrics that /metrics exposes', async () => {
    const exposed = exposedNames(await service.metrics.registry.metrics());
    const missing = (await queries()).flatMap(({ panel, expr }) =>
      metricNamesIn(expr)
        .filter((name) => !exposed.has(name))
        .map((name) => `${panel}: ${name}`),
    );
    expect(missing).toEqual([]);
  });

  it('every query returns data from the real Prometheus', async () => {
    const all = await queries();
    expect(all.length).toBeGreaterThanOrEqual(15);
    for (const { panel, expr } of all) {
      // Grafana's own variable: at least four scrapes, as Grafana would pick for a 1 s scrape.
      const query = expr.replaceAll('$__rate_interval', '10s');
      await waitFor(
        `"${panel}": ${query} to return data`,
        async () => (await prometheus.query(query)).length > 0,
        {
          timeoutMs: 60_000,
          intervalMs: 500,
        },
      );
    }
  }, 180_000);
});
