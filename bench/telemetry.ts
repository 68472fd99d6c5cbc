/**
 * What telemetry costs the write path: createCustomer over HTTP (32 clients) against three app
 * processes of the same build, in the same run, in alternating slices whose order rotates:
 *   unconfigured        no OTEL_* variable: the API's no-op, no SDK loaded
 *   unconfigured-again  a second one: the run's own noise, the ratio "nothing" is judged against
 *   sdk-discarding      the SDK with its OTLP exporter (http/protobuf, batched) sending every span
 *                       to a receiver in this process that reads and drops it
 * Figures: creates per second and the service's CPU per create, each set against the
 * unconfigured process's slice of the same round (the median of the rounds' ratios). Then what
 * the no-op costs a create: a traced step with no SDK against the bare step, in this process,
 * times the traced steps of a create in the app (the operation and its transaction).
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { traceTransaction } from '../src/telemetry/database.js';
import { cpuSeconds } from './cpu.js';
import { BenchHttpClient } from './http.js';
import {
  closedLoop,
  createBenchDatabase,
  deleteBrokerObjects,
  median,
  report,
  round,
  type ServiceChild,
  spawnBenchService,
} from './support.js';

const CONCURRENCY = 32;
/** The spans a create makes in the app: the GraphQL operation and its transaction. */
const TRACED_STEPS_PER_CREATE = 2;
const NO_OTEL = {
  OTEL_SDK_DISABLED: '',
  OTEL_TRACES_EXPORTER: '',
  OTEL_EXPORTER_OTLP_ENDPOINT: '',
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '',
};

interface Variant {
  readonly name: 'unconfigured' | 'unconfigured-again' | 'sdk-discarding';
  readonly service: ServiceChild;
  readonly client: BenchHttpClient;
  readonly rates: number[];
  readonly cpuMs: number[];
}

/** An OTLP/HTTP endpoint that reads each export and drops it: the exporter's whole cost, no collector's. */
async function discardingReceiver() {
  let exports = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      exports++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts: () => ({ exports, bytes }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Nanoseconds a traced step adds with no SDK: traceTransaction around a step against the step alone. */
async function noOpNanoseconds(): Promise<number> {
  const step = () => Promise.resolve(1);
  const time = async (run: () => Promise<unknown>, n: number) => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await run();
    return Number(process.hrtime.bigint() - started) / n;
  };
  const traced = () => traceTransaction(step);
  const differences: number[] = [];
  for (let r = 0; r < 7; r++) {
    const bare = await time(step, 200_000);
    differences.push((await time(traced, 200_000)) - bare);
  }
  return median(differences.slice(2));
}

export async function runTelemetryBenchmark(perSlice: number, rounds: number): Promise<void> {
  const db = await createBenchDatabase('telemetry');
  const receiver = await discardingReceiver();
  const suffix = randomBytes(3).toString('hex');
  const variants: Variant[] = [];
  const names: Array<[string, string]> = [];
  try {
    const start = async (name: Variant['name'], env: Record<string, string>) => {
      const exchange = `bench.telemetry.${name}.${suffix}`;
      const queue = `bench.telemetry.worker.${name}.${suffix}`;
      names.push([exchange, queue]);
      const service = await spawnBenchService('app', {
        ...NO_OTEL,
        DATABASE_URL: db.url,
        OUTBOX_EXCHANGE: exchange,
        WORKER_QUEUE: queue,
        DB_POOL_SIZE: String(CONCURRENCY),
        ...env,
      });
      variants.push({ name, service, client: new BenchHttpClient(service.url), rates: [], cpuMs: [] });
    };
    await start('unconfigured', {});
    await start('unconfigured-again', {});
    await start('sdk-discarding', {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_SERVICE_NAME: 'graphql-outbox-bench',
    });

    let slice = 0;
    const measure = async (variant: Variant, record: boolean) => {
      slice++;
      const cpuBefore = cpuSeconds(variant.service.pid);
      const rate = await closedLoop(CONCURRENCY, perSlice, async (n) => {
        const { body } = await variant.client.post({
          query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
          variables: { input: { email: `t${slice}.${n}.${suffix}@example.com`, name: `Bench ${n}` } },
        });
        if ((body as { errors?: unknown[] }).errors) throw new Error(JSON.stringify(body));
      });
      const cpuAfter = cpuSeconds(variant.service.pid);
      if (!record) return;
      variant.rates.push(rate);
      if (cpuBefore !== undefined && cpuAfter !== undefined)
        variant.cpuMs.push(((cpuAfter - cpuBefore) * 1000) / perSlice);
    };
    // Warm-up, not measured: JIT, pools and caches.
    for (const variant of variants) await measure(variant, false);
    for (let r = 0; r < rounds; r++) {
      // Rotated, so that no variant always follows the same one (the tables grow; InnoDB's
      // background work of one slice runs into the next).
      for (let i = 0; i < variants.length; i++)
        await measure(variants[(i + r) % variants.length] as Variant, true);
    }

    const [base] = variants as [Variant];
    const ratios = (values: (v: Variant) => number[], variant: Variant) =>
      values(variant).map((value, r) => value / (values(base)[r] as number));
    for (const variant of variants) {
      const figure: Record<string, unknown> = {
        scenario: `telemetry-${variant.name}`,
        concurrency: CONCURRENCY,
        creates: perSlice * rounds,
        createsPerSecond: Math.round(median(variant.rates)),
        slices: variant.rates.map(Math.round),
        cpuMsPerCreate: variant.cpuMs.length ? round(median(variant.cpuMs), 3) : undefined,
      };
      if (variant !== base) {
        figure.ratioToUnconfigured = round(median(ratios((v) => v.rates, variant)), 3);
        figure.ratioToUnconfiguredSlices = ratios((v) => v.rates, variant).map((x) => round(x, 3));
        if (variant.cpuMs.length)
          figure.cpuRatioToUnconfigured = round(median(ratios((v) => v.cpuMs, variant)), 3);
      }
      if (variant.name === 'sdk-discarding') figure.otlpExports = receiver.counts();
      report(figure);
    }
    const ns = await noOpNanoseconds();
    const cpuMs = median(base.cpuMs);
    report({
      scenario: 'telemetry-unconfigured-noop-cost',
      nsPerTracedStep: Math.round(ns),
      tracedStepsPerCreate: TRACED_STEPS_PER_CREATE,
      shareOfCreateCpu: base.cpuMs.length
        ? round((ns * TRACED_STEPS_PER_CREATE) / (cpuMs * 1e6), 6)
        : undefined,
    });
  } finally {
    for (const variant of variants) {
      variant.client.close();
      await variant.service.stop();
    }
    await receiver.close();
    await db.drop();
    for (const [exchange, queue] of names) await deleteBrokerObjects(exchange, queue);
  }
}
