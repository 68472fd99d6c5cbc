import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GroupChild, signalGroup, spawnGroup } from './process-group.js';
import { say } from './report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export type Role = 'app' | 'relay' | 'worker';

export interface ProcessSpec {
  /** e.g. `app-1`, `relay-2`: what the schedule and the tables call it. */
  readonly name: string;
  readonly role: Role;
  /** The app's HTTP port, or the metrics port of a relay or worker. */
  readonly port: number;
  readonly env: Readonly<Record<string, string>>;
}

/** How one incarnation of a process ended. */
export interface ExitRecord {
  readonly at: number;
  readonly incarnation: number;
  /** `exit 1`, `SIGKILL`, … */
  readonly how: string;
  /** True when the harness caused it (kill -9 in the schedule, or the final stop). */
  readonly byHarness: boolean;
  /** Its last log lines when it ended on its own: why a process gave up. */
  readonly tail: string;
}

/** A quick restart after a kill, slower ones while a process keeps failing at start. */
const RESTART_DELAYS_MS = [300, 1000, 2000, 3000];
/** An incarnation that lived this long resets the restart back-off. */
const STABLE_AFTER_MS = 10_000;

/**
 * One service process (`node --import tsx src/main.ts <role>`) under supervision: restarted a
 * moment after it ends, whatever the reason (a scheduled kill -9, or giving up at start while
 * the database is away), until the run shuts it down.
 */
export class SupervisedProcess {
  readonly exits: ExitRecord[] = [];
  incarnation = 0;
  startedAt = 0;
  private current: GroupChild | undefined;
  private stoppedBySignal = false;
  private killedByHarness = false;
  private shuttingDown = false;
  private failuresInARow = 0;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly spec: ProcessSpec,
    private readonly logDir: string,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get role(): Role {
    return this.spec.role;
  }

  /** Running (possibly frozen by SIGSTOP): a pid is there. */
  get running(): boolean {
    return this.current !== undefined && !this.current.hasExited();
  }

  get frozen(): boolean {
    return this.running && this.stoppedBySignal;
  }

  get pid(): number | undefined {
    return this.running ? this.current?.pid : undefined;
  }

  /** `/readyz` of an app (checks its dependencies), `/healthz` of a relay or worker. */
  get healthUrl(): string {
    const path = this.spec.role === 'app' ? 'readyz' : 'healthz';
    return `http://127.0.0.1:${this.spec.port}/${path}`;
  }

  get metricsUrl(): string {
    return `http://127.0.0.1:${this.spec.port}/metrics`;
  }

  start(): void {
    if (this.shuttingDown || this.running) return;
    this.incarnation += 1;
    this.startedAt = Date.now();
    this.stoppedBySignal = false;
    this.killedByHarness = false;
    const incarnation = this.incarnation;
    const child = spawnGroup(process.execPath, ['--import', 'tsx', 'src/main.ts', this.spec.role], {
      cwd: ROOT,
      env: { ...process.env, ...this.spec.env },
      logFile: join(this.logDir, `${this.spec.name}.log`),
    });
    this.current = child;
    child.exited.then((how) => this.onExit(child, incarnation, how)).catch(() => {});
  }

  private onExit(child: GroupChild, incarnation: number, how: string): void {
    const byHarness = this.killedByHarness || this.shuttingDown;
    this.exits.push({ at: Date.now(), incarnation, how, byHarness, tail: byHarness ? '' : child.tail() });
    if (this.shuttingDown) return;
    if (!byHarness) {
      const lastLine = lastLogMessage(child.tail());
      say(`${this.name} ended on its own (${how})${lastLine ? `: ${lastLine}` : ''}; restarting`);
    }
    const lived = Date.now() - this.startedAt;
    this.failuresInARow = byHarness || lived > STABLE_AFTER_MS ? 0 : this.failuresInARow + 1;
    const wait = RESTART_DELAYS_MS[Math.min(this.failuresInARow, RESTART_DELAYS_MS.length - 1)] ?? 1000;
    this.restartTimer = setTimeout(() => this.start(), wait);
  }

  /** kill -9; false when there was no process to kill (it is between incarnations). */
  kill(): boolean {
    if (!this.current || !this.running) return false;
    this.killedByHarness = true;
    return signalGroup(this.current.pid, 'SIGKILL');
  }

  /** SIGSTOP: the process freezes mid-work, holding its connections and leases. */
  freeze(): number | undefined {
    if (!this.current || !this.running) return undefined;
    if (!signalGroup(this.current.pid, 'SIGSTOP')) return undefined;
    this.stoppedBySignal = true;
    return this.incarnation;
  }

  /** SIGCONT, only to the incarnation that was frozen (a killed one has been replaced). */
  thaw(incarnation: number): boolean {
    if (!this.current || this.incarnation !== incarnation || !this.running) return false;
    this.stoppedBySignal = false;
    return signalGroup(this.current.pid, 'SIGCONT');
  }

  /** Ends supervision: no more restarts, SIGKILL (the data does not matter after the run). */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    clearTimeout(this.restartTimer);
    const child = this.current;
    if (!child || child.hasExited()) return;
    signalGroup(child.pid, 'SIGCONT');
    signalGroup(child.pid, 'SIGKILL');
    await child.exited;
  }

  /** Synchronous, for the last-resort cleanup. */
  killNow(): void {
    this.shuttingDown = true;
    clearTimeout(this.restartTimer);
    if (this.current && !this.current.hasExited()) {
      signalGroup(this.current.pid, 'SIGCONT');
      signalGroup(this.current.pid, 'SIGKILL');
    }
  }

  /** Answers its health check now (a frozen process does not: the request times out). */
  async healthy(timeoutMs = 1000): Promise<boolean> {
    if (!this.running) return false;
    try {
      const response = await fetch(this.healthUrl, { signal: AbortSignal.timeout(timeoutMs) });
      await response.arrayBuffer();
      return response.ok;
    } catch {
      return false;
    }
  }

  /** The sum of a Prometheus counter over all its label sets, or undefined if unreachable. */
  async counter(metric: string, timeoutMs = 1000): Promise<number | undefined> {
    if (!this.running) return undefined;
    try {
      const response = await fetch(this.metricsUrl, { signal: AbortSignal.timeout(timeoutMs) });
      if (!response.ok) return undefined;
      return sumMetric(await response.text(), metric);
    } catch {
      return undefined;
    }
  }
}

export function sumMetric(text: string, metric: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const rest = line.slice(metric.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

/** The `msg` (and error message) of the last JSON log line, or the last plain line. */
function lastLogMessage(tail: string): string {
  const lines = tail.trim().split('\n').filter(Boolean);
  const last = lines.at(-1);
  if (!last) return '';
  try {
    const parsed = JSON.parse(last) as { msg?: string; err?: { message?: string } };
    return [parsed.msg, parsed.err?.message].filter(Boolean).join(': ').slice(0, 200);
  } catch {
    return last.slice(0, 200);
  }
}
