import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerObjectsOf, deleteBrokerObjects } from './support/broker.js';
import { logLines, stopProcess, waitForLog } from './support/children.js';
import { createCustomer } from './support/customers.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type OtlpReceiver, startOtlpReceiver } from './support/otlp.js';
import { childEnv, type ServiceProcess, spawnService } from './support/process.js';
import { uniqueSuffix } from './support/service.js';
import { waitFor } from './support/wait.js';

/**
 * An unconfigured service never loads the OpenTelemetry SDK: the service runs a create through
 * all three roles (every traced path: the operation, its transaction, the publish, the handling
 * and its history write) with no OTEL_* variable, and the modules it loaded, listed at its exit,
 * hold the API and no SDK package. The same service with an OTLP endpoint loads the SDK, which
 * shows the list would see it.
 */

const REPORTER = fileURLToPath(new URL('./support/loaded-modules.mjs', import.meta.url));
const SDK_PACKAGES = /node_modules\/@opentelemetry\/(sdk-|exporter-|otlp-|resources\/)/;
const API_PACKAGE = /node_modules\/@opentelemetry\/api\//;

let db: TestDatabase;
let otlp: OtlpReceiver;
const names: Array<[string, string]> = [];

beforeAll(async () => {
  db = await createTestDatabase('telemetry_loading');
  otlp = await startOtlpReceiver();
}, 60_000);

afterAll(async () => {
  await otlp?.close();
  await db?.drop();
  await Promise.all(names.map(([exchange, queue]) => deleteBrokerObjects(brokerObjectsOf(exchange, queue))));
});

/** The modules a whole service loaded while it handled one create and stopped. */
async function modulesLoadedBy(env: Record<string, string>): Promise<string[]> {
  const suffix = uniqueSuffix();
  const exchange = `test.loading.${suffix}`;
  const queue = `test.loading.worker.${suffix}`;
  names.push([exchange, queue]);
  const proc: ServiceProcess = spawnService(
    'app,relay,worker',
    childEnv(db.url, exchange, queue, {
      // The runner's own OTEL_* variables, if any, must not decide what is measured here.
      OTEL_SDK_DISABLED: '',
      OTEL_TRACES_EXPORTER: '',
      OTEL_EXPORTER_OTLP_ENDPOINT: '',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '',
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${REPORTER}`,
      ...env,
    }),
  );
  try {
    const url = String((await waitForLog(proc, 'GraphQL server listening', 60_000)).url);
    const { customerId } = await createCustomer(url, 'loading');
    await waitFor(
      'the welcome e-mail',
      async () =>
        (await db.query('SELECT 1 FROM welcome_emails WHERE customer_id = ?', [customerId])).length === 1,
      { timeoutMs: 30_000 },
    );
  } finally {
    expect(await stopProcess(proc)).toBe(0);
  }
  const report = logLines(proc).find((line) => line.msg === 'loaded modules');
  if (!report) throw new Error(`no module list from the service:\n${proc.output().slice(-2000)}`);
  return report.modules as string[];
}

describe('the OpenTelemetry SDK is loaded only when the OTEL_* variables ask for it', () => {
  it('a service with no OTEL_* variable loads the API and no SDK package', async () => {
    const modules = await modulesLoadedBy({});
    expect(modules.some((m) => API_PACKAGE.test(m))).toBe(true);
    expect(modules.filter((m) => SDK_PACKAGES.test(m))).toEqual([]);
  }, 90_000);

  it('with an OTLP endpoint, the same service loads the SDK', async () => {
    const modules = await modulesLoadedBy({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    });
    expect(modules.some((m) => /node_modules\/@opentelemetry\/sdk-node\//.test(m))).toBe(true);
    expect(otlp.spans().length).toBeGreaterThan(0);
  }, 90_000);
});
