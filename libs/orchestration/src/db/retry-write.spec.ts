import { isTransientDbError, retryWrite } from './retry-write';

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5441'), { code: 'ECONNREFUSED' });

describe('retryWrite', () => {
  it('retries a write while the database is away, with growing waits, and returns its result once it is back', async () => {
    let clock = 0;
    const waits: number[] = [];
    let calls = 0;
    const out = await retryWrite(
      () => {
        calls++;
        return calls < 5 ? Promise.reject(refused()) : Promise.resolve('written');
      },
      {
        horizonMs: 60_000,
        initialDelayMs: 100,
        now: () => clock,
        sleep: (ms) => {
          waits.push(ms);
          clock += ms;
          return Promise.resolve();
        },
      },
    );
    expect(out).toBe('written');
    expect(calls).toBe(5);
    // Jittered between half and all of 100, 200, 400, 800 ms.
    [100, 200, 400, 800].forEach((step, i) => {
      expect(waits[i]).toBeGreaterThanOrEqual(step / 2);
      expect(waits[i]).toBeLessThanOrEqual(step);
    });
  });

  it('gives up with the last error once the horizon has passed', async () => {
    let clock = 0;
    let calls = 0;
    const p = retryWrite(
      () => {
        calls++;
        return Promise.reject(refused());
      },
      {
        horizonMs: 10_000,
        initialDelayMs: 1000,
        maxDelayMs: 4000,
        now: () => clock,
        sleep: (ms) => {
          clock += ms;
          return Promise.resolve();
        },
      },
    );
    await expect(p).rejects.toThrow('ECONNREFUSED');
    expect(clock).toBe(10_000);
    expect(calls).toBeGreaterThan(3);
  });

  it('does not retry an error of the statement itself', async () => {
    let calls = 0;
    const unique = Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' });
    await expect(
      retryWrite(
        () => {
          calls++;
          return Promise.reject(unique);
        },
        { horizonMs: 60_000 },
      ),
    ).rejects.toBe(unique);
    expect(calls).toBe(1);
  });
});

describe('isTransientDbError', () => {
  it('recognises a database that is away, directly or wrapped by TypeORM', () => {
    expect(isTransientDbError(refused())).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(
      true,
    );
    expect(isTransientDbError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isTransientDbError({ message: 'query failed', driverError: refused() })).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('the database system is starting up'), { code: '57P03' }))).toBe(true);
  });

  it('does not take a statement error for an outage', () => {
    expect(isTransientDbError(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false);
    expect(isTransientDbError(new Error('run 1 does not exist'))).toBe(false);
  });
});
