import type { WorkerConfig } from '../config/index.js';
import type { HistoryRow } from '../history/store.js';
import type { Handlers } from '../outbox/handler.js';
import type { OutboxWriter } from '../outbox/writer.js';
import type { RoleDeps, RunningRole } from '../roles.js';
import { Worker } from './worker.js';

export interface WorkerRole extends RunningRole {
  readonly worker: Worker;
}

export interface WorkerRoleDeps extends RoleDeps {
  readonly handlers: Handlers;
  readonly writer: OutboxWriter;
  /** Given the history rows of each commit. */
  readonly onHistory: (rows: readonly HistoryRow[]) => void;
}

/** The worker role: one consumer on the role's own broker connection, running the handlers it is given. */
export function startWorkerRole(deps: WorkerRoleDeps, config: WorkerConfig): WorkerRole {
  const worker = new Worker({
    db: deps.db,
    broker: deps.broker,
    topology: deps.topology,
    log: deps.log,
    metrics: deps.metrics,
    handlers: deps.handlers,
    writer: deps.writer,
    onHistory: deps.onHistory,
    ...config,
  });
  worker.start();
  return { worker, stop: () => worker.stop() };
}
