import { RingError } from './ring-frame';

/**
 * Ring all-reduce (sum) of a float32 vector over W ranks, the bandwidth-optimal schedule of
 * Patarasuk & Yuan (2009) as NCCL and Gloo run it.
 *
 * The vector is cut into W chunks; chunk c is elements [⌊cN/W⌋, ⌊(c+1)N/W⌋) (some are empty when
 * N < W). Rank r sends only to its successor r+1 and receives only from its predecessor r−1 (mod W),
 * in 2(W−1) ring steps:
 *   - reduce-scatter, steps s = 0 … W−2: rank r sends chunk (r−s) and adds the received chunk
 *     (r−s−1) into its own; after it, rank r holds the full sum of chunk r+1;
 *   - all-gather, steps s = W−1 … 2W−3: rank r sends the chunk it completed or received last, and
 *     overwrites its copy with the received one.
 * Whatever the step, what rank r sends at step s+1 is exactly what it received at step s, so each
 * chunk is cut into segments (1–4 MB) that move on as soon as they arrive: sending and receiving
 * overlap, and a rank never holds more than one chunk of someone else's data. Each rank sends and
 * receives 2(W−1)/W · 4N bytes.
 *
 * Determinism: chunk c is summed in the fixed order ((x_c + x_{c+1}) + x_{c+2}) + … + x_{c−1}
 * (ranks mod W), by the ring and not by timing, and the all-gather copies the finished chunk, so
 * every rank ends with the same bits. The order differs from rank order 0…W−1 (for W ≥ 3; at W = 2
 * float addition commutes, so the bits equal the rank-order sum).
 */
export class RingPlan {
  /** Start of chunk c is bounds[c], end bounds[c+1]. */
  readonly bounds: number[];
  readonly ringSteps: number;

  constructor(
    readonly length: number,
    readonly worldSize: number,
    readonly rank: number,
    readonly segmentFloats: number,
  ) {
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new RingError('CONFIG_INVALID', `worldSize must be a positive integer, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
      throw new RingError('CONFIG_INVALID', `rank must be an integer in [0, ${worldSize}), got ${rank}`);
    if (!Number.isInteger(length) || length < 0)
      throw new RingError('INPUT_INVALID', `gradient length must be a non-negative integer, got ${length}`);
    if (!Number.isInteger(segmentFloats) || segmentFloats < 1)
      throw new RingError('CONFIG_INVALID', `segment size must be at least one float, got ${segmentFloats}`);
    this.bounds = Array.from({ length: worldSize + 1 }, (_, c) => Math.floor((c * length) / worldSize));
    this.ringSteps = 2 * (worldSize - 1);
  }

  private mod(i: number): number {
    return ((i % this.worldSize) + this.worldSize) % this.worldSize;
  }

  /** The chunk rank `rank` sends at ring step s (reduce-scatter: its partial sum; all-gather: a finished chunk). */
  sendChunk(s: number): number {
    const W = this.worldSize;
    return s < W - 1 ? this.mod(this.rank - s) : this.mod(this.rank + 1 - (s - (W - 1)));
  }

  /** The chunk rank `rank` receives at ring step s; always the chunk it sends at s+1. */
  recvChunk(s: number): number {
    const W = this.worldSize;
    return s < W - 1 ? this.mod(this.rank - s - 1) : this.mod(this.rank - (s - (W - 1)));
  }

  segments(chunk: number): number {
    return Math.ceil((this.bounds[chunk + 1] - this.bounds[chunk]) / this.segmentFloats);
  }

  /** [start, end) of segment j of a chunk, in elements of the vector. */
  segment(chunk: number, j: number): [number, number] {
    const start = this.bounds[chunk] + j * this.segmentFloats;
    return [start, Math.min(start + this.segmentFloats, this.bounds[chunk + 1])];
  }

  /** Segments this rank receives in one all-reduce. */
  get receives(): number {
    let n = 0;
    for (let s = 0; s < this.ringSteps; s++) n += this.segments(this.recvChunk(s));
    return n;
  }
}

/**
 * One all-reduce on one rank, as a state machine driven by the frames that arrive: start() sends
 * the first step, receive() applies a segment from the predecessor and forwards it. The sum is
 * written into `data` in place.
 */
export class RingReduction {
  private received = 0;
  private readonly seen: Set<number>[];

  constructor(
    readonly plan: RingPlan,
    private readonly data: Float32Array,
    private readonly send: (ringStep: number, segment: number, payload: Float32Array) => void,
  ) {
    if (data.length !== plan.length)
      throw new RingError('INPUT_INVALID', `ring plan is for ${plan.length} elements, the data has ${data.length}`);
    this.seen = Array.from({ length: plan.ringSteps }, () => new Set<number>());
  }

  get done(): boolean {
    return this.received === this.plan.receives;
  }

  get progress(): { received: number; expected: number } {
    return { received: this.received, expected: this.plan.receives };
  }

  start(): void {
    if (this.plan.ringSteps === 0) return;
    const c = this.plan.sendChunk(0);
    for (let j = 0; j < this.plan.segments(c); j++) {
      const [a, b] = this.plan.segment(c, j);
      this.send(0, j, this.data.subarray(a, b));
    }
  }

  receive(ringStep: number, segment: number, payload: Float32Array): void {
    const p = this.plan;
    if (!Number.isInteger(ringStep) || ringStep < 0 || ringStep >= p.ringSteps)
      throw new RingError('INPUT_INVALID', `ring step ${ringStep} outside 0 … ${p.ringSteps - 1}`);
    const c = p.recvChunk(ringStep);
    if (!Number.isInteger(segment) || segment < 0 || segment >= p.segments(c))
      throw new RingError('INPUT_INVALID', `segment ${segment} of chunk ${c} at ring step ${ringStep}: the chunk has ${p.segments(c)}`);
    if (this.seen[ringStep].has(segment))
      throw new RingError('INPUT_INVALID', `segment ${segment} of ring step ${ringStep} received twice`);
    const [a, b] = p.segment(c, segment);
    if (payload.length !== b - a)
      throw new RingError('INPUT_INVALID', `segment ${segment} of ring step ${ringStep} has ${payload.length} elements, expected ${b - a}`);
    this.seen[ringStep].add(segment);
    const d = this.data;
    if (ringStep < p.worldSize - 1) {
      // Reduce-scatter: the partial sum of ranks c … r−1, plus this rank's own.
      for (let i = 0, k = a; k < b; i++, k++) d[k] = payload[i] + d[k];
    } else {
      d.set(payload, a);
    }
    this.received++;
    if (ringStep + 1 < p.ringSteps) this.send(ringStep + 1, segment, d.subarray(a, b));
  }
}

/** The sum the ring computes for element i (for tests): chunk c of i summed from rank c onwards. */
export function ringOrderSum(parts: readonly Float32Array[], plan: Pick<RingPlan, 'bounds' | 'worldSize'>): Float32Array {
  const W = plan.worldSize;
  const n = parts[0]?.length ?? 0;
  const out = new Float32Array(n);
  for (let c = 0; c < W; c++) {
    for (let i = plan.bounds[c]; i < plan.bounds[c + 1]; i++) {
      let acc = parts[c][i];
      for (let k = 1; k < W; k++) acc = Math.fround(acc + parts[(c + k) % W][i]);
      out[i] = acc;
    }
  }
  return out;
}
