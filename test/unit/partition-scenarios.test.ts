import { describe, expect, it } from 'vitest';
import { parseCuts, scenarios } from '../../scripts/chaos/partitions/scenarios.js';

const ids = (list: ReturnType<typeof scenarios>) => list.map((s) => s.id);

describe('the partition run’s scenarios', () => {
  it('run cuts of 20 s and 120 s by default, and the lengths of --cuts when given', () => {
    expect(ids(scenarios(false))).toEqual([
      ...['db-20', 'mq-20', 'both-20', 'relay-20', 'worker-20'],
      ...['db-120', 'mq-120', 'both-120', 'relay-120', 'worker-120'],
      'stop',
    ]);
    expect(ids(scenarios(false, undefined, parseCuts('20,60,120')))).toHaveLength(16);
    expect(scenarios(false, undefined, parseCuts('60')).map((s) => s.seconds)).toEqual([
      60, 60, 60, 60, 60, 20,
    ]);
  });

  it('select 60 s cuts by id, and name the known ids for an unknown one', () => {
    expect(scenarios(false, ['mq-60', 'db-60']).map((s) => [s.id, s.seconds, s.links])).toEqual([
      ['db-60', 60, ['db']],
      ['mq-60', 60, ['mq']],
    ]);
    expect(() => scenarios(false, ['db-61'])).toThrow(/known: db-20 .* db-60 .* db-120 .* stop/);
    expect(ids(scenarios(false, ['db-45'], parseCuts('45')))).toEqual(['db-45']);
  });

  it('refuse cut lengths that are not whole seconds from 5 to 600', () => {
    for (const bad of ['', '0', '4', '601', '20,x', '2.5']) expect(() => parseCuts(bad)).toThrow(/--cuts/);
    expect(parseCuts('120,20,120')).toEqual([120, 20]);
  });
});
