/**
 * `npm run bench [-- relay|e2e|write ...]`: runs the benchmarks (all by default) against the
 * local MySQL and RabbitMQ and prints one JSON line per figure. Not a test: nothing here passes
 * or fails; speeds are reported against a baseline measured in the same run.
 *
 *   BENCH_EVENTS   events the relay benchmark seeds and drains (default 50000)
 */
import { runRelayBenchmark } from './relay.js';

const wanted = new Set(process.argv.slice(2));
const all = wanted.size === 0;
const events = Number(process.env.BENCH_EVENTS ?? 50_000);

if (all || wanted.has('relay')) await runRelayBenchmark(events);
process.exit(0);
