/**
 * `npm run bench [-- write|relay|e2e ...]`: runs the benchmarks (all by default) against the
 * local MySQL and RabbitMQ and prints one JSON line per figure. Not a test: nothing here passes
 * or fails; speeds are reported against a baseline measured in the same run.
 *
 *   BENCH_CREATES      createCustomer calls of the write benchmark (default 5000)
 *   BENCH_EVENTS       events the relay benchmark seeds and drains (default 50000)
 *   BENCH_E2E_RATES    end-to-end creates per second, comma-separated (default 50,100,200)
 *   BENCH_E2E_SECONDS  seconds of each end-to-end rate (default 20)
 *   RELAY_* / WORKER_* the service's tunables, to try other settings
 */
import { runEndToEndBenchmark } from './e2e.js';
import { runRelayBenchmark } from './relay.js';
import { runWriteBenchmark } from './write.js';

const wanted = new Set(process.argv.slice(2));
const all = wanted.size === 0;

if (all || wanted.has('write')) await runWriteBenchmark(Number(process.env.BENCH_CREATES ?? 5000));
if (all || wanted.has('relay')) await runRelayBenchmark(Number(process.env.BENCH_EVENTS ?? 50_000));
if (all || wanted.has('e2e')) {
  const rates = (process.env.BENCH_E2E_RATES ?? '50,100,200').split(',').map(Number);
  await runEndToEndBenchmark(rates, Number(process.env.BENCH_E2E_SECONDS ?? 20));
}
process.exit(0);
