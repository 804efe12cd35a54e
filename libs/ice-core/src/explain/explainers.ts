/**
 * Patch-grid explanations of one image, the ICE maps beside the usual ViT baselines, as the
 * public reference code computes them (Chefer et al.'s Transformer-Explainability and
 * Transformer-MM-Explainability; ../shared/notes/baselines-and-protocols.md §1):
 *
 * - every image runs on its own (batch of one), as the references do;
 * - the target is the CLS head's top-1 class unless given;
 * - gradients are of the RAW logit y_c with respect to the POST-softmax attention A_l.
 *
 * The LRP-based methods, Chefer et al.'s "transformer attribution" and partial LRP, propagate
 * relevance with the reference's rules (lrp.ts); full LRP (relevance down to the pixels) is not
 * offered.
 */
import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { iceClassPredictions, NO_ICE_CLASS } from '../loss/ice-loss';
import { classScoreMap, foregroundMask } from '../maps/ice-maps';
import { bmm, SLICE_MACS } from '../model/fast-ops';
import { gridSize, type VitConfig } from '../model/vit.config';
import type { ForwardOutput, IceVit } from '../model/vit.model';
import { attentionRelevance, disposeRecord, partialLrpMap, recordForward, transformerAttributionJoint } from './lrp';

export type ExplainerName =
  'ice' | 'ice-class' | 'raw-attention' | 'rollout' | 'gradcam' | 'generic-attention' | 'transformer-attribution' | 'partial-lrp';

/**
 * Whose top-1 is the target class when none is given: the CLS head's ('cls', as the references)
 * or the ICE head's own ('ice': argmax over the image classes of Ŷ, the foreground-pooled ICE
 * logits; the CLS head's where an image has no foreground patch). The released ICE loss trains the
 * CLS head with weight 0, so after ICE fine-tuning its top-1 may say little.
 */
export type TargetSource = 'cls' | 'ice';
export const TARGET_SOURCES: readonly TargetSource[] = ['cls', 'ice'];

export interface ExplainOptions {
  /** Target class; default: the top-1 prediction of `targetSource`. */
  targetClass?: number;
  /** Default 'cls'. */
  targetSource?: TargetSource;
  /**
   * Rollout and transformer attribution: first block in the product (Chefer's ImageNet-segmentation
   * eval uses 1 for both). Default 0.
   */
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
function checkImages(
  model: IceVit,
  images: tf.Tensor4D,
  classes: readonly (number | undefined)[] | undefined,
  source: TargetSource = 'cls',
): void {
  const { inChans, imgSize, numClasses } = model.config;
  if (source === 'ice' && model.config.iceHead === 'none')
    throw new IceError('CONFIG_INVALID', "targets from the ICE head's top-1 need a model with an ICE head");
  const [B, C, H, W] = images.shape;
  if (images.rank !== 4 || B < 1 || C !== inChans || H !== imgSize || W !== imgSize) {
    throw new IceError(
      'INPUT_INVALID',
      `an explainer takes NCHW images [B, ${inChans}, ${imgSize}, ${imgSize}], got [${images.shape.join(', ')}]`,
    );
  }
  if (classes && classes.length !== B) throw new IceError('INPUT_INVALID', `need one class per image: ${classes.length} for ${B} images`);
  for (const target of classes ?? []) {
    if (target !== undefined && (!Number.isInteger(target) || target < 0 || target >= numClasses)) {
      throw new IceError('INPUT_INVALID', `target class ${target} is outside 0..${numClasses - 1}`);
    }
  }
}

function checkImage(model: IceVit, image: tf.Tensor4D, target: number | undefined, source: TargetSource = 'cls'): void {
  if (image.shape[0] !== 1) {
    throw new IceError(
      'INPUT_INVALID',
      `an explainer takes one image [1, C, H, W], got [${image.shape.join(', ')}]; use explainBatch for several`,
    );
  }
  checkImages(model, image, [target], source);
}

/**
 * Per image b: the given target, else the ICE head's top-1 with source 'ice' (where it names a
 * class), else the first maximum of its CLS logits row (as torch.argmax). Reads the logits back.
 */
function resolveTargets(
  out: ForwardOutput,
  B: number,
  classes: readonly (number | undefined)[] | undefined,
  source: TargetSource,
): { classes: number[]; logits: number[] } {
  const logits = out.clsLogits.dataSync<'float32'>();
  const ice = source === 'ice' ? iceClassPredictions(out.zIce!).dataSync() : undefined;
  const K = logits.length / B;
  const picked = { classes: [] as number[], logits: [] as number[] };
  for (let b = 0; b < B; b++) {
    let c = classes?.[b] ?? (ice && ice[b] !== NO_ICE_CLASS ? ice[b] : undefined);
    if (c === undefined) {
      c = 0;
      for (let k = 1; k < K; k++) if (logits[b * K + k] > logits[b * K + c]) c = k;
    }
    picked.classes.push(c);
    picked.logits.push(logits[b * K + c]);
  }
  return picked;
}

/** Each image's top-1 class by `source`, as the explainers pick their default target (one forward pass). */
export function topClasses(model: IceVit, images: tf.Tensor4D, source: TargetSource = 'cls'): number[] {
  checkImages(model, images, undefined, source);
  return tf.tidy(
    () => resolveTargets(model.forward(images, { skipIceHead: source !== 'ice' }), images.shape[0], undefined, source).classes,
  );
}

/** Per-block attention of a batch of images, and optionally each image's ∂y_c/∂A_l. */
export interface BatchAttentionTrace {
  /** Per block, post-softmax attention [B, heads, T, T]. */
  attention: tf.Tensor4D[];
  /** Per block, ∂y_{b,c_b}/∂A_l [B, heads, T, T] (only when asked for). */
  gradients?: tf.Tensor4D[];
  targetClasses: number[];
  targetLogits: number[];
}

/**
 * One forward pass of images [B, C, H, W] keeping every block's attention; with `withGradients`,
 * one backward pass of Σ_b y_{b,c_b}. Images never interact in a ViT (no batch statistics), so
 * the gradient's slice b is exactly image b's own ∂y_{c_b}/∂A_l, as if it ran alone. A zero
 * tensor is added to each A_l through the model's attention hook, so that tf.grads with respect
 * to those zeros is ∂y/∂A_l. The caller owns (and disposes) the returned tensors.
 */
export function traceAttentionBatch(
  model: IceVit,
  images: tf.Tensor4D,
  withGradients: boolean,
  classes?: readonly (number | undefined)[],
  source: TargetSource = 'cls',
): BatchAttentionTrace {
  checkImages(model, images, classes, source);
  const B = images.shape[0];
  const skipIceHead = source !== 'ice';
  if (!withGradients) {
    let t = { classes: [] as number[], logits: [] as number[] };
    const attention = tf.tidy(() => {
      const out = model.forward(images, { returnAttention: true, skipIceHead });
      t = resolveTargets(out, B, classes, source);
      return out.attention!;
    });
    return { attention, targetClasses: t.classes, targetLogits: t.logits };
  }

  const { depth, numHeads } = model.config;
  const T = gridSize(model.config) ** 2 + 1;
  const zeros = Array.from({ length: depth }, () => tf.zeros([B, numHeads, T, T]));
  let targets = { classes: [] as number[], logits: [] as number[] };
  let kept: tf.Tensor4D[] = [];
  try {
    const f = (...probes: tf.Tensor[]): tf.Scalar => {
      const out = model.forward(images, { returnAttention: true, skipIceHead, attentionHook: (l, a) => tf.add(a, probes[l]) });
      targets = resolveTargets(out, B, classes, source);
      // tf.grads disposes every intermediate of f; the attention is wanted afterwards.
      kept = out.attention!.map((a) => tf.keep(a));
      const pick = tf.oneHot(tf.tensor1d(targets.classes, 'int32'), model.config.numClasses);
      return tf.sum(tf.mul(out.clsLogits, pick));
    };
    const gradients = tf.grads(f)(zeros) as tf.Tensor4D[];
    const attention = kept;
    kept = [];
    return { attention, gradients, targetClasses: targets.classes, targetLogits: targets.logits };
  } finally {
    tf.dispose(kept);
    tf.dispose(zeros);
  }
}

/**
 * One forward pass of one image [1, C, H, W] keeping every block's attention; with
 * `withGradients`, one backward pass of the raw target logit as well (traceAttentionBatch at B = 1).
 */
export function traceAttention(
  model: IceVit,
  image: tf.Tensor4D,
  withGradients: boolean,
  targetClass?: number,
  source: TargetSource = 'cls',
): AttentionTrace {
  checkImage(model, image, targetClass, source);
  const t = traceAttentionBatch(model, image, withGradients, [targetClass], source);
  const squeeze = (xs: tf.Tensor4D[]): tf.Tensor3D[] => tf.tidy(() => xs.map((a) => tf.squeeze<tf.Tensor3D>(a, [0])));
  try {
    const out: AttentionTrace = { attention: squeeze(t.attention), targetClass: t.targetClasses[0], targetLogit: t.targetLogits[0] };
    if (t.gradients) out.gradients = squeeze(t.gradients);
    return out;
  } finally {
    tf.dispose(t.attention);
    if (t.gradients) tf.dispose(t.gradients);
  }
}

export function disposeTrace(t: AttentionTrace): void {
  tf.dispose(t.attention);
  if (t.gradients) tf.dispose(t.gradients);
}

// ---------------------------------------------------------------- the rules, on attention
// Each rule is written once for a batch of images ([B, heads, T, T] per block); the one-image
// forms below are the same code at B = 1, so the golden tests cover the batched path too.

/** Row 0 (CLS), patch columns of every head: [B, H, T, T] → [B, H, N]. */
function clsRowsBatch(x: tf.Tensor4D): tf.Tensor3D {
  const [B, H, , T] = x.shape;
  return tf.reshape(tf.slice(x, [0, 0, 0, 1], [B, H, 1, T - 1]), [B, H, T - 1]);
}

/** Raw attention of a batch: mean over heads of the CLS row, patch columns. [B, H, T, T] → [B, N]. */
export function rawAttentionMapBatch(a: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => tf.mean(clsRowsBatch(a), 1));
}

/** Raw attention: mean over heads of the CLS row, patch columns. a: [heads, T, T] → [N]. */
export function rawAttentionMap(a: tf.Tensor3D): tf.Tensor1D {
  return tf.tidy(() => tf.squeeze(rawAttentionMapBatch(tf.expandDims(a, 0)), [0]));
}

function checkStartLayer(s: number, depth: number): void {
  if (!Number.isInteger(s) || s < 0 || s >= depth)
    throw new IceError('INPUT_INVALID', `start layer ${s} (rollout, transformer attribution) is outside 0..${depth - 1}`);
}

/** rolloutJoint for a batch: per block [B, H, T, T] → J [B, T, T]. */
export function rolloutJointBatch(attention: readonly tf.Tensor4D[], startLayer = 0): tf.Tensor3D {
  const L = attention.length;
  checkStartLayer(startLayer, L);
  return tf.tidy(() => {
    const eye = tf.eye(attention[0].shape[2]);
    let joint: tf.Tensor3D | undefined;
    for (let l = startLayer; l < L; l++) {
      const a: tf.Tensor3D = tf.add(tf.mean(attention[l], 1), eye); // [B,T,T]
      const hat: tf.Tensor3D = tf.div(a, tf.sum(a, 2, true));
      joint = joint ? bmm(hat, joint) : hat;
    }
    return joint!;
  });
}

/**
 * Abnar & Zuidema's rollout as Chefer's compute_rollout_attention: Â_l = rownorm(mean_h A_l + I),
 * J = Â_{L−1} ⋯ Â_s (later blocks on the left). attention: per block [heads, T, T] → J [T, T].
 */
export function rolloutJoint(attention: readonly tf.Tensor3D[], startLayer = 0): tf.Tensor2D {
  checkStartLayer(startLayer, attention.length);
  return tf.tidy(() =>
    tf.squeeze(
      rolloutJointBatch(
        attention.map((a) => tf.expandDims(a, 0)),
        startLayer,
      ),
      [0],
    ),
  );
}

export interface GradcamParts {
  /** [N] max(unclamped, 0): Chefer's attn_gradcam before its min-max. */
  map: tf.Tensor1D;
  /** [N] mean_h(A_L[h,0,1:]·g_h). */
  unclamped: tf.Tensor1D;
  /** [heads] g_h = mean over patch columns of ∂y_c/∂A_L[h,0,1:]. */
  headWeights: tf.Tensor1D;
}

/** GradcamParts of a batch: a, grad [B, H, T, T] → map, unclamped [B, N], headWeights [B, H]. */
export function gradcamFromAttentionBatch(
  a: tf.Tensor4D,
  grad: tf.Tensor4D,
): { map: tf.Tensor2D; unclamped: tf.Tensor2D; headWeights: tf.Tensor2D } {
  return tf.tidy(() => {
    const headWeights: tf.Tensor2D = tf.mean(clsRowsBatch(grad), 2); // [B,H]
    const unclamped: tf.Tensor2D = tf.mean(tf.mul(clsRowsBatch(a), tf.expandDims(headWeights, 2)), 1); // [B,N]
    return { map: tf.relu(unclamped), unclamped, headWeights };
  });
}

/** Chefer's attn_gradcam on the last block: a, grad [heads, T, T]. The clamp follows the head mean. */
export function gradcamFromAttention(a: tf.Tensor3D, grad: tf.Tensor3D): GradcamParts {
  return tf.tidy(() => {
    const p = gradcamFromAttentionBatch(tf.expandDims(a, 0), tf.expandDims(grad, 0));
    const one = (t: tf.Tensor2D): tf.Tensor1D => tf.squeeze<tf.Tensor1D>(t, [0]);
    return { map: one(p.map), unclamped: one(p.unclamped), headWeights: one(p.headWeights) };
  });
}

function checkPairs(attention: readonly tf.Tensor[], gradients: readonly tf.Tensor[]): void {
  if (attention.length !== gradients.length || attention.length === 0) {
    throw new IceError('INPUT_INVALID', `need one gradient per attention block: ${gradients.length} for ${attention.length}`);
  }
}

/** genericAttentionR for a batch: per block [B, H, T, T] → R [B, T, T]. */
export function genericAttentionRBatch(attention: readonly tf.Tensor4D[], gradients: readonly tf.Tensor4D[]): tf.Tensor3D {
  checkPairs(attention, gradients);
  return tf.tidy(() => {
    const [B, , T] = attention[0].shape;
    let R: tf.Tensor3D = tf.tile(tf.expandDims(tf.eye(T), 0), [B, 1, 1]);
    attention.forEach((a, l) => {
      const abar: tf.Tensor3D = tf.mean(tf.relu(tf.mul(gradients[l], a)), 1); // [B,T,T]
      R = tf.add(R, bmm(abar, R));
    });
    return R;
  });
}

/**
 * The generic attention-model rule (Chefer et al. 2021b): R = I; for each block in order,
 * Ā = mean_h max(∂y_c/∂A_l ⊙ A_l, 0) and R = R + Ā R. Returns the final R [T, T].
 */
export function genericAttentionR(attention: readonly tf.Tensor3D[], gradients: readonly tf.Tensor3D[]): tf.Tensor2D {
  checkPairs(attention, gradients);
  return tf.tidy(() =>
    tf.squeeze(
      genericAttentionRBatch(
        attention.map((a) => tf.expandDims(a, 0)),
        gradients.map((g) => tf.expandDims(g, 0)),
      ),
      [0],
    ),
  );
}

/** Row 0 (CLS), patch columns of each [T, T] matrix of a batch: [B, T, T] → [B, N]. */
function clsRowPatchesBatch(m: tf.Tensor3D): tf.Tensor2D {
  const [B, , T] = m.shape;
  return tf.reshape(tf.slice(m, [0, 0, 1], [B, 1, T - 1]), [B, T - 1]);
}

/** Row 0 (CLS), patch columns of a [T, T] matrix → [N]. */
export function clsRowPatches(m: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.squeeze(clsRowPatchesBatch(tf.expandDims(m, 0)), [0]));
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

export interface LrpExplanation extends Explanation {
  /** Blocks whose attention relevance is given (transformer attribution: startLayer..L−1; partial LRP: the last). */
  relevanceBlocks: number[];
  /** Per block of relevanceBlocks, the (halved) LRP relevance at the post-softmax attention, R_A [heads, T, T]. */
  attentionRelevance: tf.Tensor3D[];
  /** Transformer attribution: C [T, T] = (I + Ā_{L−1}) ⋯ (I + Ā_s). */
  joint?: tf.Tensor2D;
  /** Transformer attribution: per block ∂y_c/∂A_l [heads, T, T]. */
  attentionGradients?: tf.Tensor3D[];
}

export interface GenericAttentionExplanation extends Explanation {
  /** [T, T] the final R. */
  R: tf.Tensor2D;
  /** Per block ∂y_c/∂A_l [heads, T, T]. */
  attentionGradients: tf.Tensor3D[];
}

function withTrace<E>(model: IceVit, image: tf.Tensor4D, withGradients: boolean, opts: ExplainOptions, fn: (t: AttentionTrace) => E): E {
  const t = traceAttention(model, image, withGradients, opts.targetClass, opts.targetSource);
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
  return withTrace(model, image, false, opts, (t) => ({
    method: 'raw-attention',
    map: tf.tidy(() => toGrid(rawAttentionMap(t.attention[t.attention.length - 1]))),
    targetClass: t.targetClass,
    targetLogit: t.targetLogit,
  }));
}

export function rollout(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): RolloutExplanation {
  checkStartLayer(opts.startLayer ?? 0, model.config.depth);
  return withTrace(model, image, false, opts, (t) => {
    const joint = rolloutJoint(t.attention, opts.startLayer ?? 0);
    return {
      method: 'rollout',
      map: tf.tidy(() => toGrid(clsRowPatches(joint))),
      joint,
      targetClass: t.targetClass,
      targetLogit: t.targetLogit,
    };
  });
}

export function gradcam(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): GradcamExplanation {
  return withTrace(model, image, true, opts, (t) => {
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
  return withTrace(model, image, true, opts, (t) => {
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
  checkImage(model, image, opts.targetClass, opts.targetSource);
  const r = iceBatch(model, image, method, [opts.targetClass], opts.targetSource ?? 'cls');
  const map = tf.tidy((): tf.Tensor2D => tf.squeeze(r.maps, [0]));
  r.maps.dispose();
  return { method, map, targetClass: r.targetClasses[0], targetLogit: r.targetLogits[0] };
}

/** ICE's class-agnostic foreground mask (0/1 per patch: argmax of the ICE logits is not background). */
export function iceForeground(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): Explanation {
  return iceExplain(model, image, opts, 'ice');
}

/** ICE's per-patch raw logit of the target class. */
export function iceClassScore(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): Explanation {
  return iceExplain(model, image, opts, 'ice-class');
}

type LrpMethod = 'transformer-attribution' | 'partial-lrp';

interface LrpBatchResult {
  /** [B, N] */
  maps: tf.Tensor2D;
  /** Per block, R_A [B, H, T, T] where computed. */
  relevance: (tf.Tensor4D | undefined)[];
  gradients?: tf.Tensor4D[];
  joint?: tf.Tensor3D;
  targets: { classes: number[]; logits: number[] };
}

/**
 * The LRP methods on a batch (one forward pass, plus one backward pass for transformer attribution,
 * and one relevance pass): transformer attribution with the 'ours' rules from the logits down to
 * block `startLayer`, partial LRP with the 'lrp' rules (ViT_orig_LRP) through the last block only.
 */
function lrpBatch(
  method: LrpMethod,
  model: IceVit,
  x: tf.Tensor4D,
  classes: readonly (number | undefined)[] | undefined,
  source: TargetSource,
  startLayer: number,
): LrpBatchResult {
  const L = model.config.depth;
  const ta = method === 'transformer-attribution';
  if (ta) checkStartLayer(startLayer, L);
  const B = x.shape[0];
  const rec = recordForward(model, x, ta, source === 'ice', (out) => resolveTargets(out, B, classes, source));
  try {
    const relevance = attentionRelevance(model, rec, ta ? 'ours' : 'lrp', ta ? startLayer : L - 1);
    if (!ta) return { maps: partialLrpMap(relevance[L - 1]!), relevance, targets: rec.targets };
    const joint = transformerAttributionJoint(relevance, rec.gradients!, startLayer);
    const gradients = rec.gradients;
    rec.gradients = undefined; // handed to the caller
    return { maps: tf.tidy(() => clsRowPatchesBatch(joint)), relevance, gradients, joint, targets: rec.targets };
  } finally {
    disposeRecord(rec);
  }
}

function lrpExplain(method: LrpMethod, model: IceVit, image: tf.Tensor4D, opts: ExplainOptions): LrpExplanation {
  checkImage(model, image, opts.targetClass, opts.targetSource);
  const r = lrpBatch(method, model, image, [opts.targetClass], opts.targetSource ?? 'cls', opts.startLayer ?? 0);
  try {
    const relevanceBlocks = r.relevance.flatMap((t, l) => (t ? [l] : []));
    return tf.tidy(() => {
      const one = <T extends tf.Tensor>(t: tf.Tensor): T => tf.squeeze<T>(t, [0]);
      const e: LrpExplanation = {
        method,
        map: toGrid(one(r.maps)),
        relevanceBlocks,
        attentionRelevance: relevanceBlocks.map((l) => one<tf.Tensor3D>(r.relevance[l]!)),
        targetClass: r.targets.classes[0],
        targetLogit: r.targets.logits[0],
      };
      if (r.joint) e.joint = one(r.joint);
      if (r.gradients) e.attentionGradients = r.gradients.map((g) => one<tf.Tensor3D>(g));
      return e as unknown as tf.TensorContainer;
    }) as unknown as LrpExplanation;
  } finally {
    tf.dispose([
      r.maps,
      ...r.relevance.filter((t): t is tf.Tensor4D => t !== undefined),
      ...(r.gradients ?? []),
      ...(r.joint ? [r.joint] : []),
    ]);
  }
}

/**
 * Chefer et al.'s transformer attribution (CVPR 2021): per block Ā_l = mean_h max(∂y_c/∂A_l ⊙ R_A_l, 0)
 * with R_A_l the LRP relevance at the attention, C = (I + Ā_{L−1}) ⋯ (I + Ā_s), map = C[0, 1:].
 */
export function transformerAttribution(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): LrpExplanation {
  return lrpExplain('transformer-attribution', model, image, opts);
}

/** Partial LRP (Chefer's lrp_last_layer baseline, ViT_orig_LRP rules): mean_h max(R_A, 0) of the last block's CLS row. */
export function partialLrp(model: IceVit, image: tf.Tensor4D, opts: ExplainOptions = {}): LrpExplanation {
  return lrpExplain('partial-lrp', model, image, opts);
}

/** Frees the tensors of an explanation other than its map. */
export function disposeExtras(e: Explanation): void {
  const x = e as Partial<RolloutExplanation & GradcamExplanation & GenericAttentionExplanation & LrpExplanation>;
  const extras: (tf.Tensor | undefined)[] = [
    x.joint,
    x.unclamped,
    x.headWeights,
    x.R,
    ...(x.attentionGradients ?? []),
    ...(x.attentionRelevance ?? []),
  ];
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
  /**
   * Needs one backward pass (∂y_c/∂A), i.e. a backend with gradients and ~3× the forward cost. (The
   * LRP methods' relevance pass is not autodiff: partial LRP needs none, at about one block's cost.)
   */
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
  'transformer-attribution': { name: 'transformer-attribution', needsBackward: true, needsIceHead: false, explain: transformerAttribution },
  'partial-lrp': { name: 'partial-lrp', needsBackward: false, needsIceHead: false, explain: partialLrp },
};

export const EXPLAINER_NAMES = Object.keys(EXPLAINERS) as ExplainerName[];

export function isExplainerName(name: string): name is ExplainerName {
  return Object.prototype.hasOwnProperty.call(EXPLAINERS, name);
}

/**
 * True when this model's attention products are large enough that, on wasm, bmm runs them per
 * head on XNNPACK — for one image at a time; batching images would send them back to the scalar
 * loop. Explaining such models image by image is then faster.
 */
export function prefersSingleImages(config: VitConfig, backend: string = tf.getBackend()): boolean {
  const T = gridSize(config) ** 2 + 1;
  return backend === 'wasm' && T * T * (config.embedDim / config.numHeads) >= SLICE_MACS;
}

export interface BatchExplainOptions {
  /** Per image: its target class, or undefined for the top-1 of `targetSource`. Default: every image's top-1. */
  classes?: readonly (number | undefined)[];
  /** Default 'cls'. */
  targetSource?: TargetSource;
  /** Rollout and transformer attribution: first block in the product. Default 0. */
  startLayer?: number;
  /** Raw attention only: also return each head's CLS → patch attention of the last block. */
  perHead?: boolean;
}

export interface BatchExplanation {
  /** [B, g, g] */
  maps: tf.Tensor3D;
  targetClasses: number[];
  targetLogits: number[];
  /** Raw attention with `perHead`: [B, heads, N], the last block's CLS row per head. */
  heads?: tf.Tensor3D;
}

function iceBatch(
  model: IceVit,
  x: tf.Tensor4D,
  method: 'ice' | 'ice-class',
  classes: readonly (number | undefined)[] | undefined,
  source: TargetSource,
): BatchExplanation {
  if (model.config.iceHead === 'none') throw new IceError('CONFIG_INVALID', 'ICE maps need a model with an ICE head');
  const B = x.shape[0];
  let targets = { classes: [] as number[], logits: [] as number[] };
  const maps = tf.tidy(() => {
    const out = model.forward(x);
    targets = resolveTargets(out, B, classes, source);
    return method === 'ice' ? foregroundMask(out.zIce!) : classScoreMap(out.zIce!, targets.classes);
  });
  return { maps, targetClasses: targets.classes, targetLogits: targets.logits };
}

/**
 * Runs an explainer on a batch x [B, C, H, W] in one pass (one forward, plus one backward for the
 * gradient methods). Every image's map equals the one it gets on its own (batch of one, as the
 * references run): a ViT mixes nothing across images, and each image keeps its own target.
 */
export function explainBatch(name: ExplainerName, model: IceVit, x: tf.Tensor4D, opts: BatchExplainOptions = {}): BatchExplanation {
  checkImages(model, x, opts.classes, opts.targetSource);
  const B = x.shape[0];
  const g = gridSize(model.config);
  const toGrids = (v: tf.Tensor2D): tf.Tensor3D => tf.reshape(v, [B, g, g]);
  switch (name) {
    case 'ice':
    case 'ice-class':
      return iceBatch(model, x, name, opts.classes, opts.targetSource ?? 'cls');
    case 'transformer-attribution':
    case 'partial-lrp': {
      const r = lrpBatch(name, model, x, opts.classes, opts.targetSource ?? 'cls', opts.startLayer ?? 0);
      tf.dispose([...r.relevance.filter((t): t is tf.Tensor4D => t !== undefined), ...(r.gradients ?? []), ...(r.joint ? [r.joint] : [])]);
      const maps = tf.tidy(() => toGrids(r.maps));
      r.maps.dispose();
      return { maps, targetClasses: r.targets.classes, targetLogits: r.targets.logits };
    }
    case 'raw-attention':
    case 'rollout':
    case 'gradcam':
    case 'generic-attention': {
      if (name === 'rollout') checkStartLayer(opts.startLayer ?? 0, model.config.depth);
      const t = traceAttentionBatch(model, x, EXPLAINERS[name].needsBackward, opts.classes, opts.targetSource);
      try {
        const L = t.attention.length;
        const last = t.attention[L - 1];
        const maps = tf.tidy(() => {
          switch (name) {
            case 'raw-attention':
              return toGrids(rawAttentionMapBatch(last));
            case 'rollout':
              return toGrids(clsRowPatchesBatch(rolloutJointBatch(t.attention, opts.startLayer ?? 0)));
            case 'gradcam':
              return toGrids(gradcamFromAttentionBatch(last, t.gradients![L - 1]).map);
            case 'generic-attention':
              return toGrids(clsRowPatchesBatch(genericAttentionRBatch(t.attention, t.gradients!)));
          }
        });
        const result: BatchExplanation = { maps, targetClasses: t.targetClasses, targetLogits: t.targetLogits };
        if (name === 'raw-attention' && opts.perHead) result.heads = tf.tidy(() => clsRowsBatch(last));
        return result;
      } finally {
        tf.dispose(t.attention);
        if (t.gradients) tf.dispose(t.gradients);
      }
    }
  }
}
