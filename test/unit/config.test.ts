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

describe('loadConfig defaults', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.databaseUrl).toBe('mysql://root@127.0.0.1:3306/outbox');
    expect(config.amqpUrl).toBe('amqp://guest:guest@127.0.0.1:5672');
    expect(config.port).toBe(4000);
    expect(config.roles).toEqual(['app', 'relay', 'worker']);
  });

  it('treats an empty variable as unset', () => {
    const config = loadConfig({ PORT: '', DATABASE_URL: '', ROLES: '' });
    expect(config.port).toBe(4000);
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
    expect(config.port).toBe(8080);
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
