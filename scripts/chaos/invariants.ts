import type { FailedRequestCheck, ReplayCheck } from './idempotency.js';
import type { RequestRecord } from './load.js';
import type { Recovery } from './recovery.js';
import { type Row, seconds } from './report.js';
import { CUSTOMER_CREATED, type DbState, handledEvents } from './state.js';
import type { Subscriber } from './subscribers.js';

export interface Evidence {
  readonly ledger: readonly RequestRecord[];
  readonly state: DbState;
  readonly subscribers: readonly Subscriber[];
  readonly cursors: boolean;
  readonly sequence: boolean;
  readonly failed: FailedRequestCheck;
  readonly replays: ReplayCheck;
  readonly recoveries: readonly Recovery[];
  readonly recoveryLimitMs: number;
  readonly settled: boolean;
}

/** Up to three examples, so a broken row says where to look. */
const examples = (items: readonly string[]) =>
  items.length === 0 ? '' : ` e.g. ${items.slice(0, 3).join('; ')}${items.length > 3 ? ' …' : ''}`;

const count = <T>(items: Iterable<T>, key: (item: T) => string) => {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
};

export function checkInvariants(e: Evidence): Row[] {
  const { state, ledger } = e;
  const rows: Row[] = [];
  const acked = ledger.filter((r) => r.outcome === 'ok');
  const customersByEmail = count(state.customers, (c) => c.email);
  const customerById = new Map(state.customers.map((c) => [c.id, c]));
  const created = state.outbox.filter((o) => o.type === CUSTOMER_CREATED);
  const createdById = new Map(created.map((o) => [o.eventId, o]));
  const createdPerCustomer = count(created, (o) => o.aggregateId);

  {
    const bad: string[] = [];
    for (const r of acked) {
      const customer = r.customerId === undefined ? undefined : customerById.get(r.customerId);
      const n = customersByEmail.get(r.input.email) ?? 0;
      if (n !== 1 || !customer || customer.email !== r.input.email)
        bad.push(
          `#${r.n}: ${n} customers with its e-mail, id ${r.customerId} ${customer ? 'found' : 'missing'}`,
        );
    }
    // Retried requests are the ones that could have been done twice.
    const retried = acked.filter((r) => r.attempts > 1).length;
    rows.push({
      name: 'acknowledged create → exactly one customer',
      expected: `${acked.length} customers, ids as acknowledged`,
      observed: `${acked.length - bad.length} ok (${retried} after retries), ${bad.length} wrong${examples(bad)}`,
      ok: bad.length === 0,
    });
  }
  {
    const bad: string[] = [];
    for (const r of acked) {
      const event = r.eventId === undefined ? undefined : createdById.get(r.eventId);
      const n = createdPerCustomer.get(r.customerId ?? '') ?? 0;
      if (!event || event.aggregateId !== r.customerId || n !== 1)
        bad.push(`#${r.n}: event ${event ? 'of another customer' : 'missing'}, ${n} CustomerCreated`);
    }
    rows.push({
      name: 'acknowledged create → exactly one event',
      expected: `${acked.length} CustomerCreated, ids as acknowledged`,
      observed: `${acked.length - bad.length} ok, ${bad.length} wrong${examples(bad)}`,
      ok: bad.length === 0,
    });
  }
  {
    const orphans = state.customers
      .filter((c) => !createdPerCustomer.has(c.id))
      .map((c) => `customer ${c.id}`);
    const widowed = created.filter((o) => !customerById.has(o.aggregateId)).map((o) => `event ${o.eventId}`);
    rows.push({
      name: 'no customer without its event (nor event without customer)',
      expected: '0 / 0',
      observed: `${orphans.length} / ${widowed.length}${examples([...orphans, ...widowed])}`,
      ok: orphans.length === 0 && widowed.length === 0,
    });
  }
  {
    const unpublished = state.outbox.filter((o) => !o.published);
    rows.push({
      name: 'every event published',
      expected: `${state.outbox.length} of ${state.outbox.length}`,
      observed: `${state.outbox.length - unpublished.length} of ${state.outbox.length}`,
      ok: unpublished.length === 0,
    });
  }
  {
    const welcomes = count(state.welcome, (w) => w.eventId);
    const bad: string[] = [];
    for (const o of created) {
      const n = welcomes.get(o.eventId) ?? 0;
      if (n !== 1) bad.push(`${o.eventId}: ${n} e-mails`);
      else if (!state.inboxMessageIds.has(o.eventId)) bad.push(`${o.eventId}: no inbox row`);
    }
    const strays = state.welcome.filter((w) => !createdById.has(w.eventId)).length;
    rows.push({
      name: 'every CustomerCreated handled once in effect',
      expected: `${created.length} welcome e-mails, 1 each, with inbox rows`,
      observed: `${created.length - bad.length} ok, ${bad.length} wrong, ${strays} strays${examples(bad)}`,
      ok: bad.length === 0 && strays === 0,
    });
  }
  if (state.handled) {
    const seen = count(state.handled, (h) => h.eventId);
    const missing = state.outbox.filter((o) => o.type === CUSTOMER_CREATED && !seen.has(o.eventId)).length;
    const twice = [...seen.values()].filter((n) => n > 1).length;
    rows.push({
      name: 'handled history: every event once',
      expected: `${created.length} CustomerCreated in handled_events, none twice`,
      observed: `${missing} missing, ${twice} twice`,
      ok: missing === 0 && twice === 0,
    });
  } else {
    rows.push({
      name: 'handled history: every event once',
      expected: 'handled_events, each event once',
      observed: state.handledNote ?? 'n/a',
      ok: undefined,
    });
  }
  {
    const stuck = state.outbox.filter((o) => !o.published && !o.dead).length;
    const leased = state.outbox.filter((o) => o.leased).length;
    const dead = state.outbox.filter((o) => o.dead).length;
    rows.push({
      name: 'no stuck, leased or dead rows after settling',
      expected: 'pending 0, leased 0, dead 0',
      observed: `pending ${stuck}, leased ${leased}, dead ${dead}${e.settled ? '' : ' (did not settle in time)'}`,
      ok: stuck === 0 && leased === 0 && dead === 0,
    });
  }
  rows.push(...subscriberRows(e));
  {
    const f = e.failed;
    rows.push({
      name: 'failed request wrote nothing or is recoverable by its key',
      expected: `${f.total} failed: each wrote nothing or recovers`,
      observed: `${f.wroteNothing} wrote nothing, ${f.recovered} recovered, ${f.broken.length} not${examples(f.broken)}`,
      ok: f.broken.length === 0,
    });
  }
  {
    // A dependency being away is the service's SERVICE_UNAVAILABLE (503, retry with the key),
    // never an internal error: a client cannot tell "try again" from "broken" otherwise.
    const internal = ledger.filter((r) => r.outcome === 'failed' && r.code === 'INTERNAL_SERVER_ERROR');
    const other = ledger.filter((r) => r.outcome === 'failed' && r.code !== 'INTERNAL_SERVER_ERROR');
    rows.push({
      name: 'faults answered SERVICE_UNAVAILABLE, not internal errors',
      expected: '0 INTERNAL_SERVER_ERROR',
      observed: `${internal.length} INTERNAL_SERVER_ERROR, ${other.length} other final errors${examples([
        ...new Set(other.map((r) => r.code ?? '?')),
      ])}`,
      ok: internal.length === 0,
    });
  }
  {
    const r = e.replays;
    rows.push({
      name: 'replay with the same key: original result, no write',
      expected: `${r.replayed} replays (retried ones first), 0 written`,
      observed: `${r.replayed - r.broken.length} same result, ${r.broken.length} not, ${r.written} written${examples(r.broken)}`,
      ok: r.broken.length === 0 && r.written === 0,
    });
  }
  {
    const counted = e.recoveries.filter((r) => r.supersededBy === undefined);
    const done = counted.filter((r) => r.recoveredAt !== undefined);
    const times = done.map((r) => (r.recoveredAt ?? 0) - r.since).sort((a, b) => a - b);
    const late = times.filter((t) => t > e.recoveryLimitMs).length;
    const never = counted.length - done.length;
    const superseded = e.recoveries.length - counted.length;
    rows.push({
      name: 'every process recovered after every fault',
      expected: `${counted.length} recoveries, each within ${seconds(e.recoveryLimitMs)}`,
      observed: `median ${seconds(times[Math.floor(times.length / 2)])}, max ${seconds(times.at(-1))}, ${late} late, ${never} never (${superseded} superseded by a later fault)`,
      ok: late === 0 && never === 0,
    });
  }
  return rows;
}

function subscriberRows(e: Evidence): Row[] {
  const sentinels = new Set(e.ledger.filter((r) => r.sentinel && r.customerId).map((r) => r.customerId));
  const expected = handledEvents(e.state).filter((h) => !sentinels.has(h.customerId));
  const expectedIds = new Set(expected.map((h) => h.eventId));
  if (e.subscribers.length === 0) {
    return [
      {
        name: 'subscribers: every handled event once',
        expected: '-',
        observed: 'no subscribers',
        ok: undefined,
      },
    ];
  }
  const perSubscriber: string[] = [];
  const orderProblems: string[] = [];
  let allOk = true;
  for (const s of e.subscribers) {
    const missing = [...expectedIds].filter((id) => !s.ids.has(id)).length;
    const twice = [...s.ids].filter(([id, n]) => expectedIds.has(id) && n > 1).length;
    if (missing > 0 || twice > 0) allOk = false;
    perSubscriber.push(`${s.name} ${missing} missing/${twice} twice/${s.resubscriptions} resumes`);
    if (e.sequence) {
      const last = new Map<string, number>();
      for (const event of s.received) {
        if (!expectedIds.has(event.eventId) || event.sequence === undefined) continue;
        const before = last.get(event.customerId) ?? 0;
        if (event.sequence <= before)
          orderProblems.push(`${s.name}: customer ${event.customerId} ${event.sequence} after ${before}`);
        last.set(event.customerId, Math.max(before, event.sequence));
      }
    }
  }
  const caveat = e.cursors ? '' : ' (no cursors in this build: resumes start from "now")';
  return [
    {
      name: 'subscribers: every handled event once',
      expected: `${expected.length} events each, none twice`,
      observed: `${perSubscriber.join('; ')}${caveat}`,
      ok: allOk,
    },
    e.sequence
      ? {
          name: 'subscribers: per-customer order',
          expected: 'sequence increases per customer',
          observed: `${orderProblems.length} out of order${examples(orderProblems)}`,
          ok: orderProblems.length === 0,
        }
      : {
          name: 'subscribers: per-customer order',
          expected: 'sequence increases per customer',
          observed: 'CustomerEvent has no sequence in this build',
          ok: undefined,
        },
  ];
}
