import type { ServiceProcess } from './process.js';
import { waitFor } from './wait.js';

/** The JSON log lines a child wrote so far (anything else it printed is skipped). */
export function logLines(proc: ServiceProcess): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of proc.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line still being written.
    }
  }
  return lines;
}

const hasExited = (proc: ServiceProcess) => proc.child.exitCode !== null || proc.child.signalCode !== null;

/** Waits for a log line with this `msg`; fails at once, with the output, if the child exits first. */
export async function waitForLog(
  proc: ServiceProcess,
  msg: string,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  return waitFor(
    `log "${msg}" from pid ${proc.pid}`,
    () => {
      const line = logLines(proc).find((l) => l.msg === msg);
      if (line) return line;
      if (hasExited(proc)) {
        throw new Error(`pid ${proc.pid} exited before logging "${msg}":\n${proc.output().slice(-4000)}`);
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/**
 * SIGTERM, then waits for the exit; SIGKILL when it does not come within `timeoutMs`.
 * Resolves with the exit code (or the signal that ended it).
 */
export async function stopProcess(proc: ServiceProcess, timeoutMs = 20_000): Promise<number | string> {
  if (!hasExited(proc)) proc.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const result = await Promise.race([proc.exited, timedOut]);
  clearTimeout(timer);
  if (result !== 'timeout') return result;
  proc.child.kill('SIGKILL');
  await proc.exited;
  return `no exit within ${timeoutMs} ms of SIGTERM (killed)`;
}
