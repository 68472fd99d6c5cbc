import type { Handlers } from '../outbox/handler.js';
import type { Waker } from '../outbox/handoff.js';
import type { OutboxWriter } from '../outbox/writer.js';
import type { RoleDeps, RunningRole } from '../roles.js';
import { Worker } from './worker.js';

export interface WorkerRole extends RunningRole {
  readonly worker: Worker;
}

export interface WorkerRoleDeps extends RoleDeps {
  readonly handlers: Handlers;
  readonly writer: OutboxWriter;
  /** Told after each commit that added to the history. */
  readonly historyWaker: Waker;
}

/** The worker role: one consumer on the role's own broker connection, running the handlers it is given. */
export function startWorkerRole(deps: WorkerRoleDeps): WorkerRole {
  const { config } = deps;
  const worker = new Worker({
    db: deps.db,
    broker: deps.broker,
    topology: deps.topology,
    log: deps.log,
    metrics: deps.metrics,
    handlers: deps.handlers,
    writer: deps.writer,
    historyWaker: deps.historyWaker,
    prefetch: config.worker.prefetch,
    maxAttempts: config.worker.maxAttempts,
    retryDelayMs: config.worker.retryDelayMs,
    orderWaitMs: config.worker.orderWaitMs,
    maxMessageBytes: config.worker.maxMessageBytes,
    confirmTimeoutMs: config.relay.confirmTimeoutMs,
  });
  worker.start();
  return { worker, stop: () => worker.stop() };
}
