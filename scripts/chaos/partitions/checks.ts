import type { Connection, RowDataPacket } from 'mysql2/promise';
import type { Row } from '../report.js';
import { type DbState, handledEvents } from '../state.js';
import type { Subscriber } from '../subscribers.js';
import type { ScenarioResult } from './scenarios.js';
import type { Create, ReadyzSample } from './traffic.js';

export const RECOVERY_LIMIT_MS = 5_000;
const READYZ_LIMIT_MS = 2_000;
/** /readyz answers from checks of up to 1.5 s: a sample this close to a cut or heal may see either side. */
const READYZ_GRACE_MS = 3_000;
const UNACKED_BACK_MS = 30_000;

export interface PartitionEvidence {
  readonly creates: readonly Create[];
  readonly state: DbState;
  readonly maxAttempts: number;
  readonly subscriber: Subscriber;
  readonly results: readonly ScenarioResult[];
  readonly readyz: readonly ReadyzSample[];
  readonly finalStops: ReadonlyArray<{ name: string; how: string; ms: number }>;
  readonly requestTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  /** Longest create → welcome e-mail of creates acknowledged during a worker's cut. */
  readonly workerCutLagMs: number | undefined;
}

/** The creates → handled lag of customers created while a worker was cut off. */
export async function handledLag(c: Connection, from: number, to: number): Promise<number | undefined> {
  const [rows] = await c.query<RowDataPacket[]>(
    `SELECT MAX(TIMESTAMPDIFF(MICROSECOND, c.created_at, w.sent_at)) / 1000 AS lag
       FROM customers c JOIN welcome_emails w ON w.customer_id = c.id
      WHERE c.created_at BETWEEN ? AND ?`,
    [new Date(from), new Date(to)],
  );
  const lag = rows[0]?.lag;
  return lag === null || lag === undefined ? undefined : Number(lag);
}

export function checkPartitions(e: PartitionEvidence): Row[] {
  const rows: Row[] = [];
  const add = (name: string, expected: string, observed: string, ok: boolean) =>
    rows.push({ name, expected, observed, ok });

  const acked = e.creates.filter((c) => c.outcome === 'ok');
  const customers = new Set(e.state.customers.map((c) => c.id));
  const lost = acked.filter((c) => !customers.has(c.customerId ?? ''));
  add(
    'acknowledged creates exist',
    'all',
    `${acked.length - lost.length}/${acked.length}`,
    lost.length === 0,
  );
  const finals = e.creates.filter((c) => c.outcome === 'failed' || c.outcome === 'gave-up');
  add('every create answered', 'none failed or given up', `${finals.length}`, finals.length === 0);

  const published = e.state.outbox.filter((o) => o.published).length;
  const dead = e.state.outbox.filter((o) => o.dead).length;
  add(
    'every event published',
    `${e.state.outbox.length}`,
    `${published} (dead ${dead})`,
    published === e.state.outbox.length,
  );
  add(
    'a missing confirm costs no attempt',
    'max outbox.attempts 0',
    String(e.maxAttempts),
    e.maxAttempts === 0 && dead === 0,
  );
  const welcomes = new Map<string, number>();
  for (const w of e.state.welcome) welcomes.set(w.customerId, (welcomes.get(w.customerId) ?? 0) + 1);
  const missing = e.state.customers.filter((c) => !welcomes.has(c.id)).length;
  const doubled = [...welcomes.values()].filter((n) => n > 1).length;
  add(
    'handled once (welcome e-mails)',
    'one per customer',
    `missing ${missing}, doubled ${doubled}`,
    missing === 0 && doubled === 0,
  );

  const handled = handledEvents(e.state);
  const unseen = handled.filter((h) => !e.subscriber.ids.has(h.eventId)).length;
  add('subscriber complete', `${handled.length} events`, `${handled.length - unseen} received`, unseen === 0);

  const longest = Math.max(0, ...e.creates.flatMap((c) => c.attempts.map((a) => a.ms)));
  add(
    'longest request',
    `≤ REQUEST_TIMEOUT_MS + 1 s (${(e.requestTimeoutMs + 1000) / 1000} s)`,
    `${(longest / 1000).toFixed(1)} s`,
    longest <= e.requestTimeoutMs + 1000,
  );

  for (const r of e.results) {
    const entries = Object.entries(r.recovery);
    const worst = Math.max(...entries.map(([, ms]) => ms ?? Number.POSITIVE_INFINITY));
    add(
      `recovery after: ${r.scenario.label}`,
      `≤ ${RECOVERY_LIMIT_MS / 1000} s`,
      entries
        .map(([what, ms]) => `${what} ${ms === undefined ? 'NEVER' : `${(ms / 1000).toFixed(1)} s`}`)
        .join(', '),
      worst <= RECOVERY_LIMIT_MS,
    );
  }

  const slow = e.readyz.filter((s) => s.status === 'no answer' || s.ms > READYZ_LIMIT_MS);
  const lies = e.readyz.filter((s) => !truthful(s, e.results));
  add(
    '/readyz within 2 s',
    'every probe',
    `${e.readyz.length - slow.length}/${e.readyz.length} (slowest ${(Math.max(0, ...e.readyz.map((s) => s.ms)) / 1000).toFixed(1)} s)`,
    slow.length === 0,
  );
  add(
    '/readyz truthful',
    `every probe (${READYZ_GRACE_MS / 1000} s after a cut or heal either way)`,
    `${e.readyz.length - lies.length}/${e.readyz.length}${lies[0] ? `; first wrong: ${JSON.stringify(lies[0])}` : ''}`,
    lies.length === 0,
  );

  if (e.workerCutLagMs !== undefined) {
    add(
      "events during a worker's cut handled by another",
      `≤ ${UNACKED_BACK_MS / 1000} s after their create`,
      `${(e.workerCutLagMs / 1000).toFixed(1)} s`,
      e.workerCutLagMs <= UNACKED_BACK_MS,
    );
  }

  const stops = [
    ...e.results.flatMap((r) => (r.stop ? [{ name: `${r.scenario.target} during the cut`, ...r.stop }] : [])),
    ...e.finalStops,
  ];
  const badStops = stops.filter((s) => s.how !== 'exit 0' || s.ms > e.shutdownTimeoutMs);
  add(
    'graceful stops exit 0 in time',
    `exit 0 within SHUTDOWN_TIMEOUT_MS (${e.shutdownTimeoutMs / 1000} s)`,
    stops.map((s) => `${s.name} ${s.how} ${(s.ms / 1000).toFixed(1)} s`).join(', '),
    badStops.length === 0,
  );
  return rows;
}

/** What /readyz should have said at `s.at`, unless that is within the grace of a change. */
function truthful(s: ReadyzSample, results: readonly ScenarioResult[]): boolean {
  let db = true;
  let mq = true;
  for (const r of results) {
    const near = ([from, to]: readonly [number, number]) =>
      s.at + s.ms > from - READYZ_GRACE_MS && s.at < to + READYZ_GRACE_MS;
    if (r.edges.some(near)) return true;
    if (s.at > r.cutAt && s.at < r.healAt) {
      if (r.appLinks.includes('db')) db = false;
      if (r.appLinks.includes('mq')) mq = false;
    }
  }
  const ready = db && mq;
  return (
    s.status === (ready ? 200 : 503) &&
    s.checks.mysql === (db ? 'up' : 'down') &&
    s.checks.rabbitmq === (mq ? 'up' : 'down')
  );
}
