import type { HarnessDb } from '../harness-db.js';
import { say } from '../report.js';
import { readBacklog } from '../state.js';
import type { Subscriber } from '../subscribers.js';
import { delay } from '../wait.js';
import type { Member } from './members.js';
import type { Link, PartitionNet } from './net.js';
import type { Traffic } from './traffic.js';

export interface Scenario {
  /** Short name for `--only` (db-20, mq-60, both-120, relay-20, worker-60, stop). */
  readonly id: string;
  readonly label: string;
  /** `all` cuts every service process; otherwise the one named. */
  readonly target: 'all' | string;
  readonly links: readonly Link[];
  readonly seconds: number;
  /** SIGTERM the target five seconds into the cut (a graceful stop during a cut), restart after. */
  readonly stopDuring?: boolean;
}

const both: readonly Link[] = ['db', 'mq'];

/** The cut lengths of the full run; 60 s is chosen by `--only …-60` or `--cuts 20,60,120`. */
export const DEFAULT_CUTS: readonly number[] = [20, 120];
/** Every cut length `--only` knows ids of, besides those of `--cuts`. */
const KNOWN_CUTS: readonly number[] = [20, 60, 120];
/** Seconds a cut may last: long enough to outlast every bound, short enough to end. */
export const CUT_RANGE = { min: 5, max: 600 } as const;

/**
 * The full set for each length of `cuts` (and the stop during a cut), the short one (`--ci`),
 * or the scenarios named in `only` (ids of 20, 60 and 120 s and of `cuts`, in that order; an
 * unknown id is an error that lists the known ones).
 */
export function scenarios(ci: boolean, only?: readonly string[], cuts = DEFAULT_CUTS): Scenario[] {
  const set = (seconds: number): Scenario[] => [
    { id: `db-${seconds}`, label: `database cut ${seconds} s`, target: 'all', links: ['db'], seconds },
    { id: `mq-${seconds}`, label: `broker cut ${seconds} s`, target: 'all', links: ['mq'], seconds },
    {
      id: `both-${seconds}`,
      label: `database + broker cut ${seconds} s`,
      target: 'all',
      links: both,
      seconds,
    },
    {
      id: `relay-${seconds}`,
      label: `relay-1's links cut ${seconds} s`,
      target: 'relay-1',
      links: both,
      seconds,
    },
    {
      id: `worker-${seconds}`,
      label: `worker-1's links cut ${seconds} s`,
      target: 'worker-1',
      links: both,
      seconds,
    },
  ];
  const stop: Scenario = {
    id: 'stop',
    label: 'relay-2 stopped during a 20 s cut',
    target: 'relay-2',
    links: both,
    seconds: 20,
    stopDuring: true,
  };
  if (only) {
    const lengths = [...new Set([...KNOWN_CUTS, ...cuts])].sort((a, b) => a - b);
    const known = [...lengths.flatMap(set), stop];
    const unknown = only.filter((id) => !known.some((s) => s.id === id));
    if (unknown.length > 0) {
      throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${known.map((s) => s.id).join(' ')}`);
    }
    return known.filter((s) => only.includes(s.id));
  }
  if (ci) return [set(20)[2] as Scenario, set(20)[4] as Scenario, stop];
  return [...cuts.flatMap(set), stop];
}

/** `--cuts 20,60,120`: the lengths of the full run's cuts, in seconds. */
export function parseCuts(list: string): number[] {
  const cuts = list.split(',').filter(Boolean).map(Number);
  const bad = cuts.filter((s) => !Number.isInteger(s) || s < CUT_RANGE.min || s > CUT_RANGE.max);
  if (cuts.length === 0 || bad.length > 0) {
    throw new Error(
      `--cuts needs whole seconds from ${CUT_RANGE.min} to ${CUT_RANGE.max}, e.g. --cuts 20,60,120 (got ${list})`,
    );
  }
  return [...new Set(cuts)];
}

/** What one scenario measured. */
export interface ScenarioResult {
  readonly scenario: Scenario;
  readonly cutAt: number;
  readonly healAt: number;
  /** When the cut and the heal began and ended being applied (one namespace after another). */
  readonly edges: ReadonlyArray<readonly [number, number]>;
  /** Recovery after the heal, per component, in ms (undefined: not within the limit). */
  readonly recovery: Record<string, number | undefined>;
  readonly stop?: { how: string; ms: number };
  /** Events created but not handled yet at the heal: what the workers had to catch up on. */
  readonly unhandledAtHeal: number | undefined;
  /** Which links of the app were cut, for /readyz's truth. */
  readonly appLinks: readonly Link[];
}

export interface Stage {
  readonly net: PartitionNet;
  readonly members: readonly Member[];
  readonly traffic: Traffic;
  readonly subscriber: Subscriber;
  readonly db: HarnessDb;
  readonly appUrl: string;
  readonly shutdownTimeoutMs: number;
  readonly signal: AbortSignal;
}

const RECOVERY_WATCH_MS = 60_000;

export async function play(stage: Stage, scenario: Scenario): Promise<ScenarioResult> {
  const { net, members, signal } = stage;
  await quiet(stage);
  const targets =
    scenario.target === 'all' ? [...members] : members.filter((m) => m.name === scenario.target);
  if (targets.length === 0) throw new Error(`no process named ${scenario.target}`);
  say(`cut: ${scenario.label}`);
  // A cut or relay does work only with both links: work counted after the heal is new work.
  // A process stopped during the cut starts afresh after it: its start is no network recovery.
  const watched = scenario.stopDuring ? [] : members.filter((m) => m.role !== 'app' && targets.includes(m));
  const before = new Map<string, number | undefined>();
  for (const m of watched) before.set(m.name, await m.counter(m.workCounter));
  const cutStartedAt = Date.now();
  for (const m of targets) await net.cut(m.ns, scenario.links);
  const cutAt = Date.now();
  let stop: ScenarioResult['stop'];
  const stopping = scenario.stopDuring
    ? delay(5_000, signal).then(async () => {
        stop = await (targets[0] as Member).stop(stage.shutdownTimeoutMs + 10_000);
        say(`${targets[0]?.name} stopped during the cut: ${stop.how} after ${stop.ms} ms`);
      })
    : Promise.resolve();
  await delay(scenario.seconds * 1000, signal);
  await stopping;
  const healStartedAt = Date.now();
  for (const m of targets) await net.heal(m.ns, scenario.links);
  const healAt = Date.now();
  say(`healed: ${scenario.label}`);
  const backlog = await stage.db.with(readBacklog).catch(() => undefined);
  const recovery = await measureRecovery(stage, healAt, watched, before);
  if (scenario.stopDuring) {
    // Started again only now: a process starting takes the CPU the others recover with.
    const member = targets[0] as Member;
    member.start();
    const limit = Date.now() + 120_000;
    while (!(await member.healthy()) && Date.now() < limit && !signal.aborted) await delay(500, signal);
  }
  const app = members.find((m) => m.role === 'app');
  return {
    scenario,
    cutAt,
    healAt,
    edges: [
      [cutStartedAt, cutAt],
      [healStartedAt, healAt],
    ],
    recovery,
    stop,
    unhandledAtHeal: backlog ? backlog.customers - backlog.welcomed : undefined,
    appLinks: app && targets.includes(app) ? scenario.links : [],
  };
}

/**
 * After a heal: the first create sent from then on that is acknowledged, the moment its event
 * is handled (its welcome e-mail) and streamed to the subscriber, and each cut relay's or
 * worker's first work (its counter moving).
 */
async function measureRecovery(
  stage: Stage,
  healAt: number,
  watched: readonly Member[],
  before: ReadonlyMap<string, number | undefined>,
): Promise<Record<string, number | undefined>> {
  const { traffic, db, subscriber, signal } = stage;
  const limit = healAt + RECOVERY_WATCH_MS;
  const result: Record<string, number | undefined> = {};
  const created = await traffic.send('probe');
  result.create = created.outcome === 'ok' && created.doneAt ? created.doneAt - healAt : undefined;
  const customerId = created.customerId;
  const eventId = created.eventId;
  const until = async (what: string, check: () => Promise<boolean>) => {
    while (Date.now() < limit && !signal.aborted) {
      if (await check().catch(() => false)) {
        result[what] = Date.now() - healAt;
        return;
      }
      await delay(100, signal);
    }
  };
  await Promise.all([
    eventId
      ? until('published', async () =>
          db.with(async (c) => {
            const [rows] = await c.query(
              'SELECT 1 FROM outbox WHERE event_id = ? AND published_at IS NOT NULL',
              [eventId],
            );
            return (rows as unknown[]).length > 0;
          }),
        )
      : undefined,
    customerId
      ? until('handled', async () =>
          db.with(async (c) => {
            const [rows] = await c.query('SELECT 1 FROM welcome_emails WHERE customer_id = ?', [customerId]);
            return (rows as unknown[]).length > 0;
          }),
        )
      : undefined,
    eventId ? until('streamed', async () => subscriber.ids.has(eventId)) : undefined,
    ...watched.map((m) =>
      until(m.name, async () => {
        const now = await m.counter(m.workCounter);
        const then = before.get(m.name);
        return now !== undefined && then !== undefined && now > then;
      }),
    ),
  ]);
  for (const key of ['published', 'handled', 'streamed', ...watched.map((m) => m.name)]) {
    if (!(key in result)) result[key] = undefined;
  }
  return result;
}

/** Waits (bounded) until nothing is pending, so each scenario starts from a settled state. */
async function quiet(stage: Stage): Promise<void> {
  const limit = Date.now() + 60_000;
  while (Date.now() < limit && !stage.signal.aborted) {
    const b = await stage.db.with(readBacklog).catch(() => undefined);
    if (b && b.pending < 50 && b.welcomed >= b.customers - 50) return;
    await delay(500, stage.signal);
  }
}
