/**
 * Seedable pseudo-random numbers for training (data order, mixup/cutmix, augmentation).
 *
 * xoshiro128** (Blackman & Vigna) on four 32-bit words, seeded through splitmix32. Everything is
 * integer arithmetic on 32-bit words plus IEEE float64 maths (Math.log/sqrt/cos), so a seed gives
 * the same stream on every run, and `getState()`/`setState()` resume a run bit-exactly.
 * Not for cryptography.
 */
import { IceError } from '../errors';
// Looked up once: under jest's sandbox every global `Math` lookup is ~100× slower than in node.
const { imul, floor, sqrt, log, sin, cos, PI } = Math;

/** A writable array-like, so `shuffle` works on plain arrays and typed arrays alike. */
export interface MutableArrayLike<T> {
  readonly length: number;
  [index: number]: T;
}

const TWO_32 = 0x100000000;
const TWO_53 = 2 ** 53;

function splitmix32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** Box–Muller makes normals in pairs; the second is kept (and is part of the state). */
  private spare: number | null = null;

  /** `seed`: any integer in ±2^53 (both 32-bit halves feed the seeding). */
  constructor(seed = 0) {
    if (!Number.isSafeInteger(seed)) {
      throw new IceError('CONFIG_INVALID', `rng seed must be a safe integer, got ${seed}`);
    }
    const lo = seed % TWO_32;
    const hi = floor(seed / TWO_32);
    const sm = splitmix32(lo ^ imul(hi | 0, 0x85ebca6b));
    this.s0 = sm();
    this.s1 = sm();
    this.s2 = sm();
    this.s3 = sm();
    // xoshiro must not start from the all-zero state (it would stay there).
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A generator positioned at a saved state. */
  static fromState(state: readonly number[]): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }

  /** [s0, s1, s2, s3, hasSpare (0|1), spare]: plain numbers, JSON-safe (float64 round-trips exactly). */
  getState(): number[] {
    return [this.s0, this.s1, this.s2, this.s3, this.spare === null ? 0 : 1, this.spare ?? 0];
  }

  setState(state: readonly number[]): void {
    if (state.length !== 4 && state.length !== 6) {
      throw new IceError('CHECKPOINT_INVALID', `rng state must have 4 or 6 numbers, got ${state.length}`);
    }
    const words = state.slice(0, 4);
    if (!words.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_32)) {
      throw new IceError('CHECKPOINT_INVALID', 'rng state words must be unsigned 32-bit integers');
    }
    if (words.every((w) => w === 0)) throw new IceError('CHECKPOINT_INVALID', 'rng state must not be all zero');
    [this.s0, this.s1, this.s2, this.s3] = words;
    const hasSpare = state.length === 6 && state[4] === 1;
    if (hasSpare && !Number.isFinite(state[5])) throw new IceError('CHECKPOINT_INVALID', 'rng spare normal is not finite');
    this.spare = hasSpare ? state[5] : null;
  }

  /** A new, independent-looking generator seeded from this one's stream (e.g. one per worker). */
  fork(): Rng {
    return new Rng((this.uint32() % 0x200000) * TWO_32 + this.uint32());
  }

  /** Next raw output, an unsigned 32-bit integer. */
  uint32(): number {
    const result = imul(rotl(imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const a = this.uint32() >>> 5; // 27 bits
    const b = this.uint32() >>> 6; // 26 bits
    return (a * 67108864 + b) / TWO_53;
  }

  /** Uniform integer in [0, n), unbiased (rejection), 1 ≤ n ≤ 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_32) {
      throw new IceError('INPUT_INVALID', `rng.int(n) needs an integer 1 ≤ n ≤ 2^32, got ${n}`);
    }
    // Largest multiple of n that fits in 32 bits: values at or above it would bias the modulo.
    const limit = TWO_32 - (TWO_32 % n);
    for (;;) {
      const x = this.uint32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal (Box–Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    const u1 = 1 - this.uniform(); // (0, 1]: log stays finite
    const u2 = this.uniform();
    const r = sqrt(-2 * log(u1));
    const theta = 2 * PI * u2;
    this.spare = r * sin(theta);
    return r * cos(theta);
  }

  /** Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 through the boost Gamma(a+1)·U^(1/a). */
  gamma(shape: number): number {
    if (!(shape > 0) || !Number.isFinite(shape)) {
      throw new IceError('INPUT_INVALID', `gamma shape must be a positive finite number, got ${shape}`);
    }
    if (shape < 1) {
      const g = this.gamma(shape + 1);
      return g * Math.pow(1 - this.uniform(), 1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - this.uniform();
      const x2 = x * x;
      if (u < 1 - 0.0331 * x2 * x2) return d * v;
      if (log(u) < 0.5 * x2 + d * (1 - v + log(v))) return d * v;
    }
  }

  /** Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b) (mixup/cutmix λ). */
  beta(a: number, b: number): number {
    const x = this.gamma(a);
    const y = this.gamma(b);
    const s = x + y;
    // Both gammas can underflow to 0 for tiny shapes; fall back to the Bernoulli limit.
    if (s === 0) return this.uniform() < a / (a + b) ? 1 : 0;
    return x / s;
  }

  /** Fisher–Yates shuffle in place; returns the same array. */
  shuffle<A extends MutableArrayLike<unknown>>(array: A): A {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    return this.shuffle(p);
  }
}
