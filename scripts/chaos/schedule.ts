import type { ChaosConfig } from './config.js';
import type { Random } from './random.js';
import type { Role } from './supervisor.js';

export type Fault =
  | { readonly kind: 'kill'; readonly at: number; readonly target: string }
  | { readonly kind: 'freeze'; readonly at: number; readonly target: string; readonly holdMs: number }
  | {
      readonly kind: 'broker-restart' | 'broker-kill' | 'db-kill';
      readonly at: number;
      readonly downMs: number;
    };

export type ServerFault = Extract<Fault, { downMs: number }>;

export function isServerFault(fault: Fault): fault is ServerFault {
  return fault.kind === 'broker-restart' || fault.kind === 'broker-kill' || fault.kind === 'db-kill';
}

export function describe(fault: Fault): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  switch (fault.kind) {
    case 'kill':
      return `kill -9 ${fault.target}`;
    case 'freeze':
      return `SIGSTOP ${fault.target} for ${s(fault.holdMs)} (past RELAY_LEASE_MS, the bound on its claim), then SIGCONT`;
    case 'broker-restart':
      return `RabbitMQ stop (rabbitmqctl stop), down ${s(fault.downMs)}, start`;
    case 'broker-kill':
      return `RabbitMQ kill -9, down ${s(fault.downMs)}, start`;
    case 'db-kill':
      return `MariaDB kill -9, down ${s(fault.downMs)}, restart`;
  }
}

/**
 * The run's faults, decided up front from the seed so a run can be replayed and the printed
 * schedule is what happens. Times are offsets from the start of the load.
 *
 * Server faults (broker, database) get a slot each in the middle of the run and never overlap:
 * the interesting question is how the system comes back from each, and a broker that restarts
 * (several seconds) while the database is also away tells less. Process kills and freezes fall
 * anywhere in the window, including during server faults: that is what happens in real life.
 * Nothing is scheduled in the last fifth of the run, so the system is under load, whole again,
 * before the load stops.
 */
export function buildSchedule(
  config: ChaosConfig,
  processes: ReadonlyArray<{ name: string; role: Role }>,
  random: Random,
): Fault[] {
  const total = config.seconds * 1000;
  const from = Math.max(5_000, total * 0.08);
  const to = total * 0.8;
  const faults: Fault[] = [];

  const brokerKinds: Array<ServerFault['kind']> = [];
  // Alternate stop/start and kill -9, so two broker faults exercise both.
  const firstBroker = random.next() < 0.5 ? 'broker-restart' : 'broker-kill';
  for (let i = 0; i < config.brokerFaults; i++) {
    brokerKinds.push(
      i % 2 === 0 ? firstBroker : firstBroker === 'broker-kill' ? 'broker-restart' : 'broker-kill',
    );
  }
  const serverKinds = random.shuffle([...brokerKinds, ...Array<'db-kill'>(config.dbFaults).fill('db-kill')]);
  const slot = (to - from) / Math.max(1, serverKinds.length);
  serverKinds.forEach((kind, i) => {
    faults.push({
      kind,
      at: Math.round(from + slot * i + random.between(0, slot * 0.3)),
      downMs: random.int(2000, 5000),
    });
  });

  const relays = processes.filter((p) => p.role === 'relay').map((p) => p.name);
  for (let i = 0; i < config.stops && relays.length > 0; i++) {
    faults.push({
      kind: 'freeze',
      at: Math.round(random.between(from, to)),
      target: random.pick(relays),
      holdMs: config.leaseMs + 3000,
    });
  }

  const names = processes.map((p) => p.name);
  for (let i = 0; i < config.kills; i++) {
    faults.push({
      kind: 'kill',
      at: Math.round(random.between(total * 0.05, to)),
      target: random.pick(names),
    });
  }
  return faults.sort((a, b) => a.at - b.at);
}
