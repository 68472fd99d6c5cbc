import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { PROGRAMS } from './prerequisites.js';
import { type GroupChild, signalGroup, spawnGroup } from './process-group.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/**
 * A MariaDB server of the run's own: its data directory, socket and port under the run's
 * temporary folder, root without a password on 127.0.0.1. `--no-defaults` keeps the system's
 * my.cnf (port 3306, its datadir) out of it entirely.
 */
export class PrivateMariaDb {
  private server: GroupChild | undefined;
  private readonly datadir: string;

  constructor(
    private readonly dir: string,
    readonly port: number,
    /** More server options, after the defaults below. */
    private readonly extraArgs: readonly string[] = [],
  ) {
    this.datadir = join(dir, 'data');
  }

  /** `database` is created by the service itself at start. */
  url(database = 'outbox'): string {
    return `mysql://root@127.0.0.1:${this.port}/${database}`;
  }

  get pid(): number | undefined {
    return this.server && !this.server.hasExited() ? this.server.pid : undefined;
  }

  async initialize(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await run(PROGRAMS.mariadbInstallDb.path, [
      '--no-defaults',
      `--datadir=${this.datadir}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--user=root',
    ]).catch((error: Error & { stderr?: string }) => {
      throw new Error(`mariadb-install-db failed: ${error.stderr ?? error.message}`, { cause: error });
    });
  }

  /** Starts the server on the same data directory (after a kill: crash recovery) and waits for SQL. */
  async start(timeoutMs = 120_000): Promise<void> {
    if (this.pid !== undefined) throw new Error('MariaDB is already running');
    const server = spawnGroup(
      PROGRAMS.mariadbd.path,
      [
        '--no-defaults',
        `--datadir=${this.datadir}`,
        `--port=${this.port}`,
        `--socket=${join(this.dir, 'mariadb.sock')}`,
        `--pid-file=${join(this.dir, 'mariadb.pid')}`,
        '--bind-address=127.0.0.1',
        '--user=root',
        '--skip-name-resolve',
        // Small: six service processes, the harness and RabbitMQ share two cores and the memory.
        '--innodb-buffer-pool-size=128M',
        '--max-connections=500',
        // What the no-lost-event guarantee needs (docs/durability.md), stated rather than left to
        // the default: every acknowledged commit's redo log on disk. No binary log: the relays
        // then commit their durability barrier after each claim, the path under test.
        '--innodb-flush-log-at-trx-commit=1',
        '--skip-log-bin',
        ...this.extraArgs,
      ],
      { logFile: join(this.dir, 'mariadb.log') },
    );
    this.server = server;
    await waitFor(
      `MariaDB on 127.0.0.1:${this.port}`,
      async () => {
        if (server.hasExited()) throw new Error(`mariadbd exited at start:\n${server.tail()}`);
        const connection = await mysql.createConnection({ uri: this.url(''), connectTimeout: 5000 });
        try {
          await connection.query('SELECT 1');
          return true;
        } finally {
          await connection.end().catch(() => {});
        }
      },
      { timeoutMs, intervalMs: 100 },
    ).catch((error: Error) => {
      throw server.hasExited() ? new Error(`mariadbd exited at start:\n${server.tail()}`) : error;
    });
  }

  /** kill -9, and waits until the process is gone so a restart finds the data directory free. */
  async kill(): Promise<void> {
    const server = this.server;
    if (!server || server.hasExited()) return;
    signalGroup(server.pid, 'SIGKILL');
    await server.exited;
  }

  /** Synchronous, for the last-resort cleanup. */
  killNow(): void {
    if (this.server && !this.server.hasExited()) signalGroup(this.server.pid, 'SIGKILL');
  }
}
