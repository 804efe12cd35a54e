import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import IORedis from 'ioredis';
import { ADDON_PATH } from '@ice/native-kernels';
import { RingPlan } from './ring-allreduce';
import { RingGroup, type RingGroupOptions } from './ring-group';
import { loadSharedMemoryAddon, SharedMemoryReduction, sharedMemoryHost, SharedSegments, type SharedMemoryAddon } from './ring-shm';
import { rankVector } from './fixtures/ring-rank.fixture';

/**
 * The shared-memory all-reduce: the reduction alone (W ranks in this process, marks passed by
 * hand in any order), then RingGroups that choose it (or not) through the real Redis rendezvous.
 */
const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** ((x_0 + x_1) + x_2) + … in float32, element by element: the order the shared-memory reduction promises. */
function rankOrderSum(parts: readonly Float32Array[]): Float32Array {
  const out = Float32Array.from(parts[0]);
  for (let k = 1; k < parts.length; k++) for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i] + parts[k][i]);
  return out;
}

const bits = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const segmentsOf = (session: string): string[] => fs.readdirSync('/dev/shm').filter((f) => f.includes(session));

let addon: SharedMemoryAddon;
beforeAll(() => {
  const loaded = loadSharedMemoryAddon(ADDON_PATH);
  if (!loaded.addon) throw new Error(`the shared-memory specs need the native addon: ${loaded.why}`);
  addon = loaded.addon;
});

describe('SharedMemoryReduction (W ranks in one process)', () => {
  /** Runs one all-reduce of `inputs` with marks delivered in an order drawn from `seed`; returns each rank's result. */
  function reduceAll(inputs: Float32Array[], seed: number, divisor = 1): Float32Array[] {
    const W = inputs.length;
    const n = inputs[0].length;
    const host = sharedMemoryHost()!;
    const made = inputs.map((_, r) => SharedSegments.create(addon, host, `spec-${randomUUID()}-${r}`, n).segments!);
    try {
      for (const [r, s] of made.entries())
        s.openPeers(
          made.map((m) => m.entry),
          r,
        );
      const data = inputs.map((v) => Float32Array.from(v));
      // Frames in flight per link (rank r → r+1), delivered FIFO per link, links picked at random.
      const links: [number, number][][] = inputs.map(() => []);
      const reductions = data.map(
        (d, r) =>
          new SharedMemoryReduction(new RingPlan(n, W, r, 1024), d, made[r].forReduction(0), addon, divisor, (phase, origin) =>
            links[r].push([phase, origin]),
          ),
      );
      let s = seed;
      const order = reductions.map((_, r) => r).sort(() => ((s = (s * 1103515245 + 12345) >>> 0) & 1 ? 1 : -1));
      for (const r of order) reductions[r].start();
      for (let guard = 0; reductions.some((x) => !x.done); guard++) {
        if (guard > 10_000) throw new Error('the marks stopped moving');
        const busy = links.map((l, r) => (l.length ? r : -1)).filter((r) => r >= 0);
        s = (s * 1103515245 + 12345) >>> 0;
        const from = busy[s % busy.length];
        const [phase, origin] = links[from].shift()!;
        reductions[(from + 1) % W].receive(phase, origin, new Float32Array(0));
      }
      expect(links.every((l) => l.length === 0)).toBe(true); // no mark left over
      return data;
    } finally {
      for (const m of made) m.release();
    }
  }

  it.each([
    [2, 1001],
    [3, 1001],
    [4, 7],
    [3, 2], // fewer elements than ranks: an empty chunk
  ])('W = %i, N = %i: every rank ends with the rank-order sum, bit for bit, whatever order the marks come in', (W, n) => {
    const inputs = Array.from({ length: W }, (_, r) => rankVector(r, 5, n));
    const want = rankOrderSum(inputs);
    for (const seed of [1, 2, 3]) for (const d of reduceAll(inputs, seed)) expect(bits(d).equals(bits(want))).toBe(true);
    // The mean: each chunk's owner divides natively; the bits of JavaScript's division rounded to float32.
    const mean = want.map((v) => Math.fround(v / W));
    for (const d of reduceAll(inputs, 4, W)) expect(bits(d).equals(bits(mean))).toBe(true);
  });

  it('refuses marks that cannot be, naming them', () => {
    const host = sharedMemoryHost()!;
    const made = [0, 1, 2].map((r) => SharedSegments.create(addon, host, `spec-${randomUUID()}-${r}`, 4).segments!);
    try {
      made[0].openPeers(
        made.map((m) => m.entry),
        0,
      );
      const red = new SharedMemoryReduction(
        new RingPlan(4, 3, 0, 4),
        new Float32Array(4),
        made[0].forReduction(0),
        addon,
        1,
        () => undefined,
      );
      red.start();
      expect(() => red.receive(2, 1, new Float32Array(0))).toThrow(/MARK of phase 2: phases are 0 and 1/);
      expect(() => red.receive(0, 0, new Float32Array(0))).toThrow(/MARK from rank 0: not another rank of 3/);
      expect(() => red.receive(0, 1, new Float32Array(3))).toThrow(/MARK with 3 floats: marks carry none/);
      red.receive(0, 1, new Float32Array(0));
      expect(() => red.receive(0, 1, new Float32Array(0))).toThrow(/MARK of phase 0 from rank 1 received twice/);
    } finally {
      for (const m of made) m.release();
    }
  });

  it("sweeps the segments of processes that are gone (a rank killed before its group's first all-reduce)", () => {
    const host = sharedMemoryHost()!;
    // A pid that is not running: beyond the kernel's pid_max.
    const orphan = addon.shmCreate('/ice-allreduce-99999999-orphan-0', 8);
    expect(orphan.byteLength).toBe(8);
    const mine = SharedSegments.create(addon, host, `spec-${randomUUID()}`, 4).segments!;
    expect(fs.readdirSync('/dev/shm')).not.toContain('ice-allreduce-99999999-orphan-0');
    expect(segmentsOf(mine.entry.name.slice(1))).toHaveLength(2); // its own are there, named by its pid
    expect(mine.entry.name).toContain(`-${process.pid}-`);
    mine.release();
  });

  it('a segment that /dev/shm cannot hold is refused up front (no SIGBUS later); unlinked names are gone', () => {
    const host = sharedMemoryHost()!;
    const huge = SharedSegments.create(addon, host, `spec-${randomUUID()}`, 2 ** 37);
    expect(huge.segments).toBeUndefined();
    expect(huge.why).toMatch(/reserving the pages of shared memory .* failed|No space left/);
    const session = `spec-${randomUUID()}`;
    const s = SharedSegments.create(addon, host, session, 16).segments!;
    expect(segmentsOf(session)).toHaveLength(2);
    s.release();
    expect(segmentsOf(session)).toEqual([]);
  });
});

describe('RingGroup through shared memory (real Redis rendezvous, ranks in this process)', () => {
  const keyPrefix = `ice-test-shm-${randomBytes(4).toString('hex')}`;
  let redis: IORedis;
  const groups: RingGroup[] = [];

  function group(runId: string, rank: number, worldSize: number, o: Partial<RingGroupOptions> = {}): RingGroup {
    const g = new RingGroup({
      redis,
      keyPrefix,
      runId,
      rank,
      worldSize,
      timeoutMs: 20_000,
      heartbeatTimeoutMs: 10_000,
      pollMs: 50,
      addonPath: ADDON_PATH,
      ...o,
    });
    groups.push(g);
    return g;
  }

  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    await Promise.all(groups.map((g) => g.close()));
    const left = await redis.keys(`${keyPrefix}:*`);
    if (left.length) await redis.del(...left);
    await redis.quit();
  });

  it.each([
    [2, 300_001],
    [3, 1001],
    [4, 3],
  ])(
    'W = %i, N = %i: the group chooses shared memory, every step is the rank-order sum (or mean) on every rank, and /dev/shm is left clean',
    async (W, n) => {
      const runId = randomUUID();
      const gs = Array.from({ length: W }, (_, r) => group(runId, r, W));
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
    const gs = [group(runId, 0, 2), group(runId, 1, 2, { addonPath: '/nonexistent/ice_native.node' })];
    const data = [0, 1].map((r) => rankVector(r, 0, 1000));
    await Promise.all(gs.map((g, r) => g.allReduceSum(0, data[r])));
    expect(gs.map((g) => g.stats.transport)).toEqual(['tcp', 'tcp']);
    expect(gs[0].stats.shmUnavailable).toBe('rank 1 has no shared memory');
    expect(gs[1].stats.shmUnavailable).toMatch(/the native addon is not built/);
    expect(segmentsOf(gs[0].session)).toEqual([]); // created at formation, released when the group chose TCP
    expect(bits(data[0]).equals(bits(data[1]))).toBe(true);

    const forced = randomUUID();
    const hs = [group(forced, 0, 2, { transport: 'tcp' }), group(forced, 1, 2)];
    await Promise.all(hs.map((g, r) => g.allReduceSum(0, rankVector(r, 0, 10))));
    expect(hs.map((g) => g.stats.transport)).toEqual(['tcp', 'tcp']);
    expect(hs[0].stats.shmUnavailable).toBe('ALLREDUCE_TRANSPORT=tcp');
  });

  it('a rank whose connections drop mid-step fails the others at once, and a new group forms through shared memory again', async () => {
    const runId = randomUUID();
    const n = 2_000_000;
    const gs = [0, 1, 2].map((r) => group(runId, r, 3, { heartbeatTimeoutMs: 30_000, timeoutMs: 60_000 }));
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
    const again = [0, 1, 2].map((r) => group(runId, r, 3));
    const inputs = [0, 1, 2].map((r) => rankVector(r, 1, 1000));
    const data = inputs.map((v) => Float32Array.from(v));
    await Promise.all(again.map((g, r) => g.allReduceSum(1, data[r])));
    expect(again.map((g) => g.stats.transport)).toEqual(['shm', 'shm', 'shm']);
    for (const d of data) expect(bits(d).equals(bits(rankOrderSum(inputs)))).toBe(true);
  }, 60_000);
});
