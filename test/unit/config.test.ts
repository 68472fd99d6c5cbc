import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';

/** Runs loadConfig and returns the ConfigError it throws; fails the test if it throws nothing else. */
function configErrorOf(env: Record<string, string>, argv: string[] = []): ConfigError {
  try {
    loadConfig(env, argv);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)} ${JSON.stringify(argv)}`);
}

describe('loadConfig refuses bad settings with a ConfigError naming the variable', () => {
  it('refuses PORT=abc', () => {
    const error = configErrorOf({ PORT: 'abc' });
    // The line names PORT itself, not merely another variable ending in PORT.
    expect(error.message).toMatch(/^\s*PORT="abc":/m);
    expect(error.message).not.toMatch(/METRICS_PORT/);
  });

  it('refuses a PORT outside 0–65535', () => {
    expect(configErrorOf({ PORT: '65536' }).message).toMatch(/^\s*PORT="65536":/m);
  });

  it('refuses DATABASE_URL=postgres://x', () => {
    const error = configErrorOf({ DATABASE_URL: 'postgres://x' });
    expect(error.message).toMatch(/^\s*DATABASE_URL="postgres:\/\/x":/m);
    expect(error.message).toContain('mysql:');
  });

  it('refuses ROLES=app,bogus, naming ROLES and the unknown role', () => {
    const error = configErrorOf({ ROLES: 'app,bogus' });
    expect(error.message).toContain('ROLES');
    expect(error.message).toContain('"bogus"');
    expect(error.message).not.toContain('"app"');
  });

  it('refuses an unknown role on the command line, naming the command line', () => {
    const error = configErrorOf({}, ['relay', 'nope']);
    expect(error.message).toContain('command line');
    expect(error.message).toContain('"nope"');
  });

  it('names every bad variable at once', () => {
    const error = configErrorOf({ PORT: 'abc', DATABASE_URL: 'postgres://x' });
    expect(error.message).toMatch(/^\s*PORT=/m);
    expect(error.message).toMatch(/^\s*DATABASE_URL=/m);
  });
});

describe('the HTTP and WebSocket edge settings', () => {
  it('has closed, bounded defaults: one mutation, no CORS, timeouts, connection and subscription caps', () => {
    const { http } = loadConfig({}).app;
    expect(http).toMatchObject({
      maxMutations: 1,
      adminToken: undefined,
      corsOrigins: [],
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      maxWsConnections: 1000,
      maxSubscriptionsPerConnection: 100,
    });
  });

  it('takes CORS_ORIGINS as a comma-separated list of origins', () => {
    const { http } = loadConfig({
      CORS_ORIGINS: 'https://studio.apollographql.com, http://localhost:3000',
    }).app;
    expect(http.corsOrigins).toEqual(['https://studio.apollographql.com', 'http://localhost:3000']);
  });

  it('refuses a CORS_ORIGINS entry that is not an origin, naming it', () => {
    for (const bad of ['https://app.example/', 'https://app.example/path', '*', 'app.example']) {
      const error = configErrorOf({ CORS_ORIGINS: `https://ok.example,${bad}` });
      expect(error.message).toMatch(/^\s*CORS_ORIGINS=/m);
      expect(error.message).toContain(JSON.stringify(bad));
    }
  });

  it('refuses HTTP_HEADERS_TIMEOUT_MS above HTTP_REQUEST_TIMEOUT_MS', () => {
    const error = configErrorOf({ HTTP_HEADERS_TIMEOUT_MS: '20000', HTTP_REQUEST_TIMEOUT_MS: '10000' });
    expect(error.message).toMatch(/^\s*HTTP_HEADERS_TIMEOUT_MS=20000:/m);
  });
});

describe('loadConfig defaults', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.databaseUrl).toBe('mysql://root@127.0.0.1:3306/outbox');
    expect(config.amqpUrl).toBe('amqp://guest:guest@127.0.0.1:5672');
    expect(config.app.port).toBe(4000);
    expect(config.roles).toEqual(['app', 'relay', 'worker']);
  });

  it('treats an empty variable as unset', () => {
    const config = loadConfig({ PORT: '', DATABASE_URL: '', ROLES: '' });
    expect(config.app.port).toBe(4000);
    expect(config.databaseUrl).toBe('mysql://root@127.0.0.1:3306/outbox');
    expect(config.roles).toEqual(['app', 'relay', 'worker']);
  });

  it('takes the values that are set', () => {
    const config = loadConfig({
      PORT: '8080',
      DATABASE_URL: 'mysql://u:p@db.internal:3307/shop',
      AMQP_URL: 'amqps://u:p@mq.internal:5671',
      ROLES: 'worker, APP',
    });
    expect(config.app.port).toBe(8080);
    expect(config.databaseUrl).toBe('mysql://u:p@db.internal:3307/shop');
    expect(config.amqpUrl).toBe('amqps://u:p@mq.internal:5671');
    // Normalized to the fixed start order.
    expect(config.roles).toEqual(['app', 'worker']);
  });
});

describe('roles from the command line', () => {
  it("lets argv ['relay'] win over ROLES", () => {
    expect(loadConfig({ ROLES: 'app,worker' }, ['relay']).roles).toEqual(['relay']);
  });

  it('falls back to ROLES when argv is empty', () => {
    expect(loadConfig({ ROLES: 'app,worker' }, []).roles).toEqual(['app', 'worker']);
  });
});

describe('durations', () => {
  it.each([
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['60000', 60_000],
    ['120000ms', 120_000],
  ])('reads IDEMPOTENCY_KEY_RETENTION=%s as %i ms', (value, ms) => {
    expect(loadConfig({ IDEMPOTENCY_KEY_RETENTION: value }).retention.idempotencyKeysMs).toBe(ms);
  });

  it('reads OUTBOX_RETENTION and INBOX_RETENTION in any unit', () => {
    const config = loadConfig({ OUTBOX_RETENTION: '36h', INBOX_RETENTION: '2d' });
    expect(config.retention.outboxMs).toBe(36 * 3_600_000);
    expect(config.retention.inboxMs).toBe(2 * 86_400_000);
  });

  it.each(['7w', '1.5h', '-1d', '7 d', ' 7d', 'd', '7D', 'P7D'])(
    'refuses OUTBOX_RETENTION=%s, saying what a duration is',
    (value) => {
      const error = configErrorOf({ OUTBOX_RETENTION: value });
      expect(error.message).toContain(`  OUTBOX_RETENTION=${JSON.stringify(value)}: `);
      expect(error.message).toContain('90s, 30m, 24h or 7d');
    },
  );

  it('refuses a duration below one minute or above ten years', () => {
    expect(configErrorOf({ IDEMPOTENCY_KEY_RETENTION: '59s' }).message).toMatch(
      /^\s*IDEMPOTENCY_KEY_RETENTION="59s":/m,
    );
    expect(configErrorOf({ IDEMPOTENCY_KEY_RETENTION: '3651d' }).message).toMatch(
      /^\s*IDEMPOTENCY_KEY_RETENTION="3651d":/m,
    );
    expect(loadConfig({ IDEMPOTENCY_KEY_RETENTION: '1m' }).retention.idempotencyKeysMs).toBe(60_000);
    expect(
      loadConfig({ INBOX_RETENTION: '3650d', IDEMPOTENCY_KEY_RETENTION: '3650d' }).retention
        .idempotencyKeysMs,
    ).toBe(3650 * 86_400_000);
  });
});

describe('cross-checks between variables', () => {
  it('refuses an INBOX_RETENTION shorter than OUTBOX_RETENTION, naming both', () => {
    const error = configErrorOf({ OUTBOX_RETENTION: '7d', INBOX_RETENTION: '6d' });
    expect(error.message).toMatch(
      /^\s*INBOX_RETENTION=6d: must not be shorter than OUTBOX_RETENTION \(7d\)/m,
    );
  });

  it('compares durations, not their text: 168h equals 7d', () => {
    expect(loadConfig({ OUTBOX_RETENTION: '7d', INBOX_RETENTION: '168h' }).retention.inboxMs).toBe(
      7 * 86_400_000,
    );
  });

  it('shows the default INBOX_RETENTION when only OUTBOX_RETENTION was raised above it', () => {
    const error = configErrorOf({ OUTBOX_RETENTION: '30d' });
    expect(error.message).toMatch(
      /^\s*INBOX_RETENTION=14d: must not be shorter than OUTBOX_RETENTION \(30d\)/m,
    );
  });

  it('refuses RELAY_BACKOFF_MAX_MS below RELAY_BACKOFF_BASE_MS', () => {
    const error = configErrorOf({ RELAY_BACKOFF_BASE_MS: '5000', RELAY_BACKOFF_MAX_MS: '4999' });
    expect(error.message).toMatch(/^\s*RELAY_BACKOFF_MAX_MS=4999:.*RELAY_BACKOFF_BASE_MS \(5000\)/m);
  });

  it('refuses a RELAY_LEASE_MS above 45 s: writers waiting on a frozen claim would hit the lock wait timeout', () => {
    const error = configErrorOf({ RELAY_LEASE_MS: '45001' });
    expect(error.message).toMatch(/^\s*RELAY_LEASE_MS=45001:.*innodb_lock_wait_timeout/m);
    expect(loadConfig({ RELAY_LEASE_MS: '45000' }).relay.leaseMs).toBe(45_000);
  });

  it('refuses a RELAY_LEASE_MS shorter than twice RELAY_CONFIRM_TIMEOUT_MS, and takes exactly twice', () => {
    const error = configErrorOf({ RELAY_LEASE_MS: '19999', RELAY_CONFIRM_TIMEOUT_MS: '10000' });
    expect(error.message).toMatch(/^\s*RELAY_LEASE_MS=19999:.*RELAY_CONFIRM_TIMEOUT_MS \(10000\)/m);
    expect(loadConfig({ RELAY_LEASE_MS: '20000', RELAY_CONFIRM_TIMEOUT_MS: '10000' }).relay.leaseMs).toBe(
      20_000,
    );
  });
});

describe('numbers and bounds', () => {
  it.each(['0x1F90', '8e3', '80.5', '-1', ' 80', '+80'])('refuses PORT=%s: plain digits only', (value) => {
    expect(configErrorOf({ PORT: value }).message).toMatch(/^\s*PORT=.*: must be a whole number/m);
  });

  it.each([
    ['DB_POOL_SIZE', '1', '2'],
    ['DB_COMPONENT_POOL_SIZE', '0', '1'],
    ['RELAY_LANES', '65', '64'],
    ['WORKER_ORDER_WAIT_MS', '9', '10'],
    ['WORKER_MAX_MESSAGE_BYTES', '1023', '1024'],
    ['OUTBOX_MAX_PAYLOAD_BYTES', '255', '256'],
    ['LIVE_POLL_INTERVAL_MS', '60001', '60000'],
    ['LIVE_PAGE_SIZE', '9', '10'],
    ['LIVE_BUFFER_SIZE', '1000001', '1000000'],
    ['PRUNE_INTERVAL_MS', '99', '100'],
    ['PRUNE_BATCH_SIZE', '0', '1'],
  ])('refuses %s=%s and takes %s', (variable, outside, inside) => {
    expect(configErrorOf({ [variable]: outside }).message).toMatch(
      new RegExp(`^\\s*${variable}="${outside}":`, 'm'),
    );
    expect(() => loadConfig({ [variable]: inside })).not.toThrow();
  });

  it('reads GRAPHQL_INTROSPECTION as true or false only', () => {
    expect(loadConfig({ GRAPHQL_INTROSPECTION: 'false' }).app.http.introspection).toBe(false);
    expect(configErrorOf({ GRAPHQL_INTROSPECTION: 'yes' }).message).toMatch(
      /GRAPHQL_INTROSPECTION="yes": must be true or false/,
    );
  });
});

describe('secrets in error messages', () => {
  it('never shows ADMIN_TOKEN', () => {
    const error = configErrorOf({ ADMIN_TOKEN: 'short-secret' });
    expect(error.message).toContain('ADMIN_TOKEN="***"');
    expect(error.message).not.toContain('short-secret');
  });

  it('hides the password of a bad URL', () => {
    const error = configErrorOf({ AMQP_URL: 'http://user:hunter2@mq:5672' });
    expect(error.message).toContain('user:***@');
    expect(error.message).not.toContain('hunter2');
  });
});

describe('the parsed configuration', () => {
  it('has the documented defaults for the outbox, worker, live feed and retention', () => {
    const config = loadConfig({});
    expect(config.worker).toMatchObject({ orderWaitMs: 100, maxMessageBytes: 256 * 1024 });
    expect(config.outboxMaxPayloadBytes).toBe(64 * 1024);
    expect(config.app.live).toEqual({
      pollIntervalMs: 1_000,
      pageSize: 500,
      bufferSize: 1_000,
      holeTimeoutMs: 5_000,
    });
    expect(config.retention).toEqual({
      outboxMs: 7 * 86_400_000,
      inboxMs: 14 * 86_400_000,
      idempotencyKeysMs: 86_400_000,
      intervalMs: 60_000,
      batchSize: 1_000,
    });
  });

  it('is frozen all the way down', () => {
    const config = loadConfig({});
    for (const part of [
      config,
      config.roles,
      config.app,
      config.app.http,
      config.relay,
      config.worker,
      config.app.live,
      config.retention,
    ]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
    // ES modules are strict: writing to a frozen object throws rather than being ignored.
    expect(() => {
      (config.app as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.relay as { lanes: number }).lanes = 1;
    }).toThrow(TypeError);
  });
});

describe('the bounds on every wait', () => {
  it('default to seconds, not the operating system’s hours', () => {
    const config = loadConfig({});
    expect(config.app.requestTimeoutMs).toBe(10_000);
    expect(config.db).toEqual({
      queryTimeoutMs: 5_000,
      acquireTimeoutMs: 3_000,
      connectTimeoutMs: 3_000,
      idleTransactionTimeoutMs: 30_000,
      durability: 'refuse',
    });
    expect(config.tcpKeepAliveMs).toBe(5_000);
    expect(config.amqp).toEqual({ heartbeatSeconds: 5, connectTimeoutMs: 3_000 });
  });

  it.each([
    ['REQUEST_TIMEOUT_MS', '0'],
    ['DB_QUERY_TIMEOUT_MS', '10s'],
    ['DB_ACQUIRE_TIMEOUT_MS', '-1'],
    ['DB_CONNECT_TIMEOUT_MS', '99'],
    ['TCP_KEEPALIVE_MS', '999'],
    ['AMQP_HEARTBEAT_S', '0'],
    ['AMQP_CONNECT_TIMEOUT_MS', 'x'],
  ])('refuses %s=%s, naming it', (name, value) => {
    expect(configErrorOf({ [name]: value }).message).toMatch(new RegExp(`^\\s*${name}="${value}":`, 'm'));
  });

  it('refuses an idle transaction timeout that would end a relay claim waiting for its confirms', () => {
    const error = configErrorOf({
      DB_IDLE_TRANSACTION_TIMEOUT_MS: '15000',
      RELAY_CONFIRM_TIMEOUT_MS: '10000',
    });
    expect(error.message).toContain(
      'DB_IDLE_TRANSACTION_TIMEOUT_MS=15000: must be at least twice RELAY_CONFIRM_TIMEOUT_MS',
    );
  });
});
