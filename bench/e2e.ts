/**
 * End to end: createCustomer at a steady rate while a graphql-ws subscriber listens to every
 * customer's events; for each create, the time from sending the mutation to receiving its
 * handled event. The service runs as its own process with all roles, as `npm start` runs it.
 * The baseline, measured in the same run against the same process, is the round trip of a
 * trivial query over HTTP: the floor any "send, then be told" latency stands on.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { perUnitMs, sample, statementsSoFar, watched } from './cpu.js';
import { BenchHttpClient } from './http.js';
import {
  createBenchDatabase,
  deleteBrokerObjects,
  percentile,
  report,
  round,
  spawnBenchService,
} from './support.js';

const ms = (value: number) => round(value, 1);

export async function runEndToEndBenchmark(rates: readonly number[], seconds: number): Promise<void> {
  const db = await createBenchDatabase('e2e');
  const suffix = randomBytes(3).toString('hex');
  const service = await spawnBenchService('app,relay,worker', {
    DATABASE_URL: db.url,
    OUTBOX_EXCHANGE: `bench.e2e.${suffix}`,
    WORKER_QUEUE: `bench.e2e.worker.${suffix}`,
  });
  const client = createClient({
    url: service.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    lazy: false,
  });
  const http = new BenchHttpClient(service.url);
  const received = new Map<string, number>();
  let duplicates = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      client.on('connected', () => resolve());
      client.on('error', reject);
    });
    const unsubscribe = client.subscribe<{ onCustomerEvent: { eventId: string } }>(
      { query: 'subscription { onCustomerEvent { eventId customerId handledAt } }' },
      {
        next: (result) => {
          const id = result.data?.onCustomerEvent.eventId;
          if (!id) return;
          if (received.has(id)) duplicates++;
          else received.set(id, performance.now());
        },
        error: (error) => process.stderr.write(`subscription error: ${JSON.stringify(error)}\n`),
        complete: () => {},
      },
    );
    const post = async (body: unknown) =>
      (await http.post(body)).body as { data?: { createCustomer?: { eventId: string } }; errors?: unknown };

    // Baseline: HTTP round trips of a trivial query, one at a time.
    const rtt: number[] = [];
    for (let i = 0; i < 300; i++) {
      const started = performance.now();
      await post({ query: '{ __typename }' });
      rtt.push(performance.now() - started);
    }
    rtt.sort((a, b) => a - b);
    report({
      scenario: 'e2e-baseline-http-roundtrip',
      p50Ms: ms(percentile(rtt, 50)),
      p99Ms: ms(percentile(rtt, 99)),
    });

    let n = 0;
    // Warm-up, not measured: the first requests pay for JIT compilation and cold caches.
    for (let i = 0; i < 300; i++) {
      await post({
        query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
        variables: { input: { email: `warm${i}.${suffix}@example.com`, name: 'Warm-up' } },
      });
    }
    const pids = watched(service.pid);
    for (const rate of rates) {
      const cpuBefore = sample(pids);
      const statementsBefore = await statementsSoFar(db.pool);
      const sent = new Map<string, number>();
      const failures: unknown[] = [];
      const total = rate * seconds;
      const started = performance.now();
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        // Open loop: each request leaves at its scheduled time whether or not earlier ones returned.
        const due = started + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
        const sentAt = performance.now();
        const email = `e2e${n++}.${suffix}@example.com`;
        inFlight.push(
          post({
            query: 'mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { eventId } }',
            variables: { input: { email, name: 'Bench' } },
          }).then(
            (body) => {
              const id = body.data?.createCustomer?.eventId;
              if (id) sent.set(id, sentAt);
              else failures.push(body.errors);
            },
            (error: unknown) => {
              failures.push(error instanceof Error ? `${error.message} ${String(error.cause ?? '')}` : error);
            },
          ),
        );
      }
      await Promise.all(inFlight);
      const sendSeconds = (performance.now() - started) / 1000;
      // Above the machine's capacity a backlog builds up; wait it out (up to two minutes) so that
      // "missing" counts events that never arrived, not events that arrived late.
      const deadline = performance.now() + 120_000;
      while ([...sent.keys()].some((id) => !received.has(id)) && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Everything a create caused has happened by now (its event arrived), so the CPU since the
      // first request is what the creates cost, idle polling included.
      const cpu = perUnitMs(cpuBefore, sample(pids), sent.size);
      // Less the one SHOW STATUS of the reading itself.
      const statements = (await statementsSoFar(db.pool)) - statementsBefore - 1;
      const latencies = [...sent]
        .filter(([id]) => received.has(id))
        .map(([id, at]) => (received.get(id) as number) - at);
      latencies.sort((a, b) => a - b);
      report({
        scenario: 'e2e-create-to-handled-event',
        ratePerSecond: rate,
        seconds,
        sent: sent.size,
        failedRequests: failures.length,
        failureSample:
          failures.length > 0 ? String(JSON.stringify(failures[0]) ?? failures[0]).slice(0, 200) : undefined,
        missing: sent.size - latencies.length,
        duplicates,
        p50Ms: ms(percentile(latencies, 50)),
        p95Ms: ms(percentile(latencies, 95)),
        p99Ms: ms(percentile(latencies, 99)),
        p50VsHttpRoundtrip: round(percentile(latencies, 50) / percentile(rtt, 50)),
        achievedRatePerSecond: round(sent.size / sendSeconds, 1),
        cpuMsPerCreate: cpu,
        statementsPerCreate: round(statements / Math.max(1, sent.size), 1),
      });
    }
    unsubscribe();
  } finally {
    http.close();
    await client.dispose();
    await service.stop();
    await db.drop();
    await deleteBrokerObjects(`bench.e2e.${suffix}`, `bench.e2e.worker.${suffix}`);
  }
}
