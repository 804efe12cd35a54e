/**
 * The built-in `digits` benchmark: cluttered RGB scenes with 1–3 MNIST digits of one class, with
 * exact masks and boxes, so explanation maps can be scored against ground truth without
 * downloading a real dataset.
 *
 * Every sample is a pure function of (seed, split, i): `get(i)` builds its own Rng from a hash of
 * the three, so samples can be made in any order, in parallel, or again later, byte for byte.
 * Sample i's first instance is the digit at position i (mod split size) of a seeded permutation of
 * the split, so one epoch of the default length shows every digit of the split once as the lead
 * digit; the other instances are further distinct digits of the same class and split.
 */
import { IceError, Rng } from '@ice/core';
import type { Box, VisionDataset, VisionSample } from '../dataset.types';
import { DIGIT_SIZE, DIGIT_SPLITS, type DigitRef, type DigitSplit, MnistSource, digitId, loadMnistSource } from './mnist-source';

export interface DigitsConfig {
  split: DigitSplit;
  /** Square canvas side in pixels. */
  canvasSize: number;
  seed: number;
  /** Samples per epoch (size of this split view); defaults to the number of digits in the split. */
  length: number;
  minInstances: number;
  maxInstances: number;
  /** [min, max] side of the resized 28×28 digit, as a fraction of the canvas side. */
  digitScale: readonly [number, number];
}

export type DigitsOptions = Partial<Omit<DigitsConfig, 'split'>> & { split: DigitSplit };

export const DIGITS_DEFAULTS = {
  canvasSize: 64,
  seed: 0,
  minInstances: 1,
  maxInstances: 3,
  digitScale: [0.35, 0.65] as const,
} satisfies Partial<DigitsConfig>;

export interface DigitsSample extends VisionSample {
  /** 1 where any pasted digit's resized intensity > 0.5; clutter never counts. */
  mask: Uint8Array;
  /** One tight box per instance around its ink (> 0.5), inclusive pixel coords. */
  boxes: Box[];
  /** Source digit of each instance, in `boxes` order ("mnist/<class>/<index in class>"). */
  digitIds: string[];
}

export const DIGIT_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

// Module-level aliases: hot pixel loops then skip global `Math` lookups, which are ~100× slower
// inside vm contexts such as jest's test environment.
const { PI, abs, atan2, ceil, cos, floor, imul, max, min, round, sin, sqrt } = Math;

/** Digits smaller than this lose their strokes in bilinear downsampling. */
const MIN_DIGIT_PX = 10;
/** Luminance gap between a digit and the background under it. */
const MIN_CONTRAST = 0.45;
const PLACEMENT_TRIES = 16;
/** Instances may overlap, but not by more than this fraction of the smaller box when avoidable. */
const MAX_OVERLAP = 0.15;

export class DigitsDataset implements VisionDataset<DigitsSample> {
  readonly name = 'digits';
  readonly classes: string[] = [...DIGIT_CLASSES];
  readonly split: DigitSplit;
  readonly length: number;
  readonly config: Readonly<DigitsConfig>;
  /** The split's digits in seeded order; sample i leads with order[i mod order.length]. */
  private readonly order: DigitRef[];

  constructor(
    options: DigitsOptions,
    private readonly source: MnistSource = loadMnistSource(),
  ) {
    if (!DIGIT_SPLITS.includes(options.split)) {
      throw new IceError('CONFIG_INVALID', `digits split must be train, val or test, got ${String(options.split)}`);
    }
    const refs = source.refs(options.split);
    const config: DigitsConfig = {
      split: options.split,
      canvasSize: options.canvasSize ?? DIGITS_DEFAULTS.canvasSize,
      seed: options.seed ?? DIGITS_DEFAULTS.seed,
      length: options.length ?? refs.length,
      minInstances: options.minInstances ?? DIGITS_DEFAULTS.minInstances,
      maxInstances: options.maxInstances ?? DIGITS_DEFAULTS.maxInstances,
      digitScale: options.digitScale ?? DIGITS_DEFAULTS.digitScale,
    };
    validateConfig(config);
    if (refs.length === 0) throw new IceError('CONFIG_INVALID', `the ${config.split} split has no digits`);
    this.config = Object.freeze({ ...config, digitScale: [config.digitScale[0], config.digitScale[1]] as const });
    this.split = config.split;
    this.length = config.length;
    this.order = new Rng(hashSeed(config.seed, config.split, 0, 0)).shuffle(refs);
  }

  get(i: number): DigitsSample {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new IceError('INPUT_INVALID', `digits index must be an integer in [0, ${this.length}), got ${i}`);
    }
    const { canvasSize: size, seed, split } = this.config;
    const rng = new Rng(hashSeed(seed, split, 1, i));
    const lead = this.order[i % this.order.length];
    const label = lead.label;
    const refs = this.pickInstances(rng, lead);

    const image = new Float32Array(size * size * 3);
    paintBackground(image, size, rng);
    const strokes = 3 + rng.int(4);
    for (let s = 0; s < strokes; s++) paintDistractor(image, size, rng);

    const mask = new Uint8Array(size * size);
    const boxes: Box[] = [];
    for (const ref of refs) boxes.push(this.pasteDigit(image, mask, boxes, ref, rng));

    // Sensor-like noise over everything (digits included) so no pixel value gives the mask away.
    // Irwin–Hall from the four bytes of a xorshift32 word (seeded from rng): near-Gaussian with
    // unit variance, far cheaper than rng.normal() per value at 224² × 3 values.
    const sigma = (0.01 + 0.03 * rng.uniform()) * sqrt(3);
    let state = rng.uint32() | 1;
    for (let p = 0; p < image.length; p++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      const u = state >>> 0;
      const sum = (u & 255) + ((u >>> 8) & 255) + ((u >>> 16) & 255) + (u >>> 24) + 2;
      image[p] = clamp01(image[p] + sigma * (sum / 256 - 2));
    }

    return {
      id: `digits/${split}/${seed}/${i}`,
      image,
      height: size,
      width: size,
      label,
      mask,
      boxes,
      digitIds: refs.map(digitId),
    };
  }

  /** The lead digit plus distinct others of its class and split. */
  private pickInstances(rng: Rng, lead: DigitRef): DigitRef[] {
    const { minInstances, maxInstances } = this.config;
    const pool = this.source.indices(this.split, lead.label);
    const k = min(minInstances + rng.int(maxInstances - minInstances + 1), pool.length);
    const chosen = new Set<number>([lead.index]);
    while (chosen.size < k) chosen.add(pool[rng.int(pool.length)]);
    return [...chosen].map((index) => ({ label: lead.label, index }));
  }

  /** Pastes one digit with a contrasting colour; returns its ink box and marks its ink in `mask`. */
  private pasteDigit(image: Float32Array, mask: Uint8Array, placed: readonly Box[], ref: DigitRef, rng: Rng): Box {
    const size = this.config.canvasSize;
    const [lo, hi] = this.config.digitScale;
    let side = min(size, max(MIN_DIGIT_PX, round(size * (lo + (hi - lo) * rng.uniform()))));
    let alpha = resizeBilinear(this.source.pixels(ref), DIGIT_SIZE, DIGIT_SIZE, side, side);
    let ink = inkBox(alpha, side);
    while (!ink && side < size) {
      side = min(size, ceil(side * 1.25));
      alpha = resizeBilinear(this.source.pixels(ref), DIGIT_SIZE, DIGIT_SIZE, side, side);
      ink = inkBox(alpha, side);
    }
    if (!ink) throw new IceError('INPUT_INVALID', `digit ${digitId(ref)} has no ink above 0.5`);
    const [ix0, iy0, ix1, iy1] = ink;

    // The patch may hang off the canvas as long as the ink stays on it (more varied positions).
    let best: { x: number; y: number; overlap: number } | null = null;
    for (let t = 0; t < PLACEMENT_TRIES && !(best && best.overlap <= MAX_OVERLAP); t++) {
      const x = -ix0 + rng.int(size - (ix1 - ix0));
      const y = -iy0 + rng.int(size - (iy1 - iy0));
      const box: Box = [x + ix0, y + iy0, x + ix1, y + iy1];
      const overlap = placed.reduce((m, b) => max(m, overlapFraction(box, b)), 0);
      if (!best || overlap < best.overlap) best = { x, y, overlap };
    }
    const { x: ox, y: oy } = best!;

    // Colour against what is under the ink now (background, clutter, earlier digits).
    let lum = 0;
    let count = 0;
    forEachPatchPixel(alpha, side, ox, oy, size, (a, p) => {
      if (a > 0.5) {
        lum += luminance(image[p * 3], image[p * 3 + 1], image[p * 3 + 2]);
        count++;
      }
    });
    const colour = contrastingColour(rng, lum / count);

    forEachPatchPixel(alpha, side, ox, oy, size, (a, p) => {
      if (a <= 0) return;
      for (let c = 0; c < 3; c++) image[p * 3 + c] = image[p * 3 + c] * (1 - a) + colour[c] * a;
      if (a > 0.5) mask[p] = 1;
    });
    return [ox + ix0, oy + iy0, ox + ix1, oy + iy1];
  }
}

/**
 * Images as one NCHW batch, normalised per channel: (v − mean) / std. `mean`/`std` are one number
 * or one per RGB channel (ViT presets use 0.5 / 0.5, i.e. [-1, 1]).
 */
export function batchNCHW(
  samples: readonly VisionSample[],
  mean: number | readonly [number, number, number],
  std: number | readonly [number, number, number],
): { x: Float32Array; shape: [number, number, number, number]; labels: number[] } {
  if (samples.length === 0) throw new IceError('INPUT_INVALID', 'cannot batch zero samples');
  const { height: h, width: w } = samples[0];
  const m = typeof mean === 'number' ? [mean, mean, mean] : mean;
  const s = typeof std === 'number' ? [std, std, std] : std;
  if (!s.every((v) => v > 0 && Number.isFinite(v)) || !m.every(Number.isFinite)) {
    throw new IceError('INPUT_INVALID', `normalisation needs finite mean and positive std, got ${String(mean)} / ${String(std)}`);
  }
  const plane = h * w;
  const x = new Float32Array(samples.length * 3 * plane);
  samples.forEach((sample, b) => {
    if (sample.height !== h || sample.width !== w || sample.image.length !== plane * 3) {
      throw new IceError('INPUT_INVALID', `sample ${sample.id} is ${sample.height}×${sample.width}, batch is ${h}×${w}`);
    }
    for (let c = 0; c < 3; c++) {
      const base = (b * 3 + c) * plane;
      const inv = 1 / s[c];
      for (let p = 0; p < plane; p++) x[base + p] = (sample.image[p * 3 + c] - m[c]) * inv;
    }
  });
  return { x, shape: [samples.length, 3, h, w], labels: samples.map((sm) => sm.label) };
}

/** Bilinear resize of a single-channel image, half-pixel centres (as tf.image.resizeBilinear with halfPixelCenters). */
export function resizeBilinear(src: Float32Array, sh: number, sw: number, dh: number, dw: number): Float32Array {
  const out = new Float32Array(dh * dw);
  const sy = sh / dh;
  const sx = sw / dw;
  for (let y = 0; y < dh; y++) {
    const fy = min(max((y + 0.5) * sy - 0.5, 0), sh - 1);
    const y0 = floor(fy);
    const y1 = min(y0 + 1, sh - 1);
    const wy = fy - y0;
    for (let x = 0; x < dw; x++) {
      const fx = min(max((x + 0.5) * sx - 0.5, 0), sw - 1);
      const x0 = floor(fx);
      const x1 = min(x0 + 1, sw - 1);
      const wx = fx - x0;
      const top = src[y0 * sw + x0] * (1 - wx) + src[y0 * sw + x1] * wx;
      const bottom = src[y1 * sw + x0] * (1 - wx) + src[y1 * sw + x1] * wx;
      out[y * dw + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}

function validateConfig(c: DigitsConfig): void {
  const bad = (msg: string): never => {
    throw new IceError('CONFIG_INVALID', `digits: ${msg}`);
  };
  if (!Number.isInteger(c.canvasSize) || c.canvasSize < 16 || c.canvasSize > 4096)
    bad(`canvasSize must be an integer in [16, 4096], got ${c.canvasSize}`);
  if (!Number.isSafeInteger(c.seed)) bad(`seed must be a safe integer, got ${c.seed}`);
  if (!Number.isInteger(c.length) || c.length < 1) bad(`length must be a positive integer, got ${c.length}`);
  if (
    !Number.isInteger(c.minInstances) ||
    !Number.isInteger(c.maxInstances) ||
    c.minInstances < 1 ||
    c.maxInstances < c.minInstances ||
    c.maxInstances > 8
  ) {
    bad(`need integers 1 ≤ minInstances ≤ maxInstances ≤ 8, got ${c.minInstances}..${c.maxInstances}`);
  }
  const [lo, hi] = c.digitScale;
  if (!(lo > 0 && lo <= hi && hi <= 1)) bad(`digitScale must satisfy 0 < min ≤ max ≤ 1, got [${lo}, ${hi}]`);
}

const SPLIT_CODE: Record<DigitSplit, number> = { train: 1, val: 2, test: 3 };

/** 32-bit hash of (seed, split, purpose, i): independent-looking streams per sample, no shared state. */
function hashSeed(seed: number, split: DigitSplit, purpose: number, i: number): number {
  let h = 0x2545f491;
  for (const v of [seed >>> 0, floor(seed / 0x100000000) >>> 0, SPLIT_CODE[split], purpose, i >>> 0]) {
    h = imul(h ^ v, 0x9e3779b1);
    h ^= h >>> 15;
    h = imul(h, 0x85ebca77);
    h ^= h >>> 13;
  }
  return h >>> 0;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

function luminance(r: number, g: number, b: number): number {
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** Tight box around intensities > 0.5 of a side×side patch, or null if there are none. */
function inkBox(alpha: Float32Array, side: number): Box | null {
  let x0 = side;
  let y0 = side;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      if (alpha[y * side + x] > 0.5) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : [x0, y0, x1, y1];
}

/** Intersection area over the smaller box's area (inclusive boxes). */
function overlapFraction(a: Box, b: Box): number {
  const w = min(a[2], b[2]) - max(a[0], b[0]) + 1;
  const h = min(a[3], b[3]) - max(a[1], b[1]) + 1;
  if (w <= 0 || h <= 0) return 0;
  const area = (bx: Box) => (bx[2] - bx[0] + 1) * (bx[3] - bx[1] + 1);
  return (w * h) / min(area(a), area(b));
}

/** Visits the patch pixels that fall on the canvas: fn(alpha, canvas pixel index). */
function forEachPatchPixel(
  alpha: Float32Array,
  side: number,
  ox: number,
  oy: number,
  size: number,
  fn: (a: number, p: number) => void,
): void {
  for (let y = max(0, -oy); y < side && oy + y < size; y++) {
    for (let x = max(0, -ox); x < side && ox + x < size; x++) {
      fn(alpha[y * side + x], (oy + y) * size + ox + x);
    }
  }
}

/** A random hue pushed towards white or black until its luminance is MIN_CONTRAST away from bgLum. */
function contrastingColour(rng: Rng, bgLum: number): [number, number, number] {
  const h = rng.uniform() * 6;
  const sat = 0.3 + 0.7 * rng.uniform();
  const f = h - floor(h);
  const sector = floor(h) % 6;
  const [p, q, t] = [1 - sat, 1 - sat * f, 1 - sat * (1 - f)];
  const base: [number, number, number] = (
    [
      [1, t, p],
      [q, 1, p],
      [p, 1, t],
      [p, q, 1],
      [t, p, 1],
      [1, p, q],
    ] as [number, number, number][]
  )[sector];
  const bright = bgLum < 0.5;
  const target = bright
    ? min(1, bgLum + MIN_CONTRAST + (1 - min(1, bgLum + MIN_CONTRAST)) * rng.uniform())
    : max(0, bgLum - MIN_CONTRAST) * rng.uniform();
  const lb = luminance(base[0], base[1], base[2]);
  // Luminance is linear in RGB: scaling towards black or mixing towards white hits the target exactly.
  if (target <= lb) return base.map((v) => (v * target) / lb) as [number, number, number];
  const w = (target - lb) / (1 - lb);
  return base.map((v) => v + (1 - v) * w) as [number, number, number];
}

function randomColour(rng: Rng): [number, number, number] {
  return [rng.uniform(), rng.uniform(), rng.uniform()];
}

/** Linear colour gradient + low-frequency value noise + a few sinusoidal ripples. */
function paintBackground(image: Float32Array, size: number, rng: Rng): void {
  const c0 = randomColour(rng);
  const c1 = c0.map((v) => clamp01(v + (rng.uniform() - 0.5) * 0.7));
  const theta = rng.uniform() * 2 * PI;
  const [dx, dy] = [cos(theta), sin(theta)];

  // Coarse random grid, bilinearly upsampled: soft blotches.
  const g = 3 + rng.int(4);
  const grid = new Float32Array(g * g * 3);
  for (let k = 0; k < grid.length; k++) grid[k] = rng.normal() * 0.06;

  const waves = Array.from({ length: 2 + rng.int(2) }, () => {
    const phi = rng.uniform() * 2 * PI;
    const freq = ((1 + 4 * rng.uniform()) * 2 * PI) / size;
    return {
      kx: cos(phi) * freq,
      ky: sin(phi) * freq,
      phase: rng.uniform() * 2 * PI,
      amp: [0, 0, 0].map(() => (rng.uniform() - 0.5) * 0.12),
    };
  });

  const sines = new Float64Array(waves.length);
  for (let y = 0; y < size; y++) {
    const gy = min(((y + 0.5) / size) * (g - 1), g - 1.000001);
    const gy0 = floor(gy);
    const wy = gy - gy0;
    for (let x = 0; x < size; x++) {
      const t = clamp01(((x - size / 2) * dx + (y - size / 2) * dy) / size + 0.5);
      const gx = min(((x + 0.5) / size) * (g - 1), g - 1.000001);
      const gx0 = floor(gx);
      const wx = gx - gx0;
      const p = (y * size + x) * 3;
      const g00 = (gy0 * g + gx0) * 3;
      const g10 = g00 + g * 3;
      for (let k = 0; k < waves.length; k++) sines[k] = sin(waves[k].kx * x + waves[k].ky * y + waves[k].phase);
      for (let c = 0; c < 3; c++) {
        const blotch =
          (grid[g00 + c] * (1 - wx) + grid[g00 + 3 + c] * wx) * (1 - wy) + (grid[g10 + c] * (1 - wx) + grid[g10 + 3 + c] * wx) * wy;
        let v = c0[c] * (1 - t) + c1[c] * t + blotch;
        for (let k = 0; k < waves.length; k++) v += waves[k].amp[c] * sines[k];
        image[p + c] = clamp01(v);
      }
    }
  }
}

/**
 * One non-digit distractor: a long line segment, a wide open arc (at most 220°, so never an "0") or
 * a soft ellipse blob, anti-aliased by coverage = clamp(halfWidth + 0.5 − distance).
 */
function paintDistractor(image: Float32Array, size: number, rng: Rng): void {
  const colour = randomColour(rng);
  const kind = rng.int(3);
  // Thinner than most digit strokes, and lines/arcs longer than a digit, so clutter is not digit-like.
  const half = (size * (0.008 + 0.022 * rng.uniform())) / 2;
  let dist: (x: number, y: number) => number;
  let bounds: [number, number, number, number];
  let opacity = 0.5 + 0.5 * rng.uniform();
  if (kind === 0) {
    const [ax, ay] = [rng.uniform() * size, rng.uniform() * size];
    const len = size * (0.4 + 0.5 * rng.uniform());
    const phi = rng.uniform() * 2 * PI;
    const [bx, by] = [ax + cos(phi) * len, ay + sin(phi) * len];
    dist = (x, y) => segmentDistance(x, y, ax, ay, bx, by) - half;
    bounds = [min(ax, bx) - half, min(ay, by) - half, max(ax, bx) + half, max(ay, by) + half];
  } else if (kind === 1) {
    const [cx, cy] = [rng.uniform() * size, rng.uniform() * size];
    const r = size * (0.15 + 0.25 * rng.uniform());
    const start = rng.uniform() * 2 * PI;
    const span = ((60 + 160 * rng.uniform()) * PI) / 180;
    const [ax, ay] = [cx + r * cos(start), cy + r * sin(start)];
    const [bx, by] = [cx + r * cos(start + span), cy + r * sin(start + span)];
    dist = (x, y) => {
      const rel = (((atan2(y - cy, x - cx) - start) % (2 * PI)) + 2 * PI) % (2 * PI);
      const d = rel <= span ? abs(hypot2(x - cx, y - cy) - r) : min(hypot2(x - ax, y - ay), hypot2(x - bx, y - by));
      return d - half;
    };
    bounds = [cx - r - half, cy - r - half, cx + r + half, cy + r + half];
  } else {
    const [cx, cy] = [rng.uniform() * size, rng.uniform() * size];
    const rx = size * (0.03 + 0.08 * rng.uniform());
    const ry = size * (0.03 + 0.08 * rng.uniform());
    const rot = rng.uniform() * PI;
    const [cr, sr] = [cos(rot), sin(rot)];
    // Approximate signed distance: radial excess scaled by the smaller radius (exact enough for AA).
    dist = (x, y) => {
      const u = ((x - cx) * cr + (y - cy) * sr) / rx;
      const v = (-(x - cx) * sr + (y - cy) * cr) / ry;
      return (hypot2(u, v) - 1) * min(rx, ry);
    };
    const r = max(rx, ry);
    bounds = [cx - r, cy - r, cx + r, cy + r];
    opacity *= 0.7; // blobs are big: keep them from hiding whole digits' worth of background
  }
  const x0 = max(0, floor(bounds[0] - 1));
  const y0 = max(0, floor(bounds[1] - 1));
  const x1 = min(size - 1, ceil(bounds[2] + 1));
  const y1 = min(size - 1, ceil(bounds[3] + 1));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const cov = clamp01(0.5 - dist(x, y)) * opacity;
      if (cov <= 0) continue;
      const p = (y * size + x) * 3;
      for (let c = 0; c < 3; c++) image[p + c] = image[p + c] * (1 - cov) + colour[c] * cov;
    }
  }
}

function hypot2(dx: number, dy: number): number {
  return sqrt(dx * dx + dy * dy); // Math.hypot's overflow care is not needed at pixel scale, and it is slow
}

function segmentDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const [vx, vy] = [bx - ax, by - ay];
  const len2 = vx * vx + vy * vy;
  const t = len2 === 0 ? 0 : min(1, max(0, ((px - ax) * vx + (py - ay) * vy) / len2));
  return hypot2(px - ax - t * vx, py - ay - t * vy);
}
