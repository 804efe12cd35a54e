/**
 * ICE adversarial-normalization loss on the patch logits z [B, N, c+1] (background channel
 * last, index c). Two variants (see /shared/golden/README.md, "golden-loss.json"):
 *
 * - official (released code): Ŷ_b = Σ_{p∈F_b} z_bp / (|F_b|+1), B̂_b = α·mean_p z_bp,
 *   total = L_ICE + ((1−λ)/λ)·gate·L_bg. The released code writes L_ICE + 0.025·gate·L_bg;
 *   dividing the paper's λ·L_ICE + (1−λ)·L_bg by λ gives that form, so λ = 1/1.025 reproduces
 *   the released 0.025 exactly while keeping λ the paper's knob (and the L_ICE scale unchanged).
 * - paper: Ŷ_b = mean_{p∈F_b} z_bp (zero vector when F_b is empty), B̂ as above,
 *   total = λ·L_ICE + (1−λ)·gate·L_bg; the paper has no gate, hence gateThreshold 0 in its preset.
 *
 * F_b = {p : argmax_k z_bpk ≠ c} carries no gradient. gate = [cls_per ≥ gateThreshold] with
 * cls_per = |F| / (B·N) pooled over the whole batch; a threshold of 0 means "always on".
 */
import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';

export const ICE_LOSS_VARIANTS = ['official', 'paper'] as const;
export type IceLossVariant = (typeof ICE_LOSS_VARIANTS)[number];

export interface IceLossConfig {
  variant: IceLossVariant;
  /** Scale of the background logit mean B̂ = α·mean_p z; (0, 1]. */
  alpha: number;
  /** λ_class of the paper: weight of L_ICE against L_bg; [0, 1] ((0, 1] for official). */
  lambdaClass: number;
  /** The background term only counts when cls_per ≥ this; [0, 1], 0 disables the gate. */
  gateThreshold: number;
}

export const ICE_LOSS_PRESETS: Readonly<Record<IceLossVariant, Readonly<IceLossConfig>>> = Object.freeze({
  official: Object.freeze({ variant: 'official', alpha: 0.5, lambdaClass: 1 / 1.025, gateThreshold: 0.1 }),
  paper: Object.freeze({ variant: 'paper', alpha: 0.5, lambdaClass: 0.975, gateThreshold: 0 }),
});

/** Everything is a tensor so that nothing syncs with the device; read them with readIceLossStats. */
export interface IceLossOutput {
  /** The training objective; the only output that carries a gradient to z. */
  total: tf.Scalar;
  lIce: tf.Scalar;
  lBg: tf.Scalar;
  /** [B, N] float32 0/1 foreground mask (argmax ≠ c). */
  mask: tf.Tensor2D;
  /** [B] float32 foreground patch counts |F_b|. */
  fCount: tf.Tensor1D;
  /** [B, c+1] pooled foreground logits Ŷ. */
  yHat: tf.Tensor2D;
  /** [B, c+1] scaled mean logits B̂. */
  bHat: tf.Tensor2D;
  /** Foreground fraction over the whole batch. */
  clsPer: tf.Scalar;
  /** 0/1 float32. */
  gate: tf.Scalar;
}

export interface IceLossStats {
  total: number;
  lIce: number;
  lBg: number;
  clsPer: number;
  gate: boolean;
  fCount: number[];
}

/** The admissible range of each numeric field (the official variant also needs λ > 0: it divides by λ). */
export const ICE_LOSS_RULES = { alpha: 'in (0, 1]', lambdaClass: 'in [0, 1]', gateThreshold: 'in [0, 1]' } as const;

/** One field of an IceLossConfig outside its range, and the rule it breaks. */
export interface IceLossConfigIssue {
  field: keyof IceLossConfig;
  rule: string;
  value: unknown;
}

/** Every field of `config` that breaks its rule (empty: valid). The one statement of α/λ/gate ranges. */
export function iceLossConfigIssues(config: IceLossConfig): IceLossConfigIssue[] {
  const { variant, alpha, lambdaClass, gateThreshold } = config;
  const out: IceLossConfigIssue[] = [];
  if (!(ICE_LOSS_VARIANTS as readonly string[]).includes(variant))
    out.push({ field: 'variant', rule: ICE_LOSS_VARIANTS.map((v) => `'${v}'`).join(' or '), value: variant });
  if (!Number.isFinite(alpha) || alpha <= 0 || alpha > 1) out.push({ field: 'alpha', rule: ICE_LOSS_RULES.alpha, value: alpha });
  if (!Number.isFinite(lambdaClass) || lambdaClass < 0 || lambdaClass > 1)
    out.push({ field: 'lambdaClass', rule: ICE_LOSS_RULES.lambdaClass, value: lambdaClass });
  // official divides by λ (see the module comment)
  else if (variant === 'official' && lambdaClass === 0)
    out.push({ field: 'lambdaClass', rule: 'in (0, 1] for the official variant', value: lambdaClass });
  if (!Number.isFinite(gateThreshold) || gateThreshold < 0 || gateThreshold > 1)
    out.push({ field: 'gateThreshold', rule: ICE_LOSS_RULES.gateThreshold, value: gateThreshold });
  return out;
}

/** Throws IceError('CONFIG_INVALID') naming the first offending field. */
export function validateIceLossConfig(config: IceLossConfig): void {
  const [first] = iceLossConfigIssues(config);
  if (first) {
    const { field, rule, value } = first;
    throw new IceError('CONFIG_INVALID', `ICE loss ${field} must be ${rule}, got ${String(value)}`, { field, value });
  }
}

/** Weights of L_ICE and of the (gated) L_bg in the total. */
export function iceLossTermWeights(config: IceLossConfig): { ice: number; bg: number } {
  const l = config.lambdaClass;
  return config.variant === 'official' ? { ice: 1, bg: (1 - l) / l } : { ice: l, bg: 1 - l };
}

/**
 * Smallest foreground count k with k/(B·N) ≥ threshold in float64, so that the gate compares
 * exact integer counts on the device and agrees with the reference's float64 cls_per at the
 * boundary (a float32 cls_per of 8/80 can land one ulp either side of float32(0.1)).
 */
function gateCount(threshold: number, total: number): number {
  let k = Math.ceil(threshold * total);
  while (k > 0 && (k - 1) / total >= threshold) k--;
  while (k / total < threshold) k++;
  return k;
}

/**
 * The total as a tape node of its own with a hand-written gradient. tfjs-core's CommonJS
 * bundle registers no op gradients, and autodiff through the forward would also try to
 * differentiate the mask (NotEqual has no gradient). Here the only tape input is z, so the
 * mask and everything derived from it are constants to the backward pass by construction.
 * With C[b,r,k] = ω_r·coef[b,r,k] (ω = weights, gate included) and total = Σ C·log_softmax(P):
 *   dP = C − softmax(P)·Σ_k C,   dz_b = W_bᵀ·dP_b.
 */
function totalWithGradient(
  z: tf.Tensor3D,
  sums: tf.Tensor1D,
  weights: tf.Tensor1D,
  w: tf.Tensor3D,
  coef: tf.Tensor3D,
  lsm: tf.Tensor3D,
): tf.Scalar {
  return tf.customGrad<tf.Scalar>((...args) => {
    // save() is a no-op unless a gradient is being recorded
    (args[1] as tf.GradSaveFunc)([w, coef, lsm, weights]);
    return {
      value: tf.sum(tf.mul(sums, weights)),
      gradFunc: (dy, saved) => {
        const [sw, scoef, slsm, sweights] = saved;
        const cw = tf.mul(scoef, tf.reshape(tf.mul(sweights, dy), [1, 2, 1]));
        const dP = tf.sub(cw, tf.mul(tf.exp(slsm), tf.sum(cw, 2, true)));
        return tf.matMul(sw, dP, true, false);
      },
    };
  })(z);
}

function checkInputs(z: tf.Tensor3D, targets: tf.Tensor2D): void {
  const bad = (msg: string) => new IceError('INPUT_INVALID', `iceLoss: ${msg}`, { z: z.shape, targets: targets.shape });
  if (z.rank !== 3) throw bad(`z must be [B, N, c+1], got rank ${z.rank}`);
  if (targets.rank !== 2) throw bad(`targets must be [B, c], got rank ${targets.rank}`);
  if (z.dtype !== 'float32' || targets.dtype !== 'float32') throw bad('z and targets must be float32');
  const [b, n, k] = z.shape;
  if (b < 1 || n < 1 || k < 2) throw bad(`z shape [${z.shape.join(', ')}] needs B ≥ 1, N ≥ 1, c+1 ≥ 2`);
  if (targets.shape[0] !== b || targets.shape[1] !== k - 1) {
    throw bad(`targets [${targets.shape.join(', ')}] do not match z [${z.shape.join(', ')}] (expected [${b}, ${k - 1}])`);
  }
}

/**
 * The ICE loss. Pure tf ops, no device sync: use it inside tf.tidy, tf.grads or
 * tf.variableGrads (`tf.variableGrads(() => iceLoss(model(x), t, cfg).total)`; the diagnostics
 * are then disposed by the gradient's own tidy unless tf.keep'd there). Only `total` has a
 * gradient, to z only (targets are labels).
 */
export function iceLoss(z: tf.Tensor3D, targets: tf.Tensor2D, config: IceLossConfig = ICE_LOSS_PRESETS.official): IceLossOutput {
  validateIceLossConfig(config);
  checkInputs(z, targets);
  const [B, N, K] = z.shape;
  const c = K - 1;
  const { ice: wIce, bg: wBg } = iceLossTermWeights(config);

  return tf.tidy(() => {
    const mask = tf.cast(tf.notEqual<tf.Tensor2D>(tf.argMax(z, 2), tf.scalar(c, 'int32')), 'float32');
    const f = tf.sum<tf.Tensor2D>(mask, 1, true); // [B,1]
    // official: +1 always; paper: true mean, and m = 0 makes Ŷ = 0 when F is empty
    const den = config.variant === 'official' ? tf.add(f, 1) : tf.maximum(f, 1);
    // Pooling weights [B,2,N]: row 0 gives Ŷ, row 1 (padded with α/N) gives B̂; one matMul
    // and one log-softmax then serve both terms.
    const w = tf.pad(
      tf.reshape<tf.Rank.R3>(tf.div(mask, den), [B, 1, N]),
      [
        [0, 0],
        [0, 1],
        [0, 0],
      ],
      config.alpha / N,
    );
    const pooled = tf.matMul<tf.Tensor3D>(w, z); // [B,2,K]
    const lsm = tf.logSoftmax(pooled);
    // Cross-entropy coefficients [B,2,K]: row 0 = targets with a 0 for background, row 1 = e_c.
    const eBg = new Float32Array(2 * K);
    eBg[K + c] = 1;
    const coef = tf.add<tf.Tensor3D>(
      tf.pad(tf.reshape(targets, [B, 1, c]), [
        [0, 0],
        [0, 1],
        [0, 1],
      ]),
      tf.tensor3d(eBg, [1, 2, K]),
    );
    const sums = tf.sum<tf.Tensor1D>(tf.mul(coef, lsm), [0, 2]); // [2] = −B·[L_ICE, L_bg]

    const count = tf.sum<tf.Scalar>(f);
    let gate: tf.Scalar;
    let weights: tf.Tensor1D;
    if (config.gateThreshold > 0) {
      gate = tf.cast(tf.greaterEqual<tf.Scalar>(count, gateCount(config.gateThreshold, B * N)), 'float32');
      weights = tf.add<tf.Tensor1D>(tf.tensor1d([-wIce / B, 0]), tf.mul(gate, tf.tensor1d([0, -wBg / B])));
    } else {
      gate = tf.scalar(1);
      weights = tf.tensor1d([-wIce / B, -wBg / B]);
    }
    const total = totalWithGradient(z, sums, weights, w, coef, lsm);

    const [lIce, lBg] = tf.unstack(tf.mul(sums, -1 / B)) as [tf.Scalar, tf.Scalar];
    const [yHat, bHat] = tf.unstack(pooled, 1) as [tf.Tensor2D, tf.Tensor2D];
    return {
      total,
      lIce,
      lBg,
      mask,
      fCount: tf.reshape<tf.Rank.R1>(f, [B]),
      yHat,
      bHat,
      clsPer: tf.div<tf.Scalar>(count, B * N),
      gate,
    };
  });
}

/** Reads the scalar diagnostics (one device sync, for logging); does not dispose anything. */
export async function readIceLossStats(out: IceLossOutput): Promise<IceLossStats> {
  const [total, lIce, lBg, clsPer, gate, fCount] = await Promise.all(
    [out.total, out.lIce, out.lBg, out.clsPer, out.gate, out.fCount].map((t) => t.data()),
  );
  return { total: total[0], lIce: lIce[0], lBg: lBg[0], clsPer: clsPer[0], gate: gate[0] === 1, fCount: Array.from(fCount) };
}

/** ICE class prediction of an image with no foreground patch: the ICE head names no class. */
export const NO_ICE_CLASS = -1;

/**
 * The ICE head's own classification of each image: argmax over the c image classes of Ŷ_b, the
 * foreground-pooled ICE logits exactly as the loss forms them (iceLoss's `yHat`; official variant:
 * Σ_{p∈F_b} z_bp / (|F_b|+1), paper variant: the mean over F_b, F_b = {p : argmax_k z_bpk ≠ c}).
 * The variants differ by a positive factor per image, so they give the same argmax; α, λ_class and
 * the gate do not enter Ŷ at all. The background channel c is left out of the argmax (the question
 * is which image class the head names; with F_b non-empty, Ŷ_b pools only patches whose own argmax
 * is an image class).
 *
 * An image with no foreground patch (F_b empty) has Ŷ_b = 0 in both variants, i.e. a tie over all
 * classes: it gets NO_ICE_CLASS (−1), which never equals a label, so `ice_top1` counts it as wrong
 * (the head made no class claim) rather than breaking the tie towards class 0.
 *
 * zIce: [B, N, c+1] raw ICE logits (background last), as the model's forward returns them.
 * Returns [B] int32 classes in 0..c−1, or NO_ICE_CLASS.
 */
export function iceClassPredictions(zIce: tf.Tensor3D, variant: IceLossVariant = 'official'): tf.Tensor1D {
  const [B, , K] = zIce.shape;
  return tf.tidy(() => {
    // The targets only enter the loss terms, not Ŷ or the mask: zeros will do.
    const { yHat, fCount } = iceLoss(zIce, tf.zeros([B, K - 1]), ICE_LOSS_PRESETS[variant]);
    const cls = tf.argMax<tf.Tensor1D>(tf.slice(yHat, [0, 0], [B, K - 1]), 1);
    return tf.where<tf.Tensor1D>(tf.greater(fCount, 0), cls, tf.fill([B], NO_ICE_CLASS, 'int32'));
  });
}
