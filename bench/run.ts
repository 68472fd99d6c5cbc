/**
 * `npm run bench [-- write|relay|drain|e2e|capacity|big-table|telemetry ...]`: runs the benchmarks (all
 * but telemetry by default) against the local MySQL and RabbitMQ and prints one JSON line per
 * figure. Not a test: nothing here passes or fails; speeds are reported against a baseline
 * measured in the same run.
 *
 *   BENCH_CREATES      createCustomer calls of the write benchmark (default 5000)
 *   BENCH_EVENTS       events the relay benchmark seeds and drains (default 100000)
 *   BENCH_DRAIN_EVENTS / BENCH_DRAIN_ROUNDS  the worker drain's backlog and its rounds (5000, 2);
 *                      BENCH_DRAIN_BASELINE another build's main.js to drain beside it (bench/drain.ts)
 *   BENCH_E2E_RATES    end-to-end creates per second, comma-separated (default 100,200,400)
 *   BENCH_E2E_SECONDS  seconds of each end-to-end rate (default 20)
 *   BENCH_E2E_ROUNDS   rounds of product and floor, alternating which goes first (default 2)
 *   BENCH_CAPACITY_STEP / BENCH_CAPACITY_SECONDS  the capacity search's rate step and its length (100, 10)
 *   BENCH_CAPACITY_TRIES  tries of a step before the search ends (default 2)
 *   BENCH_BIG_PUBLISHED published rows the big-table benchmark seeds (default 1000000)
 *   BENCH_BIG_BACKLOG  pending events it claims and drains on the empty and the big table (default 20000)
 *   BENCH_TELEMETRY_CREATES / BENCH_TELEMETRY_ROUNDS  creates per slice and rounds of the
 *                      telemetry benchmark (2000, 5); not part of the default run
 *   RELAY_* / WORKER_* the service's tunables, to try other settings
 */
import { runBigTableBenchmark } from './big-table.js';
import { runDrainBenchmark } from './drain.js';
import { runCapacityBenchmark, runEndToEndBenchmark } from './e2e.js';
import { runRelayBenchmark } from './relay.js';
import { runTelemetryBenchmark } from './telemetry.js';
import { runWriteBenchmark } from './write.js';

const wanted = new Set(process.argv.slice(2));
const all = wanted.size === 0;

if (all || wanted.has('write')) await runWriteBenchmark(Number(process.env.BENCH_CREATES ?? 5000));
if (all || wanted.has('relay')) await runRelayBenchmark(Number(process.env.BENCH_EVENTS ?? 100_000));
if (all || wanted.has('drain')) {
  await runDrainBenchmark(
    Number(process.env.BENCH_DRAIN_EVENTS ?? 5000),
    Number(process.env.BENCH_DRAIN_ROUNDS ?? 2),
  );
}
if (all || wanted.has('e2e')) {
  const rates = (process.env.BENCH_E2E_RATES ?? '100,200,400').split(',').map(Number);
  await runEndToEndBenchmark(
    rates,
    Number(process.env.BENCH_E2E_SECONDS ?? 20),
    Number(process.env.BENCH_E2E_ROUNDS ?? 2),
  );
}
if (all || wanted.has('capacity')) {
  await runCapacityBenchmark(
    Number(process.env.BENCH_CAPACITY_STEP ?? 100),
    Number(process.env.BENCH_CAPACITY_SECONDS ?? 10),
    Number(process.env.BENCH_CAPACITY_TRIES ?? 2),
  );
}
if (all || wanted.has('big-table')) {
  await runBigTableBenchmark(
    Number(process.env.BENCH_BIG_PUBLISHED ?? 1_000_000),
    Number(process.env.BENCH_BIG_BACKLOG ?? 20_000),
  );
}
if (wanted.has('telemetry')) {
  await runTelemetryBenchmark(
    Number(process.env.BENCH_TELEMETRY_CREATES ?? 2000),
    Number(process.env.BENCH_TELEMETRY_ROUNDS ?? 5),
  );
}
process.exit(0);
