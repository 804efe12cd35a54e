import { meanInRankOrder } from '@ice/core';
import { RingPlan, RingReduction, ringOrderSum } from './ring-allreduce';

/** Deterministic pseudo-random numbers (xorshift), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Gradients with mixed magnitudes (1e-4 … 1e4) and signs, so that summation order shows in the rounding. */
function parts(W: number, n: number, seed: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: W }, () => Float32Array.from({ length: n }, () => (r() - 0.5) * 10 ** (r() * 8 - 4)));
}

/**
 * W ranks' RingReductions wired by FIFO queues (one per ring link, as a TCP connection keeps
 * order) and driven by a random scheduler: ranks start at random moments, and each delivery takes
 * the head of a random non-empty queue. A payload is a view of the sender's vector, read only
 * when delivered (as a socket write of a view may go out later): if the schedule ever let a rank
 * overwrite a segment before its successor had it, the sums would come out wrong.
 */
function simulate(inputs: Float32Array[], segmentFloats: number, seed: number): Float32Array[] {
  const W = inputs.length;
  const n = inputs[0].length;
  const data = inputs.map((p) => Float32Array.from(p));
  const queues: { s: number; j: number; payload: Float32Array }[][] = Array.from({ length: W }, () => []);
  const reductions = data.map(
    (d, r) => new RingReduction(new RingPlan(n, W, r, segmentFloats), d, (s, j, payload) => queues[(r + 1) % W].push({ s, j, payload })),
  );
  const random = rng(seed);
  const started = new Array<boolean>(W).fill(false);
  for (;;) {
    const idle = started.flatMap((s, r) => (s ? [] : [r]));
    const ready = queues.flatMap((q, r) => (q.length && started[r] ? [r] : []));
    if (!idle.length && !ready.length) break;
    if (idle.length && (!ready.length || random() < 0.3)) {
      const r = idle[Math.floor(random() * idle.length)];
      started[r] = true;
      reductions[r].start();
      continue;
    }
    const r = ready[Math.floor(random() * ready.length)];
    const f = queues[r].shift()!;
    reductions[r].receive(f.s, f.j, f.payload);
  }
  for (const red of reductions) expect(red.done).toBe(true);
  return data;
}

const bits = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const U = 2 ** -24; // unit roundoff of float32

describe('RingPlan', () => {
  it.each([
    [1, 5],
    [2, 0],
    [3, 2],
    [4, 4],
    [5, 1001],
  ])('W = %i, N = %i: chunks tile the vector; each rank receives every other chunk once per phase and sends what it received', (W, n) => {
    const plans = Array.from({ length: W }, (_, r) => new RingPlan(n, W, r, 3));
    const b = plans[0].bounds;
    expect(b[0]).toBe(0);
    expect(b[W]).toBe(n);
    for (let c = 0; c < W; c++) expect(b[c + 1] - b[c]).toBeGreaterThanOrEqual(Math.floor(n / W));
    for (const p of plans) {
      expect(p.ringSteps).toBe(2 * (W - 1));
      for (let s = 0; s + 1 < p.ringSteps; s++) expect(p.sendChunk(s + 1)).toBe(p.recvChunk(s));
      const rs = Array.from({ length: W - 1 }, (_, s) => p.recvChunk(s)).sort();
      const ag = Array.from({ length: W - 1 }, (_, s) => p.recvChunk(W - 1 + s)).sort();
      expect(rs).toEqual([...Array(W).keys()].filter((c) => c !== p.rank));
      expect(ag).toEqual([...Array(W).keys()].filter((c) => c !== (p.rank + 1) % W));
      // What rank r receives is what rank r−1 sends.
      const prev = plans[(p.rank - 1 + W) % W];
      for (let s = 0; s < p.ringSteps; s++) expect(p.recvChunk(s)).toBe(prev.sendChunk(s));
    }
  });

  it('sends 2(W−1)/W of the vector per rank', () => {
    const W = 4;
    const n = 1000;
    const p = new RingPlan(n, W, 1, 7);
    let sent = 0;
    for (let s = 0; s < p.ringSteps; s++) sent += p.bounds[p.sendChunk(s) + 1] - p.bounds[p.sendChunk(s)];
    expect(sent).toBe((2 * (W - 1) * n) / W);
  });

  it('refuses nonsense', () => {
    expect(() => new RingPlan(10, 0, 0, 1)).toThrow(/worldSize/);
    expect(() => new RingPlan(10, 2, 2, 1)).toThrow(/rank must be/);
    expect(() => new RingPlan(-1, 2, 0, 1)).toThrow(/length/);
    expect(() => new RingPlan(10, 2, 0, 0)).toThrow(/segment/);
  });
});

describe('RingReduction', () => {
  const cases: [number, number, number][] = [];
  for (const W of [1, 2, 3, 4, 5])
    for (const n of [0, 1, W - 1, W, W + 1, 7, 1001]) for (const seg of [1, 3, 64, 1 << 20]) cases.push([W, Math.max(n, 0), seg]);

  it.each(cases)(
    'W = %i, N = %i, %i floats per segment: every rank ends with the ring-order sum, bit for bit, whatever the timing',
    (W, n, seg) => {
      const inputs = parts(W, n, W * 7919 + n);
      const expected = ringOrderSum(inputs, new RingPlan(n, W, 0, seg));
      for (const seed of [1, 2, 3]) {
        const out = simulate(inputs, seg, seed * 31 + n);
        for (const o of out) expect(bits(o).equals(bits(expected))).toBe(true);
      }
    },
  );

  it('at W = 2 equals the rank-order sum exactly (float addition commutes)', () => {
    const inputs = parts(2, 5000, 11);
    const out = simulate(inputs, 100, 5);
    const rankOrder = Float32Array.from(inputs[0], (v, i) => v + inputs[1][i]);
    expect(bits(out[0]).equals(bits(rankOrder))).toBe(true);
  });

  /**
   * The tolerance, and why: summing W float32 terms left to right in any order is within
   * γ_{W−1}·Σ|x_r| of the exact sum (γ_k = k·u/(1−k·u), u = 2⁻²⁴; Higham, Accuracy and Stability
   * of Numerical Algorithms, §4.2), so two orders differ by at most 2γ_{W−1}·Σ|x_r|; dividing
   * both by W rounds once more (≤ u relative each). Per element:
   *   |ring mean − rank-order mean| ≤ (2γ_{W−1}·Σ|x_r| + u·(|a| + |b|)) / W.
   * The bound is met with room, and for W ≥ 3 it is needed: the orders do give different bits.
   */
  it.each([3, 4, 5])('at W = %i is within float32 rounding of meanInRankOrder (and not always equal to it)', (W) => {
    const n = 20_000;
    const inputs = parts(W, n, 1234 + W);
    const sum = simulate(inputs, 997, W)[0];
    const ring = Float32Array.from(sum, (v) => v / W);
    const rank = meanInRankOrder(inputs);
    const gamma = ((W - 1) * U) / (1 - (W - 1) * U);
    let differing = 0;
    for (let i = 0; i < n; i++) {
      let abs = 0;
      for (const p of inputs) abs += Math.abs(p[i]);
      const tol = (2 * gamma * abs + U * (Math.abs(ring[i]) + Math.abs(rank[i]))) / W + W * 2 ** -149;
      if (Math.abs(ring[i] - rank[i]) > tol) throw new Error(`element ${i}: ring ${ring[i]} vs rank order ${rank[i]}, tolerance ${tol}`);
      if (ring[i] !== rank[i]) differing++;
    }
    expect(differing).toBeGreaterThan(0);
  });

  it('refuses a segment twice, of the wrong length, or outside the plan', () => {
    const plan = new RingPlan(10, 2, 0, 4);
    const red = new RingReduction(plan, new Float32Array(10), () => undefined);
    red.start();
    // Rank 0 receives chunk 1 (elements 5…9: segments of 4 and 1) at ring step 0.
    red.receive(0, 0, new Float32Array(4));
    expect(() => red.receive(0, 0, new Float32Array(4))).toThrow(/received twice/);
    expect(() => red.receive(0, 1, new Float32Array(4))).toThrow(/has 4 elements, expected 1/);
    expect(() => red.receive(0, 2, new Float32Array(1))).toThrow(/the chunk has 2/);
    expect(() => red.receive(2, 0, new Float32Array(4))).toThrow(/ring step 2 outside/);
    expect(() => new RingReduction(plan, new Float32Array(9), () => undefined)).toThrow(/10 elements/);
  });
});
