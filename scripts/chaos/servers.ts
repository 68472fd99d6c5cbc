import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { PrivateMariaDb } from './mariadb.js';
import type { PortPool } from './ports.js';
import { PrivateRabbitMq } from './rabbitmq.js';

/**
 * A run's own MariaDB and RabbitMQ under `dir`, on free ports, each killed by the cleanup (and by
 * its last resort when the harness dies) so that no run leaves a server behind. Not yet started.
 */
export async function privateServers(
  dir: string,
  ports: PortPool,
  cleanup: Cleanup,
): Promise<{ db: PrivateMariaDb; mq: PrivateRabbitMq }> {
  const db = new PrivateMariaDb(join(dir, 'mariadb'), await ports.take());
  const mq = new PrivateRabbitMq(join(dir, 'rabbitmq'), await ports.take(), await ports.take());
  cleanup.add('MariaDB', () => db.kill());
  cleanup.add('RabbitMQ', () => mq.kill());
  cleanup.addLastResort(() => db.killNow());
  cleanup.addLastResort(() => mq.killNow());
  return { db, mq };
}
