/**
 * `npm run chaos:partitions` (a short one in `npm run chaos:ci`): the service's processes in
 * network namespaces of their own, linked to private MariaDB and RabbitMQ servers through veth
 * pairs, and links black-holed with `tc … blackhole` (packets dropped silently, as a NAT or load
 * balancer that forgot a flow does). See docs/network-faults.md. Exits 0 only when every
 * invariant holds. Only namespaces, links and servers the run makes itself are ever touched.
 */
import { setMaxListeners } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { RowDataPacket } from 'mysql2/promise';
import { Cleanup } from '../cleanup.js';
import { probeCapabilities } from '../client.js';
import { HarnessDb } from '../harness-db.js';
import { PortPool } from '../ports.js';
import { missingPrograms } from '../prerequisites.js';
import { printInvariants, printTable, say } from '../report.js';
import { privateServers } from '../servers.js';
import { readBacklog, readState } from '../state.js';
import { Subscriber } from '../subscribers.js';
import type { SupervisedProcess } from '../supervisor.js';
import { delay, waitFor } from '../wait.js';
import { checkPartitions, handledLag } from './checks.js';
import { ForwardingProcess, type Route } from './forward.js';
import { Member, type MemberRole } from './members.js';
import { PartitionNet, partitionSupport, removeLeftovers } from './net.js';
import { DEFAULT_CUTS, parseCuts, play, type Scenario, type ScenarioResult, scenarios } from './scenarios.js';
import { ReadyzProbe, Traffic } from './traffic.js';

const REQUEST_TIMEOUT_MS = 10_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;
const RATE = 20;
const TOPOLOGY: ReadonlyArray<[string, MemberRole]> = [
  ['app-1', 'app'],
  ['relay-1', 'relay'],
  ['relay-2', 'relay'],
  ['worker-1', 'worker'],
  ['worker-2', 'worker'],
];

/** `--ci`, `--only id,id` (scenario ids), `--cuts 20,60,120` (the full run's lengths): scenarios.ts. */
function options(argv: readonly string[]): { ci: boolean; only: string[] | undefined; cuts: number[] } {
  const only = argValue(argv, '--only', 'scenario ids, e.g. --only db-60,mq-60');
  const cuts = argValue(argv, '--cuts', 'seconds, e.g. --cuts 20,60,120');
  return {
    ci: argv.includes('--ci'),
    only: only?.split(',').filter(Boolean),
    cuts: cuts === undefined ? [...DEFAULT_CUTS] : parseCuts(cuts),
  };
}

/** The value of `--name value` or `--name=value`. */
function argValue(argv: readonly string[], name: string, needs: string): string | undefined {
  const at = argv.indexOf(name);
  const value = at >= 0 ? argv[at + 1] : argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
  if (at >= 0 && !value) throw new Error(`${name} needs ${needs}`);
  return value;
}

async function main(): Promise<number> {
  let chosen: Scenario[];
  try {
    const { ci, only, cuts } = options(process.argv.slice(2));
    chosen = scenarios(ci, only, cuts);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const unsupported = (await partitionSupport()) ?? missingPrograms()[0];
  if (unsupported) {
    process.stderr.write(`The partition run cannot run here: ${unsupported}\n`);
    return 2;
  }
  const leftovers = removeLeftovers();
  if (leftovers.length > 0) say(`removed what a crashed earlier run left: ${leftovers.join(' ')}`);
  const cleanup = new Cleanup();
  cleanup.installSignals();
  const tmpRoot = process.env.CHAOS_TMPDIR ?? '/tmp';
  await mkdir(tmpRoot, { recursive: true });
  const dir = await mkdtemp(join(tmpRoot, 'graphql-outbox-partitions-'));
  // The service processes' logs are in it (logs/<name>.log): CHAOS_KEEP=1 keeps them to read.
  const keep = process.env.CHAOS_KEEP === '1';
  say(
    `working folder ${dir}${keep ? ' (kept: CHAOS_KEEP=1)' : ' (removed at the end; CHAOS_KEEP=1 keeps it)'}`,
  );
  cleanup.add('temporary folder', async () => {
    if (!keep) await rm(dir, { recursive: true, force: true });
  });
  cleanup.addLastResort(() => {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  });
  try {
    return await execute(chosen, dir, cleanup);
  } catch (error) {
    say(`the partition run failed: ${(error as Error).stack ?? String(error)}`);
    return 1;
  } finally {
    say('cleaning up');
    await cleanup.run();
  }
}

async function execute(chosen: readonly Scenario[], dir: string, cleanup: Cleanup): Promise<number> {
  const signal = cleanup.abort.signal;
  const ports = new PortPool();
  const { db, mq } = await privateServers(dir, ports, cleanup);
  await Promise.all([db.initialize(), mq.initialize()]);
  await Promise.all([db.start(), mq.start()]);
  const harnessDb = new HarnessDb(db.url());
  cleanup.add('harness database connection', () => harnessDb.close());

  const forwardPorts = { db: await ports.take(), mq: await ports.take() };
  const net = new PartitionNet(forwardPorts);
  cleanup.add('network namespaces and links', () => net.destroy());
  cleanup.addLastResort(() => net.destroyNow());
  await net.create();
  const routes: Route[] = [
    {
      listen: { host: net.hostAddress, port: forwardPorts.db },
      target: { host: '127.0.0.1', port: db.port },
    },
    {
      listen: { host: net.hostAddress, port: forwardPorts.mq },
      target: { host: '127.0.0.1', port: mq.port },
    },
  ];

  const logDir = join(dir, 'logs');
  await mkdir(logDir, { recursive: true });
  const members: Member[] = [];
  for (const [name, role] of TOPOLOGY) {
    const ns = await net.addNamespace(name);
    const port = await ports.take();
    const env = {
      NODE_ENV: 'production',
      // CHAOS_LOG_LEVEL=info (or debug) to trace what a process waits on after a heal.
      LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'warn',
      HOST: '0.0.0.0',
      PORT: String(port),
      METRICS_PORT: String(port),
      DATABASE_URL: `mysql://root@${net.hostAddress}:${forwardPorts.db}/outbox`,
      AMQP_URL: `amqp://guest:guest@${net.hostAddress}:${forwardPorts.mq}`,
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      OUTBOX_RETENTION: '1h',
      DB_POOL_SIZE: '10',
    };
    members.push(new Member(name, role, ns, port, env, logDir));
    if (role === 'app') {
      routes.push({ listen: { host: '127.0.0.1', port }, target: { host: ns.address, port } });
    }
  }
  const forwarders = new ForwardingProcess(routes, logDir);
  cleanup.add('forwarders', () => forwarders.stop());
  cleanup.addLastResort(() => forwarders.killNow());
  await forwarders.start(signal);
  cleanup.add('service processes', async () => {
    await Promise.all(members.map((m) => m.stop(2_000)));
  });
  cleanup.addLastResort(() => {
    for (const m of members) m.killNow();
  });
  for (const m of members) m.start();
  const app = members[0] as Member;
  await waitFor(
    'every service process to answer its health check',
    async () => (await Promise.all(members.map((m) => m.healthy()))).every(Boolean),
    { timeoutMs: 180_000, intervalMs: 500, signal },
  );
  say(`up: ${members.map((m) => `${m.name} ${m.ns.address}:${m.port} (${m.ns.name})`).join(', ')}`);

  const appUrl = `http://127.0.0.1:${app.port}/graphql`;
  const capabilities = await probeCapabilities(appUrl);
  const subscriber = new Subscriber(
    'sub-1',
    [{ name: app.name, spec: { port: app.port } } as unknown as SupervisedProcess],
    0,
    capabilities,
  );
  subscriber.start();
  cleanup.add('subscriber', () => subscriber.stop());
  const traffic = new Traffic(appUrl, net.tag);
  // Every request in flight listens on it; that is no leak.
  setMaxListeners(0, traffic.hard.signal);
  cleanup.add('traffic', async () => {
    traffic.hard.abort();
    await traffic.stop();
  });
  await waitFor(
    'the subscriber to receive a warm-up event',
    async () => {
      const warm = await traffic.send('warm');
      return (
        warm.eventId !== undefined && (await waitUntil(() => subscriber.ids.has(warm.eventId ?? ''), 3_000))
      );
    },
    { timeoutMs: 60_000, intervalMs: 100, signal },
  );
  const readyz = new ReadyzProbe(`http://127.0.0.1:${app.port}/readyz`);
  readyz.start();
  cleanup.add('readyz probe', () => readyz.stop());
  traffic.start(RATE);
  say(`load: ${RATE} creates/s, each with an Idempotency-Key; /readyz every second; one resuming subscriber`);

  const stage = {
    net,
    members,
    traffic,
    subscriber,
    db: harnessDb,
    appUrl,
    shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS,
    signal,
  };
  const results: ScenarioResult[] = [];
  for (const scenario of chosen) results.push(await play(stage, scenario));
  const workerCut = results.find((r) => r.scenario.target.startsWith('worker'));
  const workerCutLagMs = workerCut
    ? await harnessDb.with((c) => handledLag(c, workerCut.cutAt, workerCut.healAt))
    : undefined;

  say('load ends; settling');
  await traffic.stop();
  await waitFor(
    'every event published, handled and streamed',
    async () => {
      const b = await harnessDb.with(readBacklog);
      const state =
        b.pending === 0 && b.welcomed >= b.customers ? await harnessDb.with(readState) : undefined;
      return state !== undefined && (state.handled ?? []).every((h) => subscriber.ids.has(h.eventId));
    },
    { timeoutMs: 120_000, intervalMs: 500, signal },
  ).catch((error: Error) => say(error.message));
  await readyz.stop();
  const finalStops = [];
  for (const m of members) finalStops.push({ name: m.name, ...(await m.stop(SHUTDOWN_TIMEOUT_MS + 10_000)) });
  const state = await harnessDb.with(readState);
  const [attempts] = await harnessDb.with((c) =>
    c.query<RowDataPacket[]>('SELECT MAX(attempts) AS n FROM outbox'),
  );
  const rows = checkPartitions({
    creates: traffic.creates,
    state,
    maxAttempts: Number(attempts[0]?.n ?? 0),
    subscriber,
    results,
    readyz: readyz.samples,
    finalStops,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS,
    workerCutLagMs,
  });
  printScenarios(results, traffic);
  printInvariants(rows);
  const broken = rows.filter((r) => r.ok === false);
  process.stdout.write(
    `\n${broken.length === 0 ? 'PASS' : 'FAIL'}: partitions, ${rows.length - broken.length} held, ${broken.length} broken\n\n`,
  );
  return broken.length === 0 ? 0 : 1;
}

function printScenarios(results: readonly ScenarioResult[], traffic: Traffic): void {
  printTable(
    'Partitions (recovery: from the heal until it works again)',
    ['cut', 'longest request', '503s', 'unhandled at the heal', 'recovery'],
    results.map((r) => {
      const attempts = traffic.creates
        .flatMap((c) => c.attempts)
        // In flight at some moment of the cut: started before the heal, ended after the cut began
        // (not every attempt of the 11 s before it, which would count the previous cut's answers).
        .filter((a) => a.at <= r.healAt && a.at + a.ms >= r.cutAt);
      const unavailable = attempts.filter((a) => a.result === 'SERVICE_UNAVAILABLE').length;
      return [
        r.scenario.label,
        `${(Math.max(0, ...attempts.map((a) => a.ms)) / 1000).toFixed(1)} s`,
        String(unavailable),
        r.unhandledAtHeal === undefined ? '?' : String(r.unhandledAtHeal),
        Object.entries(r.recovery)
          .map(([what, ms]) => `${what} ${ms === undefined ? 'NEVER' : `${(ms / 1000).toFixed(1)} s`}`)
          .join(', '),
      ];
    }),
  );
}

async function waitUntil(check: () => boolean, ms: number): Promise<boolean> {
  const limit = Date.now() + ms;
  while (Date.now() < limit) {
    if (check()) return true;
    await delay(50);
  }
  return check();
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
