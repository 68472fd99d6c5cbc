import { randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { z } from 'zod';

/** Everything a chaos run can be told, read once from CHAOS_* variables. */
export interface ChaosConfig {
  readonly profile: 'default' | 'ci';
  readonly seconds: number;
  readonly rate: number;
  readonly kills: number;
  readonly stops: number;
  readonly brokerFaults: number;
  readonly dbFaults: number;
  readonly seed: number;
  readonly apps: number;
  readonly relays: number;
  readonly workers: number;
  readonly subscribersPerApp: number;
  readonly settleSeconds: number;
  readonly recoveryLimitSeconds: number;
  readonly leaseMs: number;
  readonly confirmTimeoutMs: number;
  readonly replays: number;
  readonly keep: boolean;
  readonly tmpRoot: string;
}

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().min(min).max(max));

/**
 * The defaults are the issue's (3 minutes, 80 creates/s, 20 kills, 2 broker and 2 database
 * faults); `--ci` swaps in a run that fits in about 90 s on a 2-core box. An explicit variable
 * wins over either.
 */
const PROFILES = {
  default: {
    CHAOS_SECONDS: '180',
    CHAOS_RATE: '80',
    CHAOS_KILLS: '20',
    CHAOS_STOPS: '2',
    CHAOS_BROKER_FAULTS: '2',
    CHAOS_DB_FAULTS: '2',
    CHAOS_SETTLE_SECONDS: '120',
  },
  ci: {
    CHAOS_SECONDS: '60',
    CHAOS_RATE: '30',
    CHAOS_KILLS: '6',
    CHAOS_STOPS: '1',
    CHAOS_BROKER_FAULTS: '1',
    CHAOS_DB_FAULTS: '1',
    CHAOS_SETTLE_SECONDS: '60',
  },
} as const;

const schema = z.object({
  CHAOS_SECONDS: int(10, 86_400),
  CHAOS_RATE: int(1, 2_000),
  CHAOS_KILLS: int(0, 10_000),
  CHAOS_STOPS: int(0, 1_000),
  CHAOS_BROKER_FAULTS: int(0, 100),
  CHAOS_DB_FAULTS: int(0, 100),
  CHAOS_SETTLE_SECONDS: int(5, 3_600),
  CHAOS_SEED: int(0, 2 ** 32 - 1).optional(),
  CHAOS_APPS: int(1, 16).default(2),
  CHAOS_RELAYS: int(1, 16).default(2),
  CHAOS_WORKERS: int(1, 16).default(2),
  CHAOS_SUBSCRIBERS_PER_APP: int(0, 100).default(1),
  CHAOS_RECOVERY_LIMIT_SECONDS: int(1, 3_600).default(60),
  // Short, so the claim of a relay frozen past it is ended within seconds, not half a minute.
  CHAOS_LEASE_MS: int(2_000, 600_000).default(5_000),
  CHAOS_REPLAYS: int(0, 100_000).default(50),
  CHAOS_KEEP: z.enum(['0', '1']).default('0'),
  CHAOS_TMPDIR: z.string().min(1).default(tmpdir()),
});

export class ChaosConfigError extends Error {
  override name = 'ChaosConfigError';
}

export function loadChaosConfig(env: NodeJS.ProcessEnv, argv: readonly string[]): ChaosConfig {
  const unknownArgs = argv.filter((a) => a !== '--ci');
  if (unknownArgs.length > 0) {
    throw new ChaosConfigError(`Unknown argument(s): ${unknownArgs.join(' ')} (only --ci is understood)`);
  }
  const profile = argv.includes('--ci') ? 'ci' : 'default';
  const present = Object.fromEntries(
    Object.entries(env).filter(
      ([key, value]) => key.startsWith('CHAOS_') && value !== undefined && value !== '',
    ),
  );
  const parsed = schema.safeParse({ ...PROFILES[profile], ...present });
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '?');
      return `  ${key}=${JSON.stringify(env[key] ?? '')}: ${issue.message}`;
    });
    throw new ChaosConfigError(`Invalid chaos configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  return Object.freeze({
    profile,
    seconds: e.CHAOS_SECONDS,
    rate: e.CHAOS_RATE,
    kills: e.CHAOS_KILLS,
    stops: e.CHAOS_STOPS,
    brokerFaults: e.CHAOS_BROKER_FAULTS,
    dbFaults: e.CHAOS_DB_FAULTS,
    seed: e.CHAOS_SEED ?? randomInt(0, 2 ** 31),
    apps: e.CHAOS_APPS,
    relays: e.CHAOS_RELAYS,
    workers: e.CHAOS_WORKERS,
    subscribersPerApp: e.CHAOS_SUBSCRIBERS_PER_APP,
    settleSeconds: e.CHAOS_SETTLE_SECONDS,
    recoveryLimitSeconds: e.CHAOS_RECOVERY_LIMIT_SECONDS,
    leaseMs: e.CHAOS_LEASE_MS,
    // The service insists on a lease of at least twice the confirm timeout.
    confirmTimeoutMs: Math.max(100, Math.floor(e.CHAOS_LEASE_MS / 2.5)),
    replays: e.CHAOS_REPLAYS,
    keep: e.CHAOS_KEEP === '1',
    tmpRoot: e.CHAOS_TMPDIR,
  });
}
