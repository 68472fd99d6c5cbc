import type { ChaosConfig } from './config.js';
import type { PortPool } from './ports.js';
import { type ProcessSpec, type Role, SupervisedProcess } from './supervisor.js';

/** The names the schedule can be printed with before any port is known. */
export function processNames(config: ChaosConfig): Array<{ name: string; role: Role }> {
  const names: Array<{ name: string; role: Role }> = [];
  const add = (role: Role, count: number) => {
    for (let i = 1; i <= count; i++) names.push({ name: `${role}-${i}`, role });
  };
  add('app', config.apps);
  add('relay', config.relays);
  add('worker', config.workers);
  return names;
}

/**
 * Each role in processes of its own, so a kill takes out exactly one role instance and the
 * others must carry on: apps only serve GraphQL, relays only publish, workers only handle.
 */
export async function buildTopology(
  config: ChaosConfig,
  ports: PortPool,
  servers: { readonly databaseUrl: string; readonly amqpUrl: string },
  logDir: string,
): Promise<SupervisedProcess[]> {
  const processes: SupervisedProcess[] = [];
  for (const { name, role } of processNames(config)) {
    const port = await ports.take();
    const spec: ProcessSpec = {
      name,
      role,
      port,
      env: {
        NODE_ENV: 'production',
        LOG_LEVEL: 'warn',
        HOST: '127.0.0.1',
        DATABASE_URL: servers.databaseUrl,
        AMQP_URL: servers.amqpUrl,
        // An app serves /metrics on its own port; the others on METRICS_PORT.
        PORT: String(port),
        METRICS_PORT: String(port),
        RELAY_LEASE_MS: String(config.leaseMs),
        RELAY_CONFIRM_TIMEOUT_MS: String(config.confirmTimeoutMs),
        // Keep every published row for the whole run, so the end can check each one.
        OUTBOX_RETENTION: '1h',
        // A killed process is replaced at once; a long graceful stop would only slow the run.
        SHUTDOWN_TIMEOUT_MS: '5000',
        DB_POOL_SIZE: '10',
      },
    };
    processes.push(new SupervisedProcess(spec, logDir));
  }
  return processes;
}
