import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TEST_AMQP_URL } from './env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything the process wrote so far (JSON log lines). */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  readonly exited: Promise<number | string>;
}

/** Runs the service as a real child process, exactly as `npm start -- <roles>` would. */
export function spawnService(roles: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', roles], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  return { child, pid: child.pid as number, output: () => output, exited };
}

/**
 * The environment of a service process in a test: the test's database, its own exchange and
 * worker queue, any free port for GraphQL and for /metrics; `extra` adds or overrides.
 */
export function childEnv(
  databaseUrl: string,
  exchange: string,
  workerQueue: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    METRICS_PORT: '0',
    DATABASE_URL: databaseUrl,
    AMQP_URL: TEST_AMQP_URL,
    OUTBOX_EXCHANGE: exchange,
    WORKER_QUEUE: workerQueue,
    ...extra,
  };
}
