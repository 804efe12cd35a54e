/**
 * Soft targets and mixed images as timm's `Mixup` (mode 'batch'), which the released ICE code
 * uses with mixup α 0.8, cutmix α 1.0, switch 0.5, label smoothing 0.1:
 *
 * - label smoothing: off = s/c, on = 1 − s + off;
 * - one (λ, mixup-or-cutmix) draw per batch; the partner of image b is image B−1−b (x.flip(0));
 * - mixup: x ← λ·x + (1−λ)·flip(x);
 * - cutmix: a box from `rand_bbox` (side √(1−λ)·H, centre uniform, clipped), pasted from flip(x),
 *   then λ ← 1 − box area / image area (correct_lam);
 * - targets = λ·smooth(y) + (1−λ)·smooth(flip(y)).
 *
 * Images are NCHW, like PyTorch's inputs ([B, C, H, W]; the box spans the last two axes). Targets
 * are [B, c], float32 (computed in float64 and rounded once); the ICE loss appends its background
 * column itself. All randomness comes from the given Rng, in timm's draw order.
 */
import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { Rng } from './rng';

export interface MixupConfig {
  /** Beta(α, α) for mixup; 0 = off. */
  mixupAlpha: number;
  /** Beta(α, α) for cutmix; 0 = off. */
  cutmixAlpha: number;
  /** Box side ratios [min, max] drawn uniformly instead of from λ (timm cutmix_minmax; forces cutmix α 1). */
  cutmixMinmax: readonly [number, number] | null;
  /** Probability of mixing a batch at all. */
  prob: number;
  /** Probability of cutmix rather than mixup when both are on. */
  switchProb: number;
  /** Only timm's 'batch' mode (one λ per batch); 'pair' and 'elem' are not implemented. */
  mode: 'batch';
  /** Recompute λ from the clipped box area (timm default true). */
  correctLam: boolean;
  labelSmoothing: number;
  numClasses: number;
}

export const MIXUP_PRESETS = {
  /** DeiT / released ICE training. */
  deit: {
    mixupAlpha: 0.8,
    cutmixAlpha: 1.0,
    cutmixMinmax: null,
    prob: 1.0,
    switchProb: 0.5,
    mode: 'batch',
    correctLam: true,
    labelSmoothing: 0.1,
  },
  /** Label smoothing only: no mixing, no random draws. */
  smoothingOnly: {
    mixupAlpha: 0,
    cutmixAlpha: 0,
    cutmixMinmax: null,
    prob: 1.0,
    switchProb: 0.5,
    mode: 'batch',
    correctLam: true,
    labelSmoothing: 0.1,
  },
} as const satisfies Record<string, Omit<MixupConfig, 'numClasses'>>;

/** A cutmix box, half-open: rows [yl, yh), columns [xl, xh). */
export interface Box {
  yl: number;
  yh: number;
  xl: number;
  xh: number;
}

/** What to do to one batch: pure data, so it can be logged, forced in tests or replayed. */
export interface MixPlan {
  /** Weight of the image itself (after the cutmix area correction); 1 = no mixing. */
  lam: number;
  useCutmix: boolean;
  /** The pasted box when useCutmix and lam < 1. */
  box: Box | null;
}

export interface MixResult {
  /** Mixed images, NCHW, a new tensor (the caller disposes it; the input is left alone). */
  x: tf.Tensor4D;
  /** Soft targets [B, numClasses], float32. */
  targets: tf.Tensor2D;
  plan: MixPlan;
}

export type Labels = ArrayLike<number> | tf.Tensor1D;

function labelArray(labels: Labels, numClasses: number): ArrayLike<number> {
  const arr = labels instanceof tf.Tensor ? labels.dataSync() : labels;
  for (let i = 0; i < arr.length; i++) {
    const y = arr[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
      throw new IceError('INPUT_INVALID', `label ${i} is ${y}; labels must be integers in [0, ${numClasses})`);
    }
  }
  return arr;
}

/**
 * timm `mixup_target`: lam·smooth(y) + (1−lam)·smooth(y reversed), [B, numClasses].
 * With lam = 1 this is plain label smoothing.
 */
export function mixupTarget(labels: Labels, numClasses: number, lam = 1, smoothing = 0): tf.Tensor2D {
  if (!(smoothing >= 0 && smoothing < 1)) throw new IceError('CONFIG_INVALID', `label smoothing must be in [0, 1), got ${smoothing}`);
  const y = labelArray(labels, numClasses);
  const B = y.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const out = new Float32Array(B * numClasses);
  for (let b = 0; b < B; b++) {
    const y1 = y[b];
    const y2 = y[B - 1 - b];
    for (let k = 0; k < numClasses; k++) {
      const t1 = k === y1 ? on : off;
      const t2 = k === y2 ? on : off;
      out[b * numClasses + k] = t1 * lam + t2 * (1 - lam);
    }
  }
  return tf.tensor2d(out, [B, numClasses], 'float32');
}

/** timm `rand_bbox`: side ⌊H·√(1−λ)⌋ × ⌊W·√(1−λ)⌋ around a uniform centre, clipped to the image. */
export function randBbox(h: number, w: number, lam: number, rng: Rng, margin = 0): Box {
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.trunc(h * ratio);
  const cutW = Math.trunc(w * ratio);
  const marginY = Math.trunc(margin * cutH);
  const marginX = Math.trunc(margin * cutW);
  // np.random.randint(low, high): cy first, then cx.
  const cy = marginY + rng.int(h - 2 * marginY);
  const cx = marginX + rng.int(w - 2 * marginX);
  const clip = (v: number, hi: number): number => Math.min(Math.max(v, 0), hi);
  const hh = Math.floor(cutH / 2);
  const hw = Math.floor(cutW / 2);
  return { yl: clip(cy - hh, h), yh: clip(cy + hh, h), xl: clip(cx - hw, w), xh: clip(cx + hw, w) };
}

/** timm `rand_bbox_minmax`: box sides uniform in [H·min, H·max), position uniform, never clipped. */
export function randBboxMinmax(h: number, w: number, minmax: readonly [number, number], rng: Rng): Box {
  const randint = (lo: number, hi: number): number => {
    if (hi <= lo) throw new IceError('CONFIG_INVALID', `cutmixMinmax gives an empty range [${lo}, ${hi}) for a ${h}×${w} image`);
    return lo + rng.int(hi - lo);
  };
  const cutH = randint(Math.trunc(h * minmax[0]), Math.trunc(h * minmax[1]));
  const cutW = randint(Math.trunc(w * minmax[0]), Math.trunc(w * minmax[1]));
  const yl = randint(0, h - cutH);
  const xl = randint(0, w - cutW);
  return { yl, yh: yl + cutH, xl, xh: xl + cutW };
}

/** timm `cutmix_bbox_and_lam`: the box, and λ = 1 − area/(H·W) when correcting (always with minmax). */
export function cutmixBboxAndLam(
  h: number,
  w: number,
  lam: number,
  rng: Rng,
  opts: { minmax?: readonly [number, number] | null; correctLam?: boolean } = {},
): { box: Box; lam: number } {
  const minmax = opts.minmax ?? null;
  const box = minmax ? randBboxMinmax(h, w, minmax, rng) : randBbox(h, w, lam, rng);
  if ((opts.correctLam ?? true) || minmax) {
    lam = 1 - ((box.yh - box.yl) * (box.xh - box.xl)) / (h * w);
  }
  return { box, lam };
}

export class Mixup {
  readonly config: MixupConfig;
  private readonly cutmixAlpha: number;

  constructor(
    config: MixupConfig,
    private readonly rng: Rng,
  ) {
    validate(config);
    this.config = config;
    // As timm: a min/max box range switches cutmix on with α = 1 so the draw logic stays the same.
    this.cutmixAlpha = config.cutmixMinmax ? 1.0 : config.cutmixAlpha;
  }

  /** timm `_params_per_batch` + the box: draws λ, mixup or cutmix, and the box, for an h×w batch. */
  plan(h: number, w: number): MixPlan {
    const { mixupAlpha, prob, switchProb } = this.config;
    const cutmixAlpha = this.cutmixAlpha;
    if (mixupAlpha <= 0 && cutmixAlpha <= 0) return { lam: 1, useCutmix: false, box: null };
    let lam = 1;
    let useCutmix = false;
    if (this.rng.uniform() < prob) {
      if (mixupAlpha > 0 && cutmixAlpha > 0) {
        useCutmix = this.rng.uniform() < switchProb;
        lam = useCutmix ? this.rng.beta(cutmixAlpha, cutmixAlpha) : this.rng.beta(mixupAlpha, mixupAlpha);
      } else if (mixupAlpha > 0) {
        lam = this.rng.beta(mixupAlpha, mixupAlpha);
      } else {
        useCutmix = true;
        lam = this.rng.beta(cutmixAlpha, cutmixAlpha);
      }
    }
    if (lam === 1 || !useCutmix) return { lam, useCutmix, box: null };
    const r = cutmixBboxAndLam(h, w, lam, this.rng, { minmax: this.config.cutmixMinmax, correctLam: this.config.correctLam });
    return { lam: r.lam, useCutmix: true, box: r.box };
  }

  /**
   * Mixes a batch: x is NCHW [B, C, H, W] (B even, as timm asserts), labels are B integers.
   * Without `plan`, one is drawn from the Rng; pass one to force λ (and the box) for tests or replays.
   */
  apply(x: tf.Tensor4D, labels: Labels, plan?: MixPlan): MixResult {
    const [B, , H, W] = x.shape;
    const nLabels = labels instanceof tf.Tensor ? labels.size : labels.length;
    if (x.rank !== 4) throw new IceError('INPUT_INVALID', `mixup expects NCHW images, got rank ${x.rank}`);
    if (nLabels !== B) throw new IceError('INPUT_INVALID', `mixup: ${B} images but ${nLabels} labels`);
    if (B % 2 !== 0) throw new IceError('INPUT_INVALID', `mixup: batch size must be even, got ${B}`);
    const p = plan ?? this.plan(H, W);
    if (p.useCutmix && p.lam !== 1 && !p.box) throw new IceError('INPUT_INVALID', 'mixup: a cutmix plan needs a box');
    const targets = mixupTarget(labels, this.config.numClasses, p.lam, this.config.labelSmoothing);
    const mixed = tf.tidy((): tf.Tensor4D => {
      if (p.lam === 1) return tf.clone(x);
      const partner = tf.reverse(x, 0);
      if (!p.useCutmix) return tf.add<tf.Tensor4D>(tf.mul(x, tf.scalar(p.lam)), tf.mul(partner, tf.scalar(1 - p.lam)));
      const box = p.box as Box;
      const mask = new Uint8Array(H * W);
      for (let r = box.yl; r < box.yh; r++) mask.fill(1, r * W + box.xl, r * W + box.xh);
      // The [1,1,H,W] mask broadcasts over batch and channels: pixels inside the box come from the partner.
      return tf.where(tf.tensor4d(mask, [1, 1, H, W], 'bool'), partner, x);
    });
    return { x: mixed, targets, plan: p };
  }
}

function validate(c: MixupConfig): void {
  const bad = (msg: string): never => {
    throw new IceError('CONFIG_INVALID', `mixup: ${msg}`);
  };
  if (!(c.mixupAlpha >= 0) || !(c.cutmixAlpha >= 0)) bad(`alphas must be ≥ 0, got mixup ${c.mixupAlpha}, cutmix ${c.cutmixAlpha}`);
  if (!(c.prob >= 0 && c.prob <= 1)) bad(`prob must be in [0, 1], got ${c.prob}`);
  if (!(c.switchProb >= 0 && c.switchProb <= 1)) bad(`switchProb must be in [0, 1], got ${c.switchProb}`);
  if (!(c.labelSmoothing >= 0 && c.labelSmoothing < 1)) bad(`labelSmoothing must be in [0, 1), got ${c.labelSmoothing}`);
  if (!Number.isInteger(c.numClasses) || c.numClasses < 1) bad(`numClasses must be a positive integer, got ${c.numClasses}`);
  if (c.mode !== 'batch') bad(`only mode 'batch' is implemented, got ${String(c.mode)}`);
  if (c.cutmixMinmax) {
    const [lo, hi] = c.cutmixMinmax;
    if (!(lo >= 0 && lo < hi && hi <= 1)) bad(`cutmixMinmax must satisfy 0 ≤ min < max ≤ 1, got [${lo}, ${hi}]`);
  }
}
