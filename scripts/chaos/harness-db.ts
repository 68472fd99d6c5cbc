import mysql, { type Connection } from 'mysql2/promise';

/**
 * The harness's own connection to the private database, for progress figures and the final
 * checks. The database is killed during the run, so the connection is made again on demand
 * after it broke.
 */
export class HarnessDb {
  private connection: Connection | undefined;
  private broken = false;

  constructor(private readonly url: string) {}

  async get(): Promise<Connection> {
    if (this.connection && !this.broken) return this.connection;
    await this.close();
    const connection = await mysql.createConnection({ uri: this.url, connectTimeout: 2000, timezone: 'Z' });
    // As the service's own connections: lease expiries are UTC, compared with NOW(3).
    await connection.query("SET time_zone = '+00:00'").catch((error: unknown) => {
      connection.destroy();
      throw error;
    });
    connection.on('error', () => {
      this.broken = true;
    });
    this.broken = false;
    this.connection = connection;
    return connection;
  }

  /** Runs `work` on the connection; a failure marks it for replacement and is rethrown. */
  async with<T>(work: (connection: Connection) => Promise<T>): Promise<T> {
    try {
      return await work(await this.get());
    } catch (error) {
      this.broken = true;
      throw error;
    }
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    if (connection) await connection.end().catch(() => connection.destroy());
  }
}
