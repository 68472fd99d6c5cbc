import { HintListener } from '../broker/hint.js';
import { ConfirmPublisher } from '../broker/publisher.js';
import { declareWorkerQueues } from '../broker/topology.js';
import type { RelayConfig } from '../config/index.js';
import type { RoleDeps, RunningRole } from '../roles.js';
import { Relay } from './relay.js';

export interface RelayRole extends RunningRole {
  /** The relay; writers in this process hand their events to it (outbox/handoff.ts). */
  readonly relay: Relay;
}

/**
 * The relay role: a confirm publisher on the role's own broker connection, the relay's lanes,
 * and a listener for hints from writers in other processes.
 */
export function startRelayRole(
  { db, log, metrics, topology, broker, instance }: RoleDeps,
  config: RelayConfig,
  /** Whether a claimed batch needs the durability barrier (outbox/durability.ts). */
  { barrier }: { readonly barrier: boolean },
): RelayRole {
  const publisher = new ConfirmPublisher({
    broker,
    exchange: topology.exchange,
    confirmTimeoutMs: config.confirmTimeoutMs,
    log,
    // Declared by the relay too: an event published before any worker ever ran would otherwise
    // be unroutable.
    setup: (channel) => declareWorkerQueues(channel, topology),
  });
  const relay = new Relay({
    db,
    publisher,
    log,
    metrics,
    owner: instance,
    durabilityBarrier: barrier,
    exchange: topology.exchange,
    batchSize: config.batchSize,
    lanes: config.lanes,
    pollIntervalMs: config.pollIntervalMs,
    leaseMs: config.leaseMs,
    retry: {
      maxAttempts: config.maxAttempts,
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
    },
  });
  relay.start();
  const listener = new HintListener(broker, topology.relayHintExchange, instance, log, () => relay.wake());
  listener.start();
  return {
    relay,
    async stop() {
      // Side by side: each may wait a moment for a broker that does not answer.
      await Promise.all([listener.stop(), relay.stop()]);
      await publisher.close();
    },
  };
}
