import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { ADDON_PATH } from '@ice/native-kernels';
import IORedis from 'ioredis';
import { RingPlan, ringOrderSum } from './ring-allreduce';
import { encodeHeader, FrameDecoder, FrameType, jsonPayload, type FrameHeader } from './ring-frame';
import { commonResumeStep, RingGroup, type RingGroupOptions } from './ring-group';
import { rankOrderSum, rankVector } from './fixtures/ring-rank.fixture';

/** Ranks as RingGroups in this process, over real TCP on loopback, meeting through the real Redis. */
const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('RingGroup (TCP ring, Redis rendezvous)', () => {
  const keyPrefix = `ice-test-ring-${randomBytes(4).toString('hex')}`;
  let redis: IORedis;
  const groups: RingGroup[] = [];
  const keysLeft = (): Promise<string[]> => redis.keys(`${keyPrefix}:*`);

  function group(runId: string, rank: number, worldSize: number, o: Partial<RingGroupOptions> = {}): RingGroup {
    const g = new RingGroup({ redis, keyPrefix, runId, rank, worldSize, timeoutMs: 20_000, heartbeatTimeoutMs: 10_000, pollMs: 50, ...o });
    groups.push(g);
    return g;
  }

  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    await Promise.all(groups.map((g) => g.close()));
    const left = await keysLeft();
    if (left.length) await redis.del(...left);
    await redis.quit();
  });

  const bits = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

  it.each([
    [2, 1001, 1 << 20],
    [3, 1001, 64],
    [4, 3, 4],
    [3, 0, 64],
    [2, 300_000, 4096],
  ])(
    'W = %i, N = %i (%i-byte segments): every rank ends each step with the ring-order sum, bit-identical; a clean close deletes the keys',
    async (W, n, segmentBytes) => {
      const runId = randomUUID();
      const gs = Array.from({ length: W }, (_, r) => group(runId, r, W, { segmentBytes }));
      for (let step = 3; step < 6; step++) {
        const inputs = gs.map((_, r) => rankVector(r, step, n));
        const data = inputs.map((v) => Float32Array.from(v));
        await Promise.all(gs.map((g, r) => g.allReduceSum(step, data[r])));
        const expected = ringOrderSum(inputs, new RingPlan(n, W, 0, segmentBytes / 4));
        for (const d of data) expect(bits(d).equals(bits(expected))).toBe(true);
      }
      expect(gs.every((g) => g.formedRound?.gen === 1)).toBe(true);
      await Promise.all(gs.map((g) => g.close()));
      expect(await keysLeft()).toEqual([]);
    },
  );

  it('waits for a late rank and meets it as soon as it joins', async () => {
    const runId = randomUUID();
    const [g0, g1, g2] = [group(runId, 0, 3), group(runId, 1, 3), group(runId, 2, 3)];
    const data = [0, 1, 2].map((r) => rankVector(r, 0, 100));
    const early = Promise.all([g0.allReduceSum(0, data[0]), g1.allReduceSum(0, data[1])]);
    await new Promise((r) => setTimeout(r, 1500));
    const joined = Date.now();
    await Promise.all([early, g2.allReduceSum(0, data[2])]);
    // Polling every 50 ms, plus connecting: far below the 20 s the others would wait.
    expect(Date.now() - joined).toBeLessThan(2000);
    expect(bits(data[0]).equals(bits(data[2]))).toBe(true);
  });

  it('gives up after the timeout naming the ranks that never came, and takes its entry back', async () => {
    const runId = randomUUID();
    const [g0, g2] = [group(runId, 0, 3, { timeoutMs: 600 }), group(runId, 2, 3, { timeoutMs: 600 })];
    const outcomes = await Promise.allSettled([g0.allReduceSum(5, new Float32Array(8)), g2.allReduceSum(5, new Float32Array(8))]);
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      const e = (o as PromiseRejectedResult).reason as { code: string; message: string; details: Record<string, unknown> };
      expect(e.code).toBe('RANK_TIMEOUT');
      expect(e.message).toMatch(/waited 600 ms at step 5 for rank 1 \(of 3\) to join the all-reduce group/);
      expect(e.message).toMatch(/Retryable/);
      expect(e.details).toMatchObject({ missingRanks: [1], step: 5 });
    }
    await Promise.all([g0.close(), g2.close()]);
    // The round holds no entries any more (nobody will connect to a listener that is gone); what is left expires.
    const left = await keysLeft();
    expect(left.filter((k) => k.includes(runId))).toEqual([`${keyPrefix}:${runId}:round`]);
    expect(await redis.ttl(`${keyPrefix}:${runId}:round`)).toBeGreaterThan(0);
  });

  it('says how the job goes on in its failure messages', async () => {
    const runId = randomUUID();
    const last = group(runId, 0, 2, { timeoutMs: 300, attempt: { number: 3, of: 3 } });
    await expect(last.allReduceSum(0, new Float32Array(4))).rejects.toThrow(/This was attempt 3 of 3, the last: the run fails/);
    const retried = group(randomUUID(), 0, 2, { timeoutMs: 300, attempt: { number: 1, of: 3 } });
    await expect(retried.allReduceSum(0, new Float32Array(4))).rejects.toThrow(
      /Attempt 1 of 3 fails; the job is retried from its last checkpoint/,
    );
  });

  it('refuses to meet ranks that resume at different steps, and ranks with different models', async () => {
    const runId = randomUUID();
    const [a, b] = [group(runId, 0, 2), group(runId, 1, 2)];
    const steps = await Promise.allSettled([a.allReduceSum(8, new Float32Array(4)), b.allReduceSum(4, new Float32Array(4))]);
    for (const o of steps) {
      expect((o as PromiseRejectedResult).reason).toMatchObject({
        code: 'RANK_TIMEOUT',
        message: expect.stringMatching(
          /resume at different steps \(rank 0 at step 8, rank 1 at step 4\) and hold no checkpoint of a common step/,
        ) as unknown,
      });
    }
    const other = randomUUID();
    const [c, d] = [group(other, 0, 2), group(other, 1, 2)];
    const sizes = await Promise.allSettled([c.allReduceSum(0, new Float32Array(4)), d.allReduceSum(0, new Float32Array(5))]);
    for (const o of sizes) {
      expect((o as PromiseRejectedResult).reason).toMatchObject({
        code: 'INPUT_INVALID',
        message: expect.stringMatching(/train different models/) as unknown,
      });
    }
  });

  it('meets ranks one checkpoint apart at the latest step they all hold: the rank ahead is told to step back', async () => {
    const runId = randomUUID();
    const [a, b, c] = [group(runId, 0, 3), group(runId, 1, 3), group(runId, 2, 3)];
    const data = [0, 1, 2].map((r) => Float32Array.from([r + 1, 10 * (r + 1)]));
    // Ranks 0 and 2 are at step 8 holding 4 as well; rank 1 stopped before its checkpoint 8 and holds 4 and 0.
    const behind = b.allReduceSum(4, data[1], undefined, [0]);
    const ahead = await Promise.allSettled([a.allReduceSum(8, data[0], undefined, [4]), c.allReduceSum(8, data[2], undefined, [4])]);
    for (const o of ahead)
      expect((o as PromiseRejectedResult).reason).toMatchObject({
        code: 'RANKS_APART',
        details: expect.objectContaining({ resumeStep: 4 }) as unknown,
      });
    // They come back at step 4 on the same groups (not broken by it) and the ring forms there.
    await Promise.all([a.allReduceSum(4, data[0]), c.allReduceSum(4, data[2]), behind]);
    for (const d of data) expect(Array.from(d)).toEqual([6, 60]);
    await Promise.all([a, b, c].map((g) => g.close()));
  });

  it('finds the latest step every rank can resume from', () => {
    expect(
      commonResumeStep([
        [8, 4],
        [4, 0],
        [8, 4],
      ]),
    ).toBe(4);
    expect(
      commonResumeStep([
        [8, 4],
        [8, 4],
      ]),
    ).toBe(8);
    expect(
      commonResumeStep([
        [8, 4],
        [12, 8],
      ]),
    ).toBe(8);
    expect(commonResumeStep([[8], [4, 0]])).toBeUndefined();
    expect(commonResumeStep([])).toBeUndefined();
  });

  it('times out a step whose data does not come, though the peer is alive', async () => {
    const runId = randomUUID();
    const [a, b] = [group(runId, 0, 2, { timeoutMs: 800 }), group(runId, 1, 2, { timeoutMs: 800 })];
    await Promise.all([a.allReduceSum(0, new Float32Array(10)), b.allReduceSum(0, new Float32Array(10))]);
    const t0 = Date.now();
    const e = await a.allReduceSum(1, new Float32Array(10)).catch((x: unknown) => x);
    expect(e).toMatchObject({
      code: 'RANK_TIMEOUT',
      message: expect.stringMatching(/waited 800 ms at step 1 for the ring's data from rank 1/) as unknown,
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    // The group is broken for good: rank 1 learns it at once, and so does a later call on rank 0.
    await expect(b.allReduceSum(1, new Float32Array(10))).rejects.toMatchObject({ code: 'RANK_TIMEOUT' });
    await expect(a.allReduceSum(2, new Float32Array(10))).rejects.toBe(e);
  });

  it('a neighbour that leaves between steps fails only the next step; leaving after it is still clean', async () => {
    const runId = randomUUID();
    const [a, b] = [group(runId, 0, 2), group(runId, 1, 2)];
    await Promise.all([a.allReduceSum(0, new Float32Array(10)), b.allReduceSum(0, new Float32Array(10))]);
    await b.close();
    await new Promise((r) => setTimeout(r, 200));
    await expect(a.allReduceSum(1, new Float32Array(10))).rejects.toMatchObject({
      message: expect.stringMatching(/it left the group/) as unknown,
    });
    await a.close();
    expect((await keysLeft()).filter((k) => k.includes(runId))).toEqual([]);
  });

  it('stops at once when cancelled while waiting for the group, and while reducing (its peers fail fast)', async () => {
    const ac = new AbortController();
    const lonely = group(randomUUID(), 0, 2);
    setTimeout(() => ac.abort(), 200);
    const t0 = Date.now();
    await expect(lonely.allReduceSum(0, new Float32Array(4), ac.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(Date.now() - t0).toBeLessThan(2000);

    const runId = randomUUID();
    const gs = [0, 1, 2].map((r) => group(runId, r, 3));
    const n = 3_000_000;
    await Promise.all(gs.map((g) => g.allReduceSum(0, new Float32Array(n))));
    const stop = new AbortController();
    // Rank 1 and 2 reduce step 1; rank 0 enters it and is cancelled mid-way.
    const others = [gs[1].allReduceSum(1, new Float32Array(n)), gs[2].allReduceSum(1, new Float32Array(n))].map((p) =>
      p.catch((e: unknown) => e),
    );
    const mine = gs[0].allReduceSum(1, new Float32Array(n), stop.signal).catch((e: unknown) => e);
    setImmediate(() => stop.abort());
    const t1 = Date.now();
    expect(await mine).toMatchObject({ code: 'CANCELLED' });
    for (const e of await Promise.all(others))
      expect(e).toMatchObject({ code: 'RANK_TIMEOUT', message: expect.stringMatching(/lost/) as unknown });
    expect(Date.now() - t1).toBeLessThan(5000);
  });

  it('gives up at the timeout when a rank advertises an address nobody can reach, and says what to check', async () => {
    const runId = randomUUID();
    const o = { timeoutMs: 1500, heartbeatTimeoutMs: 400 };
    // Rank 1 listens on 127.0.0.1 but tells the others to come to 127.0.0.2 (nothing listens there).
    const [a, b] = [group(runId, 0, 2, o), group(runId, 1, 2, { ...o, advertiseHost: '127.0.0.2' })];
    const t0 = Date.now();
    const [ea, eb] = await Promise.all(
      [a.allReduceSum(0, new Float32Array(4)), b.allReduceSum(0, new Float32Array(4))].map((p) => p.catch((e: unknown) => e)),
    );
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(ea).toMatchObject({
      code: 'RANK_TIMEOUT',
      message: expect.stringMatching(
        /could not connect the all-reduce ring at step 0 within 1500 ms; last problem: cannot connect to rank 1 at 127\.0\.0\.2:\d+: .*ALLREDUCE_ADVERTISE_HOST/,
      ) as unknown,
    });
    expect(eb).toMatchObject({ code: 'RANK_TIMEOUT', message: expect.stringMatching(/could not connect the all-reduce ring/) as unknown });
  });

  it('binds the first free ports of a fixed range, and says so when the range is full', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const base = (probe.address() as net.AddressInfo).port;
    probe.close();
    const ports = { from: base, to: base + 1 };
    const runId = randomUUID();
    const [a, b] = [group(runId, 0, 2, { ports }), group(runId, 1, 2, { ports })];
    await Promise.all([a.allReduceSum(0, new Float32Array(4)), b.allReduceSum(0, new Float32Array(4))]).catch((e: Error) => {
      // Another process may hold a port of the pair; the range logic is what is tested here.
      if (!/no free port/.test(e.message)) throw e;
    });
    expect([a.address?.port, b.address?.port].sort()).toEqual([base, base + 1]);
    // Both ports are taken until the groups close... the formed groups gave them back; hold them again to fill the range.
    const holders = [net.createServer(), net.createServer()];
    await Promise.all(holders.map((h, i) => new Promise<void>((r) => h.listen(base + i, '127.0.0.1', r))));
    try {
      const c = group(randomUUID(), 0, 2, { ports });
      await expect(c.allReduceSum(0, new Float32Array(4))).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(new RegExp(`no free port for the all-reduce in ALLREDUCE_PORTS ${base}-${base + 1}`)) as unknown,
      });
    } finally {
      holders.forEach((h) => h.close());
    }
  });

  it('turns away connections of another run, and drops a peer that speaks another protocol', async () => {
    const g = group(randomUUID(), 0, 2, { timeoutMs: 5000 });
    const waiting = g.allReduceSum(0, new Float32Array(4)).catch((e: unknown) => e);
    while (!g.address) await new Promise((r) => setTimeout(r, 10));
    const { port } = g.address;

    const frames: { h: FrameHeader; payload: string }[] = [];
    const s = net.connect({ host: '127.0.0.1', port });
    const dec = new FrameDecoder((h, p) => frames.push({ h, payload: p.toString() }), 1 << 16);
    s.on('data', (d: Buffer) => dec.push(d));
    const closed = new Promise((r) => s.on('close', r));
    const hello = jsonPayload({ runId: 'someone-else', roundId: 'x', gen: 1, rank: 1, session: 's', step: 0, length: 4 });
    s.write(Buffer.concat([encodeHeader({ type: FrameType.Hello, ringStep: 0, step: 0, index: 0 }, hello.length), hello]));
    await closed;
    expect(frames.map((f) => f.h.type)).toEqual([FrameType.Reject]);
    expect(frames[0].payload).toMatch(/belongs to run .*, not someone-else/);

    const t = net.connect({ host: '127.0.0.1', port });
    const gone = new Promise((r) => t.on('close', r));
    const bad = encodeHeader({ type: FrameType.Hello, ringStep: 0, step: 0, index: 0 }, 0);
    bad.writeUInt8(99, 5);
    t.write(bad);
    await gone;
    t.destroy();
    await g.close();
    expect(await waiting).toMatchObject({ code: 'CANCELLED' });
  });

  describe('through shared memory (every rank on this machine, the native addon built)', () => {
    const shm = { addonPath: ADDON_PATH };
    const segmentsOf = (session: string): string[] => fs.readdirSync('/dev/shm').filter((f) => f.includes(session));

    it.each([
      [2, 300_001],
      [3, 1001],
      [4, 3],
    ])(
      'W = %i, N = %i: the group chooses shared memory, every step is the rank-order sum (or mean) on every rank, and /dev/shm is left clean',
      async (W, n) => {
        const runId = randomUUID();
        const gs = Array.from({ length: W }, (_, r) => group(runId, r, W, shm));
        for (let step = 0; step < 5; step++) {
          const inputs = gs.map((_, r) => rankVector(r, step, n));
          const data = inputs.map((v) => Float32Array.from(v));
          // Odd steps average (the reducer's call), even steps sum.
          const mean = step % 2 === 1;
          await Promise.all(gs.map((g, r) => (mean ? g.allReduceMean(step, data[r]) : g.allReduceSum(step, data[r]))));
          const sum = rankOrderSum(inputs);
          const want = mean ? sum.map((v) => Math.fround(v / W)) : sum;
          for (const d of data) expect(bits(d).equals(bits(want))).toBe(true);
          // The names go after the first all-reduce (every rank has mapped every segment by then).
          for (const g of gs) expect(segmentsOf(g.session)).toEqual([]);
        }
        expect(gs.map((g) => g.stats.transport)).toEqual(gs.map(() => 'shm'));
        await Promise.all(gs.map((g) => g.close()));
      },
    );

    it('falls back to the TCP ring, on every rank, when one rank cannot share memory or ALLREDUCE_TRANSPORT=tcp', async () => {
      const runId = randomUUID();
      const gs = [group(runId, 0, 2, shm), group(runId, 1, 2, { addonPath: '/nonexistent/ice_native.node' })];
      const data = [0, 1].map((r) => rankVector(r, 0, 1000));
      await Promise.all(gs.map((g, r) => g.allReduceSum(0, data[r])));
      expect(gs.map((g) => g.stats.transport)).toEqual(['tcp', 'tcp']);
      expect(gs[0].stats.shmUnavailable).toBe('rank 1 has no shared memory');
      expect(gs[1].stats.shmUnavailable).toMatch(/the native addon is not built/);
      expect(segmentsOf(gs[0].session)).toEqual([]); // created at formation, released when the group chose TCP
      expect(bits(data[0]).equals(bits(data[1]))).toBe(true);

      const forced = randomUUID();
      const hs = [group(forced, 0, 2, { ...shm, transport: 'tcp' }), group(forced, 1, 2, shm)];
      await Promise.all(hs.map((g, r) => g.allReduceSum(0, rankVector(r, 0, 10))));
      expect(hs.map((g) => g.stats.transport)).toEqual(['tcp', 'tcp']);
      expect(hs[0].stats.shmUnavailable).toBe('ALLREDUCE_TRANSPORT=tcp');
    });

    it('a rank whose connections drop mid-step fails the others at once, and a new group forms through shared memory again', async () => {
      const runId = randomUUID();
      const n = 2_000_000;
      const gs = [0, 1, 2].map((r) => group(runId, r, 3, { ...shm, heartbeatTimeoutMs: 30_000, timeoutMs: 60_000 }));
      await Promise.all(gs.map((g, r) => g.allReduceSum(0, rankVector(r, 0, n))));
      // Ranks 0 and 1 enter step 1; rank 2 never does and leaves (closing its sockets, as a killed process's are).
      const pending = [0, 1].map((r) =>
        gs[r].allReduceSum(1, rankVector(r, 1, n)).then(
          () => null,
          (e: Error & { code?: string }) => e,
        ),
      );
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      await gs[2].close();
      const errors = await Promise.all(pending);
      for (const e of errors) {
        expect(e).toMatchObject({ code: 'RANK_TIMEOUT' });
        expect(e!.message).toMatch(/lost its (predecessor|successor|neighbour) in the all-reduce ring/);
      }
      expect(Date.now() - t0).toBeLessThan(5000);
      const again = [0, 1, 2].map((r) => group(runId, r, 3, shm));
      const inputs = [0, 1, 2].map((r) => rankVector(r, 1, 1000));
      const data = inputs.map((v) => Float32Array.from(v));
      await Promise.all(again.map((g, r) => g.allReduceSum(1, data[r])));
      expect(again.map((g) => g.stats.transport)).toEqual(['shm', 'shm', 'shm']);
      for (const d of data) expect(bits(d).equals(bits(rankOrderSum(inputs)))).toBe(true);
    }, 60_000);
  });
});
