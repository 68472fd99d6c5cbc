import type { BrokerConnection } from './broker/connection.js';
import type { Topology } from './broker/topology.js';
import type { Database } from './db/client.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics/index.js';

/**
 * What service.ts gives every role it starts, besides the role's own slice of the
 * configuration (config.app, config.relay, config.worker), which it takes as a second argument.
 */
export interface RoleDeps {
  readonly db: Database;
  /** The role's logger (bound to its name). */
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly topology: Topology;
  /** The role's own broker connection: a publisher throttled by RabbitMQ must not slow a consumer's acks. */
  readonly broker: BrokerConnection;
  /** host:pid:random: names broker connections and relay leases. */
  readonly instance: string;
}

/** A started role; service.ts stops roles in reverse start order. */
export interface RunningRole {
  stop(): Promise<void>;
}
