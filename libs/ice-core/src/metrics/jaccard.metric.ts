/**
 * The VOC12 Jaccard protocol of Intriguing Properties of ViTs (evaluate_segmentation.py; ICE's
 * evaluate_segmentation_ICE.py uses it with a single mask), and the attention-mass threshold
 * of DINO/LOST/Intriguing that turns an attention map into a mask. Float64, flat row-major.
 */
import { IceError } from '../errors';

export const VOC_VOID = 255;

export interface JaccardOptions {
  /**
   * Drop void (255) pixels from the unions. Default false: the reference's `!= 255` test is
   * applied to a boolean and does nothing, so a predicted pixel on void counts in every union.
   */
  excludeVoid?: boolean;
}

export interface JaccardImageResult {
  /** J_v per object class v present in the target (v ∉ {0, 255}). */
  perClass: Map<number, number>;
  /** Mean of perClass; null when the target has no object class (the reference divides by zero). */
  score: number | null;
}

/**
 * J_v = |pred ∧ target = v| / |pred ∨ target = v| for every class v present, the maximum over
 * several predicted masks (e.g. one per head) taken per class before the mean over classes.
 * Masks are truthy/falsy per pixel.
 */
export function vocJaccardMulti(
  preds: readonly ArrayLike<number>[],
  target: ArrayLike<number>,
  opts: JaccardOptions = {},
): JaccardImageResult {
  const n = target.length;
  if (preds.length === 0) throw new IceError('INPUT_INVALID', 'jaccard: no predicted mask');
  preds.forEach((p, k) => {
    if (p.length !== n) throw new IceError('INPUT_INVALID', `jaccard: mask ${k} has ${p.length} pixels, target ${n}`);
  });
  const classes = new Set<number>();
  for (let i = 0; i < n; i++) {
    const v = target[i];
    if (!Number.isInteger(v)) throw new IceError('INPUT_INVALID', `jaccard: target value ${v} at ${i} is not a label`);
    if (v !== 0 && v !== VOC_VOID) classes.add(v);
  }
  const perClass = new Map<number, number>();
  for (const v of [...classes].sort((a, b) => a - b)) {
    let best = -Infinity;
    for (const p of preds) {
      let inter = 0;
      let union = 0;
      for (let i = 0; i < n; i++) {
        const g = target[i] === v;
        const q = Boolean(p[i]) && !(opts.excludeVoid && target[i] === VOC_VOID);
        if (g && q) inter++;
        if (g || q) union++;
      }
      best = Math.max(best, inter / union); // union ≥ |target = v| > 0
    }
    perClass.set(v, best);
  }
  let score: number | null = null;
  if (perClass.size > 0) {
    let s = 0;
    perClass.forEach((j) => (s += j));
    score = s / perClass.size;
  }
  return { perClass, score };
}

export function vocJaccard(pred: ArrayLike<number>, target: ArrayLike<number>, opts: JaccardOptions = {}): JaccardImageResult {
  return vocJaccardMulti([pred], target, opts);
}

export interface JaccardResult {
  /** Mean image score over the images that have one. */
  jaccard: number;
  /** Images scored. */
  images: number;
  /** Images without any object class (no score). */
  skipped: number;
}

/** Streams images; the dataset score is the mean of the image scores. */
export class JaccardAccumulator {
  private sum = 0;
  private scored = 0;
  private skipped = 0;

  constructor(private readonly opts: JaccardOptions = {}) {}

  add(preds: ArrayLike<number> | readonly ArrayLike<number>[], target: ArrayLike<number>): JaccardImageResult {
    const masks = isMaskList(preds) ? preds : [preds];
    const r = vocJaccardMulti(masks, target, this.opts);
    if (r.score === null) this.skipped++;
    else {
      this.sum += r.score;
      this.scored++;
    }
    return r;
  }

  result(): JaccardResult {
    if (this.scored === 0) throw new IceError('INPUT_INVALID', 'jaccard: no image with an object class was added');
    return { jaccard: this.sum / this.scored, images: this.scored, skipped: this.skipped };
  }
}

function isMaskList(x: ArrayLike<number> | readonly ArrayLike<number>[]): x is readonly ArrayLike<number>[] {
  return x.length > 0 && typeof x[0] !== 'number';
}

export interface AttentionMassResult {
  sortedAscending: Float64Array;
  /** Cumulative sum of the sorted values normalised to sum 1. */
  cumsumNormalized: Float64Array;
  /** 1 − τ */
  threshold: number;
  /** 1 where kept, in the original order. */
  keep: Uint8Array;
}

/**
 * DINO's mass threshold: sort ascending, normalise to sum 1, cumulative sum, keep a value iff
 * its cumulative sum is > 1 − τ, so the kept values carry at least τ of the mass. Ties are
 * sorted stably (the reference's torch.sort is unstable, so with ties the kept set may differ).
 */
export function attentionMassThreshold(values: ArrayLike<number>, tau: number): AttentionMassResult {
  const n = values.length;
  if (!(tau >= 0 && tau <= 1)) throw new IceError('INPUT_INVALID', `attention mass threshold τ = ${tau} is outside [0, 1]`);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(values[i])) throw new IceError('INPUT_INVALID', `attention mass threshold: non-finite value at ${i}`);
  }
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const sortedAscending = Float64Array.from(idx, (i) => values[i]);
  let total = 0;
  for (const v of sortedAscending) total += v;
  const cumsumNormalized = new Float64Array(n);
  let c = 0;
  for (let k = 0; k < n; k++) {
    c += sortedAscending[k] / total;
    cumsumNormalized[k] = c;
  }
  const threshold = 1 - tau;
  const keep = new Uint8Array(n);
  for (let k = 0; k < n; k++) keep[idx[k]] = cumsumNormalized[k] > threshold ? 1 : 0;
  return { sortedAscending, cumsumNormalized, threshold, keep };
}

export function attentionMassKeep(values: ArrayLike<number>, tau: number): Uint8Array {
  return attentionMassThreshold(values, tau).keep;
}
