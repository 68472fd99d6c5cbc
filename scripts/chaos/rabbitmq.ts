import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PROGRAMS } from './prerequisites.js';
import { type GroupChild, groupAlive, signalGroup, spawnGroup } from './process-group.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/**
 * A RabbitMQ node of the run's own. It shares only epmd with the system's broker (epmd is
 * meant to be shared); its node name, AMQP and distribution ports, data, logs, config, enabled
 * plugins (none: no management port to clash) and Erlang cookie (HOME) are private.
 * RABBITMQ_CONF_ENV_FILE points away from /etc/rabbitmq/rabbitmq-env.conf, which names the
 * system node.
 */
export class PrivateRabbitMq {
  private server: GroupChild | undefined;
  readonly node: string;

  constructor(
    private readonly dir: string,
    readonly port: number,
    private readonly distPort: number,
  ) {
    this.node = `chaos-${randomBytes(4).toString('hex')}@localhost`;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.server && !this.server.hasExited() ? this.server.pid : undefined;
  }

  private get env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      LANG: 'C.UTF-8',
      HOME: join(this.dir, 'home'),
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(this.dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_PID_FILE: join(this.dir, 'rabbitmq.pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      // No busy-waiting schedulers: on a small shared box they burn the CPU the service
      // processes (and the broker's own restart) need. RabbitMQ recommends this for shared hosts.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:
        '-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none',
    };
  }

  async initialize(): Promise<void> {
    for (const sub of ['home', 'mnesia', 'log']) await mkdir(join(this.dir, sub), { recursive: true });
    await writeFile(join(this.dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${this.port}\n`);
    await writeFile(join(this.dir, 'enabled_plugins'), '[].\n');
    await writeFile(join(this.dir, 'rabbitmq-env.conf'), '');
  }

  private ctl(args: readonly string[], timeoutMs: number) {
    return run(PROGRAMS.rabbitmqctl.path, ['-n', this.node, ...args], { env: this.env, timeout: timeoutMs });
  }

  /** Starts the node (a restart after kill -9 recovers its data) and waits until it takes AMQP. */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.pid !== undefined) throw new Error('RabbitMQ is already running');
    const server = spawnGroup(PROGRAMS.rabbitmqServer.path, [], {
      env: this.env,
      cwd: this.dir,
      logFile: join(this.dir, 'rabbitmq-server.log'),
    });
    this.server = server;
    // The AMQP listener opens late in the boot, and probing it is cheap; each rabbitmqctl call
    // starts an Erlang VM (about a second of CPU), so await_startup runs once the port is open,
    // to be sure the boot has finished.
    await waitFor(
      `RabbitMQ node ${this.node}`,
      async () => {
        if (server.hasExited()) throw new Error(`rabbitmq-server exited at start:\n${server.tail()}`);
        if (!(await portOpen(this.port))) return false;
        await this.ctl(['await_startup', '--timeout', '30'], 35_000);
        return true;
      },
      { timeoutMs, intervalMs: 100 },
    ).catch((error: Error) => {
      throw server.hasExited() ? new Error(`rabbitmq-server exited at start:\n${server.tail()}`) : error;
    });
  }

  /** A graceful stop (`rabbitmqctl stop`), falling back to kill -9 after 30 s. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server || server.hasExited()) return;
    await this.ctl(['stop'], 30_000).catch(() => {});
    await this.kill();
  }

  /**
   * kill -9 of the node's process group (the start script, beam.smp and its helpers), then waits
   * until no process of the group is left and the port is closed, so a restart does not find
   * the node name still registered with epmd or the port still bound.
   */
  async kill(): Promise<void> {
    const server = this.server;
    if (!server) return;
    // Only while the group's leader lives: once it is gone and reaped its pid could in theory
    // lead someone else's group, and this run never signals what it did not start.
    if (!server.hasExited()) signalGroup(server.pid, 'SIGKILL');
    await server.exited;
    await waitFor(
      `RabbitMQ ${this.node} to be gone`,
      async () => !groupAlive(server.pid) && !(await portOpen(this.port)),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  }

  /** Synchronous, for the last-resort cleanup. */
  killNow(): void {
    if (this.server && !this.server.hasExited()) signalGroup(this.server.pid, 'SIGKILL');
  }
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
