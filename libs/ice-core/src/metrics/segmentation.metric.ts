/**
 * The ImageNet-segmentation protocol of Chefer et al. (imagenet_seg_eval.py, utils/metrices.py),
 * in float64 on flat row-major maps (the metrics do not depend on the grid shape):
 *
 * - per image, n = (m − min)/(max − min); foreground = n > mean(n);
 * - a constant map gives 0/0 = NaN: NaN compares false, so every pixel is background, and both
 *   AP score channels are NaN, replaced by 0 (so AP = 0.5 whatever the ground truth);
 * - pixAcc and IoU_bg/IoU_fg are pooled over the dataset (sums of counts, then one division);
 * - mAP is the mean over images of sklearn's step-wise average_precision_score on the 2·H·W
 *   samples [1 − n; n] against [gt == 0; gt == 1] (not the mean of two per-class APs).
 */
import { IceError } from '../errors';

/** np.spacing(1): the reference adds it to the pooled denominators. */
const EPS = 2.220446049250313e-16;

export interface SegmentationImageResult {
  /** The min-max normalised map; null for a constant map (the NaN rule). */
  normalizedMap: Float64Array | null;
  /** mean(n); null for a constant map. */
  meanThreshold: number | null;
  /** 0/1 predicted foreground. */
  predFg: Uint8Array;
  correct: number;
  labeled: number;
  /** [background, foreground] */
  inter: [number, number];
  union: [number, number];
  ap: number;
}

export interface SegmentationResult {
  images: number;
  pixAcc: number;
  iouBg: number;
  iouFg: number;
  mIoU: number;
  mAP: number;
}

/**
 * sklearn's average_precision_score for binary labels: Σ_k (R_k − R_{k−1}) P_k over the distinct
 * scores in decreasing order, tied scores forming one threshold (no interpolation). With no
 * positive label the result is 0, as recent sklearn returns (older versions gave NaN, which the
 * segmentation protocol's nan_to_num also turns into 0).
 */
export function averagePrecision(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  if (labels.length !== n) throw new IceError('INPUT_INVALID', `average precision: ${n} scores for ${labels.length} labels`);
  let positives = 0;
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(scores[i])) throw new IceError('INPUT_INVALID', 'average precision: NaN score');
    if (labels[i] !== 0 && labels[i] !== 1) throw new IceError('INPUT_INVALID', `average precision: label ${labels[i]} is not 0/1`);
    positives += labels[i];
  }
  if (positives === 0) return 0;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let tp = 0;
  let fp = 0;
  let prevRecall = 0;
  let ap = 0;
  for (let i = 0; i < n;) {
    const s = scores[order[i]];
    for (; i < n && scores[order[i]] === s; i++) {
      if (labels[order[i]] === 1) tp++;
      else fp++;
    }
    const recall = tp / positives;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

/** One image: map and 0/1 ground truth, flat and of equal length. */
export function segmentationImage(map: ArrayLike<number>, gt: ArrayLike<number>): SegmentationImageResult {
  const n = map.length;
  if (n === 0 || gt.length !== n) throw new IceError('INPUT_INVALID', `segmentation: map of ${n} pixels, ground truth of ${gt.length}`);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = map[i];
    if (!Number.isFinite(v)) throw new IceError('INPUT_INVALID', `segmentation: non-finite map value ${v} at ${i}`);
    if (gt[i] !== 0 && gt[i] !== 1) throw new IceError('INPUT_INVALID', `segmentation: ground truth ${gt[i]} at ${i} is not 0/1`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const constant = hi === lo;
  const norm = new Float64Array(n);
  let sum = 0;
  if (!constant) {
    for (let i = 0; i < n; i++) {
      norm[i] = (map[i] - lo) / (hi - lo);
      sum += norm[i];
    }
  }
  const mean = sum / n;
  const predFg = new Uint8Array(n);
  let correct = 0;
  const inter: [number, number] = [0, 0];
  const union: [number, number] = [0, 0];
  // AP samples: background channel first, then foreground; NaN scores (constant map) become 0.
  const scores = new Float64Array(2 * n);
  const labels = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) {
    const p = !constant && norm[i] > mean ? 1 : 0;
    const g = gt[i];
    predFg[i] = p;
    if (p === g) {
      correct++;
      inter[g]++;
      union[g]++;
    } else {
      union[0]++;
      union[1]++;
    }
    scores[i] = constant ? 0 : 1 - norm[i];
    scores[n + i] = constant ? 0 : norm[i];
    labels[i] = g === 0 ? 1 : 0;
    labels[n + i] = g;
  }
  return {
    normalizedMap: constant ? null : norm,
    meanThreshold: constant ? null : mean,
    predFg,
    correct,
    labeled: n,
    inter,
    union,
    ap: averagePrecision(scores, labels),
  };
}

/** Streams images and pools the counts as the reference does. */
export class SegmentationAccumulator {
  private images = 0;
  private correct = 0;
  private labeled = 0;
  private readonly inter = [0, 0];
  private readonly union = [0, 0];
  private apSum = 0;

  add(map: ArrayLike<number>, gt: ArrayLike<number>): SegmentationImageResult {
    const r = segmentationImage(map, gt);
    this.images++;
    this.correct += r.correct;
    this.labeled += r.labeled;
    for (const c of [0, 1]) {
      this.inter[c] += r.inter[c];
      this.union[c] += r.union[c];
    }
    this.apSum += r.ap;
    return r;
  }

  get count(): number {
    return this.images;
  }

  result(): SegmentationResult {
    if (this.images === 0) throw new IceError('INPUT_INVALID', 'segmentation: no image was added');
    const iouBg = this.inter[0] / (EPS + this.union[0]);
    const iouFg = this.inter[1] / (EPS + this.union[1]);
    return {
      images: this.images,
      pixAcc: this.correct / (EPS + this.labeled),
      iouBg,
      iouFg,
      mIoU: (iouBg + iouFg) / 2,
      mAP: this.apSum / this.images,
    };
  }
}
