import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Pool } from 'mysql2/promise';

/**
 * CPU time of the processes a create goes through, read from /proc: the service itself, the
 * database server and the broker. Read before and after a steady load, the difference divided
 * by the creates is the CPU one create costs on each, which is what a regression shows in.
 * Linux only; elsewhere the figures are left out.
 */
const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The first process whose command name is one of `names` (e.g. mariadbd, mysqld, beam.smp). */
export function findProcess(names: readonly string[]): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(entry)) continue;
      try {
        const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
        if (names.includes(comm)) return Number(entry);
      } catch {
        // Gone meanwhile.
      }
    }
  } catch {
    // No /proc.
  }
  return undefined;
}

/** User + system CPU seconds a process (with its threads) has used so far; undefined if unknown. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Named processes to watch during a benchmark. */
export function watched(servicePid: number | undefined): Record<string, number | undefined> {
  return {
    node: servicePid,
    mariadb: findProcess(['mariadbd', 'mysqld']),
    rabbitmq: findProcess(['beam.smp']),
  };
}

/** CPU seconds of each watched process now. */
export function sample(pids: Record<string, number | undefined>): Record<string, number | undefined> {
  return Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
}

/** Milliseconds of CPU per unit of work between two samples, per process and in total. */
export function perUnitMs(
  before: Record<string, number | undefined>,
  after: Record<string, number | undefined>,
  units: number,
): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  let total = 0;
  let complete = true;
  for (const name of Object.keys(before)) {
    const a = before[name];
    const b = after[name];
    if (a === undefined || b === undefined || units === 0) {
      out[name] = undefined;
      complete = false;
      continue;
    }
    out[name] = Math.round(((b - a) * 1000 * 100) / units) / 100;
    total += ((b - a) * 1000) / units;
  }
  out.total = complete ? Math.round(total * 100) / 100 : undefined;
  return out;
}

/**
 * Statements the database server has received so far (its `Questions` counter). Deterministic
 * where CPU time is noisy: the difference over a load, per create, shows a round trip added or
 * saved at once. It counts every client of the server, so read it with nothing else running.
 */
export async function statementsSoFar(pool: Pool): Promise<number> {
  const [rows] = await pool.query("SHOW GLOBAL STATUS LIKE 'Questions'");
  return Number((rows as Array<{ Value: string }>)[0]?.Value ?? Number.NaN);
}
