import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/**
 * Every child of the chaos run leads a process group of its own (`detached`), for two reasons:
 * Ctrl-C in the terminal reaches only the harness, which then stops its children in order
 * instead of having them die unsupervised; and a kill reaches everything the child started
 * (RabbitMQ's start script runs beam.smp, which runs helpers) and nothing else.
 */
export interface GroupChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves once the child has exited (with its code or signal name). */
  readonly exited: Promise<string>;
  hasExited(): boolean;
  /** The last lines it wrote, for error messages. */
  tail(): string;
}

export function spawnGroup(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { readonly logFile: string },
): GroupChild {
  const { logFile, ...spawnOptions } = options;
  const child = spawn(command, args, { ...spawnOptions, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(logFile, { flags: 'a' });
  let recent = '';
  const collect = (chunk: Buffer) => {
    log.write(chunk);
    recent = (recent + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let ended = false;
  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => {
      ended = true;
      recent += `\n${error.message}`;
      resolve(`spawn error: ${error.message}`);
    });
    child.once('exit', (code, signal) => {
      ended = true;
      resolve(signal ?? `exit ${code}`);
    });
  });
  exited.finally(() => log.end()).catch(() => {});
  return {
    child,
    pid: child.pid ?? -1,
    exited,
    hasExited: () => ended,
    tail: () => recent,
  };
}

/** Signals the child's whole process group; false when there is none any more. */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** True while any process of the group led by `pid` is left. */
export function groupAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}
