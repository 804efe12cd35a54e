import { randomBytes, randomUUID } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import IORedis from 'ioredis';
import { IceError, initBackend, meanInRankOrder } from '@ice/core';
import { RedisGradientReducer } from './redis-gradient.reducer';

/** Against the real Redis (REDIS_URL or the local server): two reducers in one process play ranks 0 and 1. */
const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('RedisGradientReducer', () => {
  const keyPrefix = `ice-test-allreduce-${randomBytes(4).toString('hex')}`;
  let redis: IORedis;
  const reducers: RedisGradientReducer[] = [];
  const reducer = (runId: string, rank: number, worldSize: number, timeoutMs = 10_000): RedisGradientReducer => {
    const r = new RedisGradientReducer({ redisUrl: REDIS_URL, keyPrefix, runId, rank, worldSize, timeoutMs });
    reducers.push(r);
    return r;
  };
  const keysLeft = async (): Promise<string[]> => redis.keys(`${keyPrefix}:*`);

  beforeAll(async () => {
    await initBackend();
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    for (const r of reducers) await r.close();
    const left = await keysLeft();
    if (left.length) await redis.del(...left);
    await redis.quit();
  });

  /** Gradients of two parameters, different per rank and step, with values whose float32 sums round. */
  function grads(rank: number, step: number): Map<string, tf.Tensor> {
    const a = Float32Array.from({ length: 6 }, (_, i) => Math.fround(Math.sin(rank * 7 + step * 3 + i) / 3));
    const b = Float32Array.from({ length: 4 }, (_, i) => Math.fround(1e-3 * (rank + 1) * (i - step) + 0.1));
    return new Map<string, tf.Tensor>([
      ['blocks.0.w', tf.tensor(a, [2, 3])],
      ['a.bias', tf.tensor(b, [4])],
    ]);
  }

  it('gives both ranks the mean, bit-identical, and deletes the step’s keys', async () => {
    const runId = randomUUID();
    const [r0, r1] = [reducer(runId, 0, 2), reducer(runId, 1, 2)];
    const g0 = grads(0, 0);
    const g1 = grads(1, 0);
    // Rank 1 arrives a little later: rank 0 blocks until it does.
    const p0 = r0.allReduceMean(0, g0);
    await new Promise((r) => setTimeout(r, 150));
    const [m0, m1] = await Promise.all([p0, r1.allReduceMean(0, g1)]);
    try {
      expect([...m0.keys()].sort()).toEqual(['a.bias', 'blocks.0.w']);
      for (const name of m0.keys()) {
        const a = m0.get(name)!;
        const b = m1.get(name)!;
        expect(a.shape).toEqual(g0.get(name)!.shape);
        // Identical bits on both ranks.
        expect(Buffer.from((a.dataSync() as Float32Array).buffer).equals(Buffer.from((b.dataSync() as Float32Array).buffer))).toBe(true);
        const expected = meanInRankOrder([g0.get(name)!.dataSync() as Float32Array, g1.get(name)!.dataSync() as Float32Array]);
        expect(Array.from(a.dataSync())).toEqual(Array.from(expected));
        const x = g0.get(name)!.dataSync();
        const y = g1.get(name)!.dataSync();
        Array.from(a.dataSync()).forEach((v, i) => expect(v).toBeCloseTo((x[i] + y[i]) / 2, 7));
      }
      // The inputs are the caller's: still alive.
      expect(g0.get('a.bias')!.isDisposed).toBe(false);
      expect(await keysLeft()).toEqual([]);
    } finally {
      tf.dispose([...g0.values(), ...g1.values(), ...m0.values(), ...m1.values()]);
    }
  });

  it('adds no tensors across steps (the callers dispose what they get)', async () => {
    const runId = randomUUID();
    const [r0, r1] = [reducer(runId, 0, 2), reducer(runId, 1, 2)];
    const counts: number[] = [];
    for (let step = 0; step < 4; step++) {
      const g = [grads(0, step), grads(1, step)];
      const out = await Promise.all([r0.allReduceMean(step, g[0]), r1.allReduceMean(step, g[1])]);
      tf.dispose([...g.flatMap((m) => [...m.values()]), ...out.flatMap((m) => [...m.values()])]);
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size).toBe(1);
    expect(await keysLeft()).toEqual([]);
  });

  it('times out with a RANK_TIMEOUT error naming the missing rank; the step’s keys expire', async () => {
    const runId = randomUUID();
    const r0 = reducer(runId, 0, 3, 600);
    const r2 = reducer(runId, 2, 3, 600);
    const g = [grads(0, 5), grads(2, 5)];
    try {
      const outcomes = await Promise.allSettled([r0.allReduceMean(5, g[0]), r2.allReduceMean(5, g[1])]);
      for (const o of outcomes) {
        expect(o.status).toBe('rejected');
        const e = (o as PromiseRejectedResult).reason as IceError;
        expect(e).toBeInstanceOf(IceError);
        expect(e.code).toBe('RANK_TIMEOUT');
        expect(e.message).toMatch(/waited 600 ms at step 5 for the gradients of rank 1 \(of 3\)/);
        expect(e.details).toMatchObject({ missingRanks: [1], step: 5 });
      }
      // Each rank took its own gradient back; the arrival notes left over expire.
      const left = await keysLeft();
      expect(left.some((k) => k.includes(':g:'))).toBe(false);
      for (const k of left) expect(await redis.ttl(k)).toBeGreaterThan(0);
    } finally {
      tf.dispose(g.flatMap((m) => [...m.values()]));
    }
  });

  it('stops waiting when cancelled', async () => {
    const r0 = reducer(randomUUID(), 0, 2);
    const g = grads(0, 0);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    try {
      await expect(r0.allReduceMean(0, g, ac.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    } finally {
      tf.dispose([...g.values()]);
    }
  });

  it('with one rank returns a copy and touches no Redis', async () => {
    const r = new RedisGradientReducer({
      redis: { status: 'ready' } as unknown as IORedis,
      keyPrefix,
      runId: randomUUID(),
      rank: 0,
      worldSize: 1,
      timeoutMs: 1000,
    });
    const g = grads(0, 0);
    const out = await r.allReduceMean(0, g);
    try {
      expect(Array.from(out.get('a.bias')!.dataSync())).toEqual(Array.from(g.get('a.bias')!.dataSync()));
    } finally {
      tf.dispose([...g.values(), ...out.values()]);
    }
  });

  it('refuses a rank outside [0, worldSize)', () => {
    expect(
      () => new RedisGradientReducer({ redisUrl: REDIS_URL, keyPrefix, runId: randomUUID(), rank: 2, worldSize: 2, timeoutMs: 1000 }),
    ).toThrow(/rank must be/);
  });
});
