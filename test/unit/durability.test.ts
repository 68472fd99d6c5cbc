import { describe, expect, it } from 'vitest';
import { judgeDurability } from '../../src/outbox/durability.js';

const mariadbDefaults = { flushLogAtTrxCommit: 1, logBin: false, syncBinlog: 0, version: '10.11.6-MariaDB' };
const mysql8Defaults = { flushLogAtTrxCommit: 1, logBin: true, syncBinlog: 1, version: '8.4.0' };

describe('the durability the server settings allow', () => {
  it('MariaDB defaults (no binary log): safe with the barrier after each claim', () => {
    expect(judgeDurability(mariadbDefaults)).toEqual({ barrier: true, problems: [] });
  });

  it('MySQL 8 defaults (binary log, sync_binlog=1): a visible commit is durable, no barrier', () => {
    expect(judgeDurability(mysql8Defaults)).toEqual({ barrier: false, problems: [] });
  });

  it('innodb_flush_log_at_trx_commit other than 1 is named as a problem, on either server', () => {
    for (const flush of [0, 2]) {
      for (const base of [mariadbDefaults, mysql8Defaults]) {
        const { problems } = judgeDurability({ ...base, flushLogAtTrxCommit: flush });
        expect(problems).toHaveLength(1);
        expect(problems[0]).toContain(`innodb_flush_log_at_trx_commit=${flush}`);
      }
    }
  });

  it('a binary log not synced at each commit is named as a problem, and the barrier is kept', () => {
    const verdict = judgeDurability({ ...mysql8Defaults, syncBinlog: 0 });
    expect(verdict.barrier).toBe(true);
    expect(verdict.problems.join()).toContain('sync_binlog=0');
  });
});
