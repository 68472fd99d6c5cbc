import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GroupChild, signalGroup, spawnGroup } from '../process-group.js';
import { sumMetric } from '../supervisor.js';
import type { Namespace } from './net.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

export type MemberRole = 'app' | 'relay' | 'worker';

/** How a graceful stop went. */
export interface StopRecord {
  readonly how: string;
  readonly ms: number;
}

/**
 * One service process run in its own network namespace (`ip netns exec`), reached by the harness
 * at its namespace's address: `/healthz`, `/readyz` and `/metrics` on its port.
 */
export class Member {
  private child: GroupChild | undefined;
  readonly stops: StopRecord[] = [];

  constructor(
    readonly name: string,
    readonly role: MemberRole,
    readonly ns: Namespace,
    readonly port: number,
    private readonly env: Readonly<Record<string, string>>,
    private readonly logDir: string,
  ) {}

  get running(): boolean {
    return this.child !== undefined && !this.child.hasExited();
  }

  url(path: string): string {
    return `http://${this.ns.address}:${this.port}${path}`;
  }

  start(): void {
    this.child = spawnGroup(
      'ip',
      ['netns', 'exec', this.ns.name, process.execPath, '--import', 'tsx', 'src/main.ts', this.role],
      { cwd: ROOT, env: { ...process.env, ...this.env }, logFile: join(this.logDir, `${this.name}.log`) },
    );
  }

  /** SIGTERM, and how the process ended and how long it took (bounded by `limitMs`, then SIGKILL). */
  async stop(limitMs: number): Promise<StopRecord> {
    const child = this.child;
    if (!child || child.hasExited()) return { how: 'not running', ms: 0 };
    const started = Date.now();
    signalGroup(child.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const how = await Promise.race([
      child.exited,
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('still running'), limitMs);
      }),
    ]);
    clearTimeout(timer);
    if (how === 'still running') {
      signalGroup(child.pid, 'SIGKILL');
      await child.exited;
    }
    const record = { how, ms: Date.now() - started };
    this.stops.push(record);
    return record;
  }

  killNow(): void {
    if (this.child && !this.child.hasExited()) signalGroup(this.child.pid, 'SIGKILL');
  }

  async healthy(): Promise<boolean> {
    try {
      const response = await fetch(this.url('/healthz'), { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      return response.ok;
    } catch {
      return false;
    }
  }

  /** A counter summed over its labels, or undefined when the process does not answer. */
  async counter(metric: string): Promise<number | undefined> {
    try {
      // /metrics reads the backlog from the database: slow while its link is cut.
      const response = await fetch(this.url('/metrics'), { signal: AbortSignal.timeout(5_000) });
      return response.ok ? sumMetric(await response.text(), metric) : undefined;
    } catch {
      return undefined;
    }
  }

  /** The counter that says this process did its work: events published, messages handled. */
  get workCounter(): string {
    return this.role === 'relay' ? 'outbox_events_published_total' : 'worker_messages_total';
  }
}
