import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { socketInodesOf, tcpSockets } from '../scripts/proc-sockets.js';
import { BENCH_AMQP_URL, BENCH_MYSQL_URL } from './support.js';

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

/**
 * The process listening on TCP `port` whose command name is one of `names` (mariadbd, mysqld,
 * beam.smp), or else the first process of those names. By port, because other servers of the
 * same name may run beside the ones the benchmark uses (a fault-injection run starts its own),
 * and their CPU is not the benchmark's.
 */
export function findProcess(names: readonly string[], port?: number): number | undefined {
  const byName = processesNamed(names);
  if (port !== undefined) {
    const listening = new Set(
      tcpSockets()
        .filter((socket) => socket.listening && socket.localPort === port)
        .map((socket) => socket.inode),
    );
    for (const pid of byName) {
      for (const inode of socketInodesOf(pid)) if (listening.has(inode)) return pid;
    }
  }
  return byName[0];
}

function processesNamed(names: readonly string[]): number[] {
  const found: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(entry)) continue;
      try {
        const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
        if (names.includes(comm)) found.push(Number(entry));
      } catch {
        // Gone meanwhile.
      }
    }
  } catch {
    // No /proc.
  }
  return found;
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

/**
 * Read and write system calls a process has made so far (/proc/<pid>/io: syscr + syscw, every
 * thread), undefined if unknown. Counted, not timed, so steady from run to run where CPU time is
 * not: on one machine each socket read or write is a system call, and most of a create's cost
 * outside JavaScript.
 */
export function ioCalls(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(io.match(new RegExp(`^${name}: ([0-9]+)$`, 'm'))?.[1]);
    const calls = field('syscr') + field('syscw');
    return Number.isFinite(calls) ? calls : undefined;
  } catch {
    return undefined;
  }
}

/** Named processes to watch during a benchmark. */
export function watched(servicePid: number | undefined): Record<string, number | undefined> {
  return { node: servicePid, ...servers() };
}

/** The database server and the broker the benchmarks use, found by the ports of their URLs. */
export function servers(): { mariadb: number | undefined; rabbitmq: number | undefined } {
  const portOf = (url: string, fallback: number) => Number(new URL(url).port || fallback);
  return {
    mariadb: findProcess(['mariadbd', 'mysqld'], portOf(BENCH_MYSQL_URL, 3306)),
    rabbitmq: findProcess(['beam.smp'], portOf(BENCH_AMQP_URL, 5672)),
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
