import { EventEmitter } from 'node:events';
import { RedisOutage } from './redis-outage';

describe('RedisOutage', () => {
  it('logs an outage once however many connections and retries fail, and its end once', () => {
    const lines: string[] = [];
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const outage = new RedisOutage({ warn: (m) => lines.push(`warn ${m}`), log: (m) => lines.push(`log ${m}`) }, () => clock);
    const a = new EventEmitter();
    const b = new EventEmitter();
    outage.watch('queue training', a);
    outage.watch('ice-events-pub', b);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6391'), { code: 'ECONNREFUSED' });
    for (let i = 0; i < 50; i++) (i % 2 ? a : b).emit('error', refused);
    expect(outage.state.downSince?.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    clock += 12_500;
    a.emit('ready');
    b.emit('ready');
    expect(lines).toEqual([
      'warn Redis unreachable since 2026-01-01T00:00:00.000Z (ice-events-pub: connect ECONNREFUSED 127.0.0.1:6391); retrying quietly until it is back',
      'log Redis back after 12.5 s',
    ]);
    expect(outage.state.downSince).toBeNull();
  });

  it('logs an error that is not about the connection as it comes', () => {
    const lines: string[] = [];
    const outage = new RedisOutage({ warn: (m) => lines.push(m), log: (m) => lines.push(m) });
    const e = new EventEmitter();
    outage.watch('queue training', e);
    e.emit('error', new Error('WRONGTYPE Operation against a key holding the wrong kind of value'));
    expect(lines).toEqual(['queue training: WRONGTYPE Operation against a key holding the wrong kind of value']);
    expect(outage.state.downSince).toBeNull();
  });
});
