/**
 * End to end, the product against the floor (bench/floor/service.mjs: the least work the same
 * pipeline needs, hand-written): createCustomer at steady rates while a graphql-ws subscriber
 * listens to every customer's events; for each create, the time from sending the mutation to
 * receiving its handled event, and the CPU per create of the service, MariaDB and RabbitMQ.
 * Both are driven by the same client with the same accounting, one after the other in each
 * round and in the other order in the next, and every figure is printed as product ÷ floor.
 *
 * Capacity: each steps its rate up until e2e p99 passes 50 ms (or it falls behind); the
 * highest rate that held is its capacity.
 */
import { driveRate, type RateFigures, warmUp } from './load.js';
import { report, round } from './support.js';
import { startTarget, type Target, type TargetKind } from './target.js';

const WARM_UP_CREATES = 300;

async function withTarget<T>(kind: TargetKind, run: (target: Target) => Promise<T>): Promise<T> {
  const target = await startTarget(kind);
  try {
    await warmUp(target, WARM_UP_CREATES);
    return await run(target);
  } finally {
    await target.stop();
  }
}

/** Read and write system calls per create, all watched processes. */
const ioTotal = (f: RateFigures) =>
  Object.values(f.ioCallsPerCreate).reduce<number>((sum, v) => sum + (v ?? Number.NaN), 0);

const mean = (values: readonly number[]) =>
  values.reduce((sum, v) => sum + v, 0) / Math.max(1, values.length);

export async function runEndToEndBenchmark(
  rates: readonly number[],
  seconds: number,
  rounds: number,
): Promise<void> {
  const figures: Record<TargetKind, Map<number, RateFigures[]>> = { product: new Map(), floor: new Map() };
  for (let round = 1; round <= rounds; round++) {
    const order: TargetKind[] = round % 2 === 1 ? ['product', 'floor'] : ['floor', 'product'];
    for (const kind of order) {
      await withTarget(kind, async (target) => {
        for (const rate of rates) {
          const result = await driveRate(target, rate, seconds);
          report({
            scenario: 'e2e',
            target: kind,
            round,
            seconds,
            duplicates: target.duplicates(),
            ...result,
          });
          figures[kind].set(rate, [...(figures[kind].get(rate) ?? []), result]);
        }
      });
    }
  }
  for (const rate of rates) {
    const product = figures.product.get(rate) ?? [];
    const floor = figures.floor.get(rate) ?? [];
    const ratio = (pick: (f: RateFigures) => number | undefined) =>
      round(mean(product.map((f) => pick(f) ?? Number.NaN)) / mean(floor.map((f) => pick(f) ?? Number.NaN)));
    report({
      scenario: 'e2e-product-vs-floor',
      ratePerSecond: rate,
      rounds,
      cpuPerCreateAllProcesses: ratio((f) => f.cpuMsPerCreate.total),
      cpuPerCreateNodeProcess: ratio((f) => f.cpuMsPerCreate.node),
      p50: ratio((f) => f.p50Ms),
      p99: ratio((f) => f.p99Ms),
      productCpuMs: round(mean(product.map((f) => f.cpuMsPerCreate.total ?? Number.NaN))),
      floorCpuMs: round(mean(floor.map((f) => f.cpuMsPerCreate.total ?? Number.NaN))),
      productP50Ms: round(mean(product.map((f) => f.p50Ms)), 1),
      floorP50Ms: round(mean(floor.map((f) => f.p50Ms)), 1),
      productP99Ms: round(mean(product.map((f) => f.p99Ms)), 1),
      floorP99Ms: round(mean(floor.map((f) => f.p99Ms)), 1),
      productIoCallsPerCreate: round(mean(product.map((f) => ioTotal(f))), 1),
      floorIoCallsPerCreate: round(mean(floor.map((f) => ioTotal(f))), 1),
    });
  }
}

/**
 * The highest rate, stepping by `step`, at which e2e p99 stays ≤ `p99LimitMs` with nothing
 * missing. A step that fails is tried again, up to `tries` times in all, before the search ends:
 * on a shared machine one burst of someone else's work can fail a step the target holds.
 */
async function capacityOf(
  kind: TargetKind,
  step: number,
  seconds: number,
  p99LimitMs: number,
  tries: number,
): Promise<number> {
  return withTarget(kind, async (target) => {
    let held = 0;
    for (let rate = step; rate <= 40 * step; rate += step) {
      let ok = false;
      for (let attempt = 1; attempt <= tries && !ok; attempt++) {
        const result = await driveRate(target, rate, seconds);
        report({ scenario: 'capacity-step', target: kind, seconds, attempt, ...result });
        ok =
          result.p99Ms <= p99LimitMs &&
          result.missing === 0 &&
          result.failedRequests === 0 &&
          result.achievedRatePerSecond >= 0.95 * rate;
      }
      if (!ok) break;
      held = rate;
    }
    return held;
  });
}

export async function runCapacityBenchmark(step: number, seconds: number, tries: number): Promise<void> {
  const p99LimitMs = 50;
  const product = await capacityOf('product', step, seconds, p99LimitMs, tries);
  const floor = await capacityOf('floor', step, seconds, p99LimitMs, tries);
  report({
    scenario: 'capacity-product-vs-floor',
    p99LimitMs,
    stepPerSecond: step,
    tries,
    productPerSecond: product,
    floorPerSecond: floor,
    // No ratio when the floor held no step at all: the machine was too busy to say.
    ratio: floor > 0 ? round(product / floor) : null,
  });
}
