import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { ADDON_PATH } from '@ice/native-kernels';
import { RingPlan } from './ring-allreduce';
import { loadSharedMemoryAddon, SharedMemoryReduction, sharedMemoryHost, SharedSegments, type SharedMemoryAddon } from './ring-shm';
import { rankOrderSum, rankVector } from './fixtures/ring-rank.fixture';

/**
 * The shared-memory all-reduce alone: W ranks in this process, marks passed by hand in any order.
 * RingGroups that choose it (or not) through the real rendezvous: ring-group.spec.ts.
 */
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
