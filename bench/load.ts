/**
 * One open-loop load at a steady rate against a target: each create leaves at its scheduled
 * time whether or not earlier ones returned, and its latency is the time from sending the
 * mutation to its handled event reaching the subscriber. CPU per create is read from /proc for
 * the service, MariaDB and RabbitMQ; the benchmark's own CPU is reported beside it, not in it.
 */
import { ioCalls, perUnitMs, sample, watched } from './cpu.js';
import { percentile, round } from './support.js';
import type { Target } from './target.js';

export interface RateFigures {
  readonly ratePerSecond: number;
  readonly sent: number;
  readonly failedRequests: number;
  readonly missing: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly achievedRatePerSecond: number;
  readonly cpuMsPerCreate: Record<string, number | undefined>;
  /** Read and write system calls per create of each watched process (see ioCalls). */
  readonly ioCallsPerCreate: Record<string, number | undefined>;
  /** The benchmark process's own CPU per create: kept out of cpuMsPerCreate. */
  readonly clientCpuMsPerCreate: number;
  readonly failureSample?: string;
}

let emails = 0;

export async function driveRate(target: Target, rate: number, seconds: number): Promise<RateFigures> {
  const pids = watched(target.pid);
  const cpuBefore = sample(pids);
  const ioBefore = ioSample(pids);
  const clientBefore = process.cpuUsage();
  const sent = new Map<string, number>();
  const failures: unknown[] = [];
  const total = Math.round(rate * seconds);
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const sentAt = performance.now();
    inFlight.push(
      target.create(`load${emails++}.${process.pid}@example.com`).then(
        (id) => {
          if (id) sent.set(id, sentAt);
          else failures.push('no eventId');
        },
        (error: unknown) => {
          failures.push(error instanceof Error ? error.message : error);
        },
      ),
    );
  }
  await Promise.all(inFlight);
  const sendSeconds = (performance.now() - started) / 1000;
  // Above capacity a backlog builds up: wait it out (two minutes at most) so that "missing"
  // counts events that never arrived, not events that arrived late.
  const deadline = performance.now() + 120_000;
  while ([...sent.keys()].some((id) => !target.received.has(id)) && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const cpu = perUnitMs(cpuBefore, sample(pids), sent.size);
  const ioAfter = ioSample(pids);
  const client = process.cpuUsage(clientBefore);
  const latencies = [...sent]
    .filter(([id]) => target.received.has(id))
    .map(([id, at]) => (target.received.get(id) as number) - at)
    .sort((a, b) => a - b);
  return {
    ratePerSecond: rate,
    sent: sent.size,
    failedRequests: failures.length,
    missing: sent.size - latencies.length,
    p50Ms: round(percentile(latencies, 50), 1),
    p95Ms: round(percentile(latencies, 95), 1),
    p99Ms: round(percentile(latencies, 99), 1),
    achievedRatePerSecond: round(sent.size / sendSeconds, 1),
    cpuMsPerCreate: cpu,
    ioCallsPerCreate: Object.fromEntries(
      Object.entries(ioAfter).map(([name, after]) => {
        const before = ioBefore[name];
        const calls = after === undefined || before === undefined ? Number.NaN : after - before;
        return [name, Number.isFinite(calls) ? round(calls / Math.max(1, sent.size), 1) : undefined];
      }),
    ),
    clientCpuMsPerCreate: round((client.user + client.system) / 1000 / Math.max(1, sent.size)),
    failureSample: failures.length > 0 ? String(JSON.stringify(failures[0])).slice(0, 200) : undefined,
  };
}

function ioSample(pids: Record<string, number | undefined>): Record<string, number | undefined> {
  return Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, ioCalls(pid)]));
}

/** Unmeasured creates, one at a time: JIT compilation and cold caches are paid here. */
export async function warmUp(target: Target, creates: number): Promise<void> {
  for (let i = 0; i < creates; i++) await target.create(`warm${emails++}.${process.pid}@example.com`);
}
