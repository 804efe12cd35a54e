import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { classScoreMap, foregroundMask } from '../maps/ice-maps';
import { gridSize } from '../model/vit.config';
import type { IceVit } from '../model/vit.model';

/**
 * Patch-grid explanations of one image, the ICE maps beside the usual ViT baselines, as the
 * public reference code computes them (Chefer et al.'s Transformer-Explainability and
 * Transformer-MM-Explainability; ../shared/notes/baselines-and-protocols.md §1):
 *
 * - every image runs on its own (batch of one), as the references do;
 * - the target is the CLS head's top-1 class unless given;
 * - gradients are of the RAW logit y_c with respect to the POST-softmax attention A_l.
 *
 * LRP-based methods (partial/full LRP, TE "transformer attribution") need custom relevance
 * rules and are deliberately absent; no other rule is offered under their names.
 */

export type ExplainerName = 'ice' | 'ice-class' | 'raw-attention' | 'rollout' | 'gradcam' | 'generic-attention';

export interface ExplainOptions {
  /** Target class; default: the CLS head's top-1 prediction. */
  targetClass?: number;
  /** Rollout only: first block in the product (Chefer's ImageNet-segmentation eval uses 1). Default 0. */
  startLayer?: number;
}

export interface Explanation {
  method: ExplainerName;
  /** [g, g] patch-grid map, row-major (patch index = row·g + col). */
  map: tf.Tensor2D;
  targetClass: number;
  /** Raw CLS-head logit of the target class. */
  targetLogit: number;
}

/** Per-block attention of one image, and optionally ∂y_c/∂A_l. */
export interface AttentionTrace {
  /** Per block, post-softmax attention [heads, T, T]. */
  attention: tf.Tensor3D[];
  /** Per block, ∂y_c/∂A_l [heads, T, T] (only when asked for). */
  gradients?: tf.Tensor3D[];
  targetClass: number;
  targetLogit: number;
}

/** Validates before any kernel runs: a throw inside tf.grads would strand the tape's saved tensors. */
function checkImage(model: IceVit, image: tf.Tensor4D, target: number | undefined): void {
  const { inChans, imgSize, numClasses } = model.config;
  const [B, C, H, W] = image.shape;
  if (image.rank !== 4 || B !== 1 || C !== inChans || H !== imgSize || W !== imgSize) {
    throw new IceError(
      'INPUT_INVALID',
      `an explainer takes one NCHW image [1, ${inChans}, ${imgSize}, ${imgSize}], got [${image.shape.join(', ')}]; use explainBatch for several`,
    );
  }
  if (target !== undefined && (!Number.isInteger(target) || target < 0 || target >= numClasses)) {
    throw new IceError('INPUT_INVALID', `target class ${target} is outside 0..${numClasses - 1}`);
  }
}

/** The given target (checked by checkImage) or the first maximum of the logits, as torch.argmax. */
function resolveTarget(logits: ArrayLike<number>, target: number | undefined): number {
  if (target !== undefined) return target;
  let best = 0;
  for (let k = 1; k < logits.length; k++) if (logits[k] > logits[best]) best = k;
  return best;
}

/**
 * One forward pass of one image [1, C, H, W] keeping every block's attention; with
 * `withGradients`, one backward pass of the raw target logit as well. A zero tensor is added to
 * each A_l through the model's attention hook, so that tf.grads with respect to those zeros is
 * exactly ∂y_c/∂A_l. The caller owns (and disposes) the returned tensors.
 */
export function traceAttention(model: IceVit, image: tf.Tensor4D, withGradients: boolean, targetClass?: number): AttentionTrace {
  checkImage(model, image, targetClass);
  const squeeze = (a: tf.Tensor4D): tf.Tensor3D => tf.squeeze(a, [0]);
  if (!withGradients) {
    let logits: Float32Array = new Float32Array();
    const attention = tf.tidy(() => {
      const out = model.forward(image, { returnAttention: true });
      logits = out.clsLogits.dataSync<'float32'>();
      return out.attention!.map(squeeze);
    });
    const c = resolveTarget(logits, targetClass);
    return { attention, targetClass: c, targetLogit: logits[c] };
  }

  const { depth, numHeads } = model.config;
  const T = gridSize(model.config) ** 2 + 1;
  const zeros = Array.from({ length: depth }, () => tf.zeros([1, numHeads, T, T]));
  let c = -1;
  let logit = NaN;
  let kept: tf.Tensor4D[] = [];
  try {
    const f = (...probes: tf.Tensor[]): tf.Scalar => {
      const out = model.forward(image, { returnAttention: true, attentionHook: (l, a) => tf.add(a, probes[l]) });
      const logits = out.clsLogits.dataSync<'float32'>();
      c = resolveTarget(logits, targetClass);
      logit = logits[c];
      // tf.grads disposes every intermediate of f; the attention is wanted afterwards.
      kept = out.attention!.map((a) => tf.keep(a));
      return tf.reshape(tf.slice(out.clsLogits, [0, c], [1, 1]), []);
    };
    const grads = tf.grads(f)(zeros) as tf.Tensor4D[];
    const attention = tf.tidy(() => kept.map(squeeze));
    const gradients = tf.tidy(() => grads.map(squeeze));
    tf.dispose(grads);
    return { attention, gradients, targetClass: c, targetLogit: logit };
  } finally {
    tf.dispose(kept);
    tf.dispose(zeros);
  }
}

export function disposeTrace(t: AttentionTrace): void {
  tf.dispose(t.attention);
  if (t.gradients) tf.dispose(t.gradients);
}

// ---------------------------------------------------------------- the rules, on attention

/** Raw attention: mean over heads of the CLS row, patch columns. a: [heads, T, T] → [N]. */
export function rawAttentionMap(a: tf.Tensor3D): tf.Tensor1D {
  const [H, T] = a.shape;
  return tf.tidy(() => tf.reshape(tf.mean(tf.slice(a, [0, 0, 1], [H, 1, T - 1]), 0), [T - 1]));
}

function checkStartLayer(s: number, depth: number): void {
  if (!Number.isInteger(s) || s < 0 || s >= depth) throw new IceError('INPUT_INVALID', `rollout start layer ${s} is outside 0..${depth - 1}`);
}

/**
 * Abnar & Zuidema's rollout as Chefer's compute_rollout_attention: Â_l = rownorm(mean_h A_l + I),
 * J = Â_{L−1} ⋯ Â_s (later blocks on the left). attention: per block [heads, T, T] → J [T, T].
 */
export function rolloutJoint(attention: readonly tf.Tensor3D[], startLayer = 0): tf.Tensor2D {
  const L = attention.length;
  checkStartLayer(startLayer, L);
  return tf.tidy(() => {
    const eye = tf.eye(attention[0].shape[1]);
    let joint: tf.Tensor2D | undefined;
    for (let l = startLayer; l < L; l++) {
      const a: tf.Tensor2D = tf.add(tf.mean(attention[l], 0), eye);
      const hat: tf.Tensor2D = tf.div(a, tf.sum(a, 1, true));
      joint = joint ? tf.matMul(hat, joint) : hat;
    }
    return joint!;
  });
}

export interface GradcamParts {
  /** [N] max(unclamped, 0): Chefer's attn_gradcam before its min-max. */
  map: tf.Tensor1D;
  /** [N] mean_h(A_L[h,0,1:]·g_h). */
  unclamped: tf.Tensor1D;
  /** [heads] g_h = mean over patch columns of ∂y_c/∂A_L[h,0,1:]. */
  headWeights: tf.Tensor1D;
}

/** Chefer's attn_gradcam on the last block: a, grad [heads, T, T]. The clamp follows the head mean. */
export function gradcamFromAttention(a: tf.Tensor3D, grad: tf.Tensor3D): GradcamParts {
  const [H, T] = a.shape;
  return tf.tidy(() => {
    const clsRow = (x: tf.Tensor3D): tf.Tensor2D => tf.reshape(tf.slice(x, [0, 0, 1], [H, 1, T - 1]), [H, T - 1]);
    const headWeights: tf.Tensor1D = tf.mean(clsRow(grad), 1);
    const unclamped: tf.Tensor1D = tf.mean(tf.mul(clsRow(a), tf.expandDims(headWeights, 1)), 0);
    return { map: tf.relu(unclamped), unclamped, headWeights };
  });
}

/**
 * The generic attention-model rule (Chefer et al. 2021b): R = I; for each block in order,
 * Ā = mean_h max(∂y_c/∂A_l ⊙ A_l, 0) and R = R + Ā R. Returns the final R [T, T].
 */
export function genericAttentionR(attention: readonly tf.Tensor3D[], gradients: readonly tf.Tensor3D[]): tf.Tensor2D {
  if (attention.length !== gradients.length || attention.length === 0) {
    throw new IceError('INPUT_INVALID', `need one gradient per attention block: ${gradients.length} for ${attention.length}`);
  }
  return tf.tidy(() => {
    let R: tf.Tensor2D = tf.eye(attention[0].shape[1]);
    attention.forEach((a, l) => {
      const abar: tf.Tensor2D = tf.mean(tf.relu(tf.mul(gradients[l], a)), 0);
      R = tf.add(R, tf.matMul(abar, R));
    });
    return R;
  });
}

/** Row 0 (CLS), patch columns of a [T, T] matrix → [N]. */
export function clsRowPatches(m: tf.Tensor2D): tf.Tensor1D {
  const T = m.shape[1];
  return tf.tidy(() => tf.reshape(tf.slice(m, [0, 1], [1, T - 1]), [T - 1]));
}

function toGrid(v: tf.Tensor1D): tf.Tensor2D {
  const g = Math.round(Math.sqrt(v.shape[0]));
  if (g * g !== v.shape[0]) throw new IceError('INPUT_INVALID', `${v.shape[0]} patches are not a square grid`);
  return tf.reshape(v, [g, g]);
}

// ---------------------------------------------------------------- the explainers on a model

export interface RolloutExplanation extends Explanation {
  /** [T, T] the joint attention J. */
  joint: tf.Tensor2D;
}

export interface GradcamExplanation extends Explanation {
  /** [g, g] before the clamp. */
  unclamped: tf.Tensor2D;
  /** [heads] g_h. */
  headWeights: tf.Tensor1D;
  /** Per block ∂y_c/∂A_l [heads, T, T]. */
  attentionGradients: tf.Tensor3D[];
}

export interface GenericAttentionExplanation extends Explanation {
  /** [T, T] the final R. */
  R: tf.Tensor2D;
  /** Per block ∂y_c/∂A_l [heads, T, T]. */
  attentionGradients: tf.Tensor3D[];
}

function withTrace<E>(model: IceVit, image: tf.Tensor4D, withGradients: boolean, target: number | undefined, fn: (t: AttentionTrace) => E): E {
  const t = traceAttention(model, image, withGradients, target);
  try {
    return fn(t); // the gradients pass to the explanation
  } catch (e) {
    if (t.gradients) tf.dispose(t.gradients);
    throw e;
  } finally {
    tf.dispose(t.attention);
  }
}

export function rawAttention(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): Explanation {
  return withTrace(model, image, false, opts.targetClass, (t) => ({
    method: 'raw-attention',
    map: tf.tidy(() => toGrid(rawAttentionMap(t.attention[t.attention.length - 1]))),
    targetClass: t.targetClass,
    targetLogit: t.targetLogit,
  }));
}

export function rollout(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): RolloutExplanation {
  checkStartLayer(opts.startLayer ?? 0, model.config.depth);
  return withTrace(model, image, false, opts.targetClass, (t) => {
    const joint = rolloutJoint(t.attention, opts.startLayer ?? 0);
    return { method: 'rollout', map: tf.tidy(() => toGrid(clsRowPatches(joint))), joint, targetClass: t.targetClass, targetLogit: t.targetLogit };
  });
}

export function gradcam(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): GradcamExplanation {
  return withTrace(model, image, true, opts.targetClass, (t) => {
    const L = t.attention.length;
    const parts = gradcamFromAttention(t.attention[L - 1], t.gradients![L - 1]);
    const [map, unclamped] = tf.tidy(() => [toGrid(parts.map), toGrid(parts.unclamped)]);
    tf.dispose([parts.map, parts.unclamped]);
    return {
      method: 'gradcam',
      map,
      unclamped,
      headWeights: parts.headWeights,
      attentionGradients: t.gradients!,
      targetClass: t.targetClass,
      targetLogit: t.targetLogit,
    };
  });
}

export function genericAttention(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): GenericAttentionExplanation {
  return withTrace(model, image, true, opts.targetClass, (t) => {
    const R = genericAttentionR(t.attention, t.gradients!);
    return {
      method: 'generic-attention',
      map: tf.tidy(() => toGrid(clsRowPatches(R))),
      R,
      attentionGradients: t.gradients!,
      targetClass: t.targetClass,
      targetLogit: t.targetLogit,
    };
  });
}

function iceExplain(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions, method: 'ice' | 'ice-class'): Explanation {
  checkImage(model, image, opts.targetClass);
  if (model.config.iceHead === 'none') throw new IceError('CONFIG_INVALID', 'ICE maps need a model with an ICE head');
  let c = -1;
  let logit = NaN;
  const map = tf.tidy(() => {
    const out = model.forward(image);
    const logits = out.clsLogits.dataSync<'float32'>();
    c = resolveTarget(logits, opts.targetClass);
    logit = logits[c];
    const maps = method === 'ice' ? foregroundMask(out.zIce!) : classScoreMap(out.zIce!, [c]);
    const m: tf.Tensor2D = tf.squeeze(maps, [0]);
    return m;
  });
  return { method, map, targetClass: c, targetLogit: logit };
}

/** ICE's class-agnostic foreground mask (0/1 per patch: argmax of the ICE logits is not background). */
export function iceForeground(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): Explanation {
  return iceExplain(model, image, opts, 'ice');
}

/** ICE's per-patch raw logit of the target class. */
export function iceClassScore(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): Explanation {
  return iceExplain(model, image, opts, 'ice-class');
}

/** Frees the tensors of an explanation other than its map. */
export function disposeExtras(e: Explanation): void {
  const x = e as Partial<RolloutExplanation & GradcamExplanation & GenericAttentionExplanation>;
  const extras: (tf.Tensor | undefined)[] = [x.joint, x.unclamped, x.headWeights, x.R, ...(x.attentionGradients ?? [])];
  tf.dispose(extras.filter((t): t is tf.Tensor => t !== undefined));
}

/** Frees every tensor of an explanation (map and any extras). */
export function disposeExplanation(e: Explanation): void {
  disposeExtras(e);
  e.map.dispose();
}

// ---------------------------------------------------------------- registry

export interface Explainer {
  readonly name: ExplainerName;
  /** Needs one backward pass (∂y_c/∂A), i.e. a backend with gradients and ~3× the forward cost. */
  readonly needsBackward: boolean;
  /** Needs the model's ICE head. */
  readonly needsIceHead: boolean;
  /** One image [1, C, H, W] → [g, g] map (the caller disposes it with disposeExplanation). */
  explain(model: IceVit, image: tf.Tensor4D, opts?: ExplainOptions): Explanation;
}

export const EXPLAINERS: Record<ExplainerName, Explainer> = {
  ice: { name: 'ice', needsBackward: false, needsIceHead: true, explain: iceForeground },
  'ice-class': { name: 'ice-class', needsBackward: false, needsIceHead: true, explain: iceClassScore },
  'raw-attention': { name: 'raw-attention', needsBackward: false, needsIceHead: false, explain: rawAttention },
  rollout: { name: 'rollout', needsBackward: false, needsIceHead: false, explain: rollout },
  gradcam: { name: 'gradcam', needsBackward: true, needsIceHead: false, explain: gradcam },
  'generic-attention': { name: 'generic-attention', needsBackward: true, needsIceHead: false, explain: genericAttention },
};

export const EXPLAINER_NAMES = Object.keys(EXPLAINERS) as ExplainerName[];

export function isExplainerName(name: string): name is ExplainerName {
  return Object.prototype.hasOwnProperty.call(EXPLAINERS, name);
}

export interface BatchExplanation {
  /** [B, g, g] */
  maps: tf.Tensor3D;
  targetClasses: number[];
  targetLogits: number[];
}

/**
 * Runs an explainer on each image of x [B, C, H, W] on its own (as the references do: batch
 * statistics never mix, and each image's target is its own top-1 unless `classes` is given).
 */
export function explainBatch(name: ExplainerName, model: IceVit, x: tf.Tensor4D, opts: { classes?: number[]; startLayer?: number } = {}): BatchExplanation {
  const B = x.shape[0];
  if (B < 1) throw new IceError('INPUT_INVALID', 'explainBatch needs at least one image');
  if (opts.classes && opts.classes.length !== B) throw new IceError('INPUT_INVALID', `need one class per image: ${opts.classes.length} for ${B} images`);
  const explainer = EXPLAINERS[name];
  const maps: tf.Tensor2D[] = [];
  const targetClasses: number[] = [];
  const targetLogits: number[] = [];
  try {
    for (let b = 0; b < B; b++) {
      const image = tf.slice(x, [b, 0, 0, 0], [1, -1, -1, -1]);
      try {
        const e = explainer.explain(model, image, { targetClass: opts.classes?.[b], startLayer: opts.startLayer });
        maps.push(e.map);
        targetClasses.push(e.targetClass);
        targetLogits.push(e.targetLogit);
        disposeExtras(e);
      } finally {
        image.dispose();
      }
    }
    const [g1, g2] = maps[0].shape;
    const stacked: tf.Tensor3D = tf.tidy(() => tf.reshape(tf.stack(maps), [B, g1, g2]));
    return { maps: stacked, targetClasses, targetLogits };
  } finally {
    tf.dispose(maps);
  }
}
