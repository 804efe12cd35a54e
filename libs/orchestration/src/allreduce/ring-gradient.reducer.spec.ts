import { randomBytes, randomUUID } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import IORedis from 'ioredis';
import { IceError, initBackend, meanInRankOrder } from '@ice/core';
import { RingGradientReducer, type RingGradientReducerOptions } from './ring-gradient.reducer';

/** Against the real Redis (for the rendezvous) and real loopback TCP: several reducers in one process play the ranks, each with its transport thread. */
const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('RingGradientReducer', () => {
  const keyPrefix = `ice-test-ringreducer-${randomBytes(4).toString('hex')}`;
  let redis: IORedis;
  const reducers: RingGradientReducer[] = [];
  const reducer = (runId: string, rank: number, worldSize: number, o: Partial<RingGradientReducerOptions> = {}): RingGradientReducer => {
    const r = new RingGradientReducer({ redisUrl: REDIS_URL, keyPrefix, runId, rank, worldSize, timeoutMs: 20_000, pollMs: 50, ...o });
    reducers.push(r);
    return r;
  };
  const keysLeft = (): Promise<string[]> => redis.keys(`${keyPrefix}:*`);

  beforeAll(async () => {
    await initBackend();
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    await Promise.all(reducers.map((r) => r.close()));
    const left = await keysLeft();
    if (left.length) await redis.del(...left);
    await redis.quit();
  });

  /** Gradients of three parameters, different per rank and step, with values whose float32 sums round. */
  function grads(rank: number, step: number): Map<string, tf.Tensor> {
    const a = Float32Array.from({ length: 6 }, (_, i) => Math.fround(Math.sin(rank * 7 + step * 3 + i) / 3));
    const b = Float32Array.from({ length: 4 }, (_, i) => Math.fround(1e-3 * (rank + 1) * (i - step) + 0.1));
    const c = Float32Array.from({ length: 5000 }, (_, i) => Math.fround(Math.cos(rank * 3.1 + i * 0.37) * 10 ** ((i % 9) - 4)));
    return new Map<string, tf.Tensor>([
      ['blocks.0.w', tf.tensor(a, [2, 3])],
      ['a.bias', tf.tensor(b, [4])],
      ['z.big', tf.tensor(c, [50, 100])],
    ]);
  }

  const bitsOf = (t: tf.Tensor): Buffer => Buffer.from((t.dataSync() as Float32Array).buffer);

  it('W = 2: both ranks get the mean, bit-identical and equal to meanInRankOrder; a clean close deletes the keys', async () => {
    const runId = randomUUID();
    const [r0, r1] = [reducer(runId, 0, 2), reducer(runId, 1, 2)];
    const g0 = grads(0, 0);
    const g1 = grads(1, 0);
    // Rank 1 arrives a little later: rank 0 waits until it does.
    const p0 = r0.allReduceMean(0, g0);
    await new Promise((r) => setTimeout(r, 150));
    const [m0, m1] = await Promise.all([p0, r1.allReduceMean(0, g1)]);
    try {
      expect([...m0.keys()].sort()).toEqual(['a.bias', 'blocks.0.w', 'z.big']);
      for (const name of m0.keys()) {
        const a = m0.get(name)!;
        expect(a.shape).toEqual(g0.get(name)!.shape);
        expect(bitsOf(a).equals(bitsOf(m1.get(name)!))).toBe(true);
        // At W = 2 the ring's order and rank order give the same bits (float addition commutes).
        const expected = meanInRankOrder([g0.get(name)!.dataSync() as Float32Array, g1.get(name)!.dataSync() as Float32Array]);
        expect(bitsOf(a).equals(Buffer.from(expected.buffer))).toBe(true);
        const x = g0.get(name)!.dataSync();
        const y = g1.get(name)!.dataSync();
        // Within one float32 rounding of the exact mean (the sum of two float32s is exact in float64).
        Array.from(a.dataSync()).forEach((v, i) =>
          expect(Math.abs(v - (x[i] + y[i]) / 2)).toBeLessThanOrEqual(2 ** -24 * Math.abs((x[i] + y[i]) / 2) * 1.0001),
        );
      }
      // The inputs are the caller's: still alive.
      expect(g0.get('a.bias')!.isDisposed).toBe(false);
    } finally {
      tf.dispose([...g0.values(), ...g1.values(), ...m0.values(), ...m1.values()]);
    }
    await Promise.all([r0.close(), r1.close()]);
    expect(await keysLeft()).toEqual([]);
  });

  it.each([
    ['tcp', 'the TCP ring sums chunk c from rank c on: within float32 rounding of meanInRankOrder'],
    ['auto', 'ranks on one machine reduce through shared memory, in rank order: meanInRankOrder exactly'],
  ] as const)('W = 3, transport %s: ranks bit-identical; %s', async (transport, _how) => {
    const runId = randomUUID();
    const rs = [0, 1, 2].map((r) => reducer(runId, r, 3, { segmentBytes: 4096, transport }));
    const gs = [0, 1, 2].map((r) => grads(r, 1));
    const ms = await Promise.all(rs.map((r, i) => r.allReduceMean(1, gs[i])));
    try {
      expect(rs.map((r) => r.lastTimings.transport)).toEqual(rs.map(() => (transport === 'tcp' ? 'tcp' : 'shm')));
      for (const name of ms[0].keys()) {
        expect(bitsOf(ms[0].get(name)!).equals(bitsOf(ms[1].get(name)!))).toBe(true);
        expect(bitsOf(ms[0].get(name)!).equals(bitsOf(ms[2].get(name)!))).toBe(true);
        const parts = gs.map((g) => g.get(name)!.dataSync() as Float32Array);
        const rankOrder = meanInRankOrder(parts);
        const got = ms[0].get(name)!.dataSync();
        if (transport === 'auto') {
          expect(bitsOf(ms[0].get(name)!).equals(Buffer.from(rankOrder.buffer))).toBe(true);
          continue;
        }
        // Two summation orders of 3 terms differ by ≤ 2γ₂·Σ|x| (γ₂ ≈ 2u, u = 2⁻²⁴); each division by 3 adds ≤ u relative.
        const u = 2 ** -24;
        got.forEach((v, i) => {
          const abs = parts.reduce((s, p) => s + Math.abs(p[i]), 0);
          expect(Math.abs(v - rankOrder[i])).toBeLessThanOrEqual(
            (4.0001 * u * abs + u * (Math.abs(v) + Math.abs(rankOrder[i]))) / 3 + 1e-44,
          );
        });
      }
    } finally {
      tf.dispose([...gs.flatMap((g) => [...g.values()]), ...ms.flatMap((m) => [...m.values()])]);
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
  });

  it('keeps the group alive while the training thread is blocked in a long synchronous step (the transport thread answers the heartbeats)', async () => {
    const runId = randomUUID();
    const [r0, r1] = [reducer(runId, 0, 2, { heartbeatTimeoutMs: 400 }), reducer(runId, 1, 2, { heartbeatTimeoutMs: 400 })];
    const g = [grads(0, 0), grads(1, 0)];
    try {
      tf.dispose((await Promise.all([r0.allReduceMean(0, g[0]), r1.allReduceMean(0, g[1])])).flatMap((m) => [...m.values()]));
      // Five heartbeat timeouts with this thread's event loop stopped, as in a long tfjs step on a CPU backend.
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        /* busy */
      }
      tf.dispose((await Promise.all([r0.allReduceMean(1, g[0]), r1.allReduceMean(1, g[1])])).flatMap((m) => [...m.values()]));
    } finally {
      tf.dispose(g.flatMap((m) => [...m.values()]));
    }
  });

  it('times out with a RANK_TIMEOUT error naming the missing rank', async () => {
    const runId = randomUUID();
    const r0 = reducer(runId, 0, 3, { timeoutMs: 600 });
    const r2 = reducer(runId, 2, 3, { timeoutMs: 600 });
    const g = [grads(0, 5), grads(2, 5)];
    try {
      const outcomes = await Promise.allSettled([r0.allReduceMean(5, g[0]), r2.allReduceMean(5, g[1])]);
      for (const o of outcomes) {
        expect(o.status).toBe('rejected');
        const e = (o as PromiseRejectedResult).reason as IceError;
        expect(e).toBeInstanceOf(IceError);
        expect(e.code).toBe('RANK_TIMEOUT');
        expect(e.message).toMatch(/waited 600 ms at step 5 for rank 1 \(of 3\) to join/);
        expect(e.details).toMatchObject({ missingRanks: [1], step: 5 });
      }
    } finally {
      tf.dispose(g.flatMap((m) => [...m.values()]));
    }
  });

  it('stops waiting when cancelled', async () => {
    const r0 = reducer(randomUUID(), 0, 2);
    const g = grads(0, 0);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    try {
      await expect(r0.allReduceMean(0, g, ac.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
      expect(Date.now() - t0).toBeLessThan(2000);
      await expect(r0.allReduceMean(0, g, ac.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    } finally {
      tf.dispose([...g.values()]);
    }
  });

  it('with one rank returns a copy and starts nothing (no thread, no Redis, no socket)', async () => {
    const r = new RingGradientReducer({
      redisUrl: 'redis://127.0.0.1:1',
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
      expect(out.get('a.bias')).not.toBe(g.get('a.bias'));
    } finally {
      tf.dispose([...g.values(), ...out.values()]);
    }
    await r.close();
  });

  it('refuses a rank outside [0, worldSize) and non-float32 gradients', async () => {
    expect(
      () => new RingGradientReducer({ redisUrl: REDIS_URL, keyPrefix, runId: randomUUID(), rank: 2, worldSize: 2, timeoutMs: 1000 }),
    ).toThrow(/rank must be/);
    const r = reducer(randomUUID(), 0, 2);
    const g = new Map<string, tf.Tensor>([['i', tf.tensor([1, 2], [2], 'int32')]]);
    await expect(r.allReduceMean(0, g)).rejects.toThrow(/gradient i is int32, expected float32/);
    tf.dispose([...g.values()]);
  });
});
