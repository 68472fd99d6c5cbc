import amqp from 'amqplib';
import mysql from 'mysql2/promise';
import { TEST_AMQP_URL, TEST_MYSQL_URL } from './env.js';

/** Vitest global setup: stop at once, saying what is missing, when a dependency is down. */
export default async function preflight(): Promise<void> {
  const problems: string[] = [];
  try {
    const connection = await mysql.createConnection({ uri: TEST_MYSQL_URL, connectTimeout: 3000 });
    await connection.end();
  } catch (error) {
    problems.push(
      `MySQL/MariaDB is not reachable at ${TEST_MYSQL_URL} (${(error as Error).message}).\n` +
        '  Start it, e.g.: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd\n' +
        '  or: docker compose up -d mysql, then TEST_DATABASE_URL=mysql://root:outbox@127.0.0.1:3306',
    );
  }
  try {
    const connection = await amqp.connect(TEST_AMQP_URL, { timeout: 3000 });
    await connection.close();
  } catch (error) {
    problems.push(
      `RabbitMQ is not reachable at ${TEST_AMQP_URL} (${(error as Error).message}).\n` +
        '  Start it, e.g.: rabbitmq-server -detached\n' +
        '  or: docker compose up -d rabbitmq, then TEST_AMQP_URL=amqp://outbox:outbox@127.0.0.1:5672',
    );
  }
  if (problems.length > 0) {
    throw new Error(`The tests need a real MySQL and RabbitMQ.\n${problems.join('\n')}`);
  }
}
