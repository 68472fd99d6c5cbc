import type { Logger } from '../../log.js';
import { type Metrics, secondsSince } from '../../metrics/index.js';
import type { Policy } from '../pipeline.js';
import { traceOutcome } from '../tracing.js';

/**
 * Outermost: counts every delivery by its outcome in worker_messages_total, `requeued` when
 * it could not be settled and goes back to the queue; for a handled event, the time from its
 * occurrence to the handling's commit.
 */
export const countOutcomes =
  (metrics: Metrics, log: Logger): Policy =>
  (next) =>
  async (delivery) => {
    const startedAt = performance.now();
    try {
      const outcome = await next(delivery);
      metrics.workerHandled.inc({ outcome });
      traceOutcome(outcome);
      const now = Date.now();
      for (const row of delivery.history ?? [])
        metrics.handleLatency.observe(secondsSince(row.occurredAt, now));
      log.debug(
        {
          messageId: delivery.message.properties.messageId,
          outcome,
          ms: Math.round((performance.now() - startedAt) * 100) / 100,
        },
        'message settled',
      );
      return outcome;
    } catch (error) {
      metrics.workerHandled.inc({ outcome: 'requeued' });
      traceOutcome('requeued', error instanceof Error ? error.message : String(error));
      throw error;
    }
  };
