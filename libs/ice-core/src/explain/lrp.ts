import * as tf from '@tensorflow/tfjs-core';
import { bmm, gelu, layerNorm, linear } from '../model/fast-ops';
import { gridSize } from '../model/vit.config';
import type { ForwardOutput, IceVit } from '../model/vit.model';

/**
 * Layer-wise relevance propagation through the ViT as Chefer et al.'s Transformer-Explainability
 * defines it (CVPR 2021; baselines/ViT/ViT_LRP.py with modules/layers_ours.py, and ViT_orig_LRP.py
 * with modules/layers_lrp.py; ../shared/notes/baselines-and-protocols.md §1). One forward pass
 * records what each rule needs, then one relevance pass runs from the CLS-head logits down the
 * blocks. Everything is batched over images; every sum a rule takes is per image, so each image's
 * relevance is the one it gets alone (the reference runs batch 1).
 *
 * The rules, with α = 1, β = 0 (ViT_explanation_generator.py:27):
 * - start: one-hot of the target class at the logits (its value 1, not the logit);
 * - Linear: sign-matched pairs (x⁺, w⁺) and (x⁻, w⁻), bias ignored. 'ours' divides by their joint
 *   sum Z₁ + Z₂ (layers_ours.py:207-230), 'lrp' by each pair's own (layers_lrp.py:188-211);
 * - GELU, LayerNorm, softmax, dropout: identity;
 * - the CLS pooling and both attention products (A·V, Q·Kᵀ): the z-rule (LRP-0) on every operand,
 *   and Attention.relprop halves each operand's share (ViT_LRP.py:160-173);
 * - residual Add: the z-rule; 'ours' then rescales each branch so its mass is |its sum| / (|a| + |b|)
 *   of the incoming mass (layers_ours.py:97-120), 'lrp' does not;
 * - Clone (the residual fork): the branches' relevances summed through x·(R₁/x + R₂/x).
 * Divisions use the reference's stabiliser, safe_divide (R / (Z + 1e-9), 0 where Z = 0).
 *
 * The forward pass is the model's (its embedding, parameters and ops), written out block by block
 * here because the rules need the inputs of every op; a spec checks that it reproduces
 * IceVit.forward. It runs without pruning.
 */

export type LrpRules = 'ours' | 'lrp';

/** The inputs of every op of one block that a relevance rule reads, for a batch of B images. */
interface BlockRecord {
  /** [B, T, D] block input (the first residual's skip branch). */
  tIn: tf.Tensor3D;
  /** [B·T, D] norm1 output (qkv's input). */
  h1: tf.Tensor2D;
  /** [B·H, T, hd] each. */
  q: tf.Tensor3D;
  k: tf.Tensor3D;
  v: tf.Tensor3D;
  /** [B·H, T, T] post-softmax attention. */
  attn: tf.Tensor3D;
  /** [B·T, D] the heads' outputs concatenated (proj's input). */
  om: tf.Tensor2D;
  /** [B, T, D] attention branch (after proj). */
  a: tf.Tensor3D;
  /** [B, T, D] tIn + a (the second residual's skip branch). */
  tMid: tf.Tensor3D;
  /** [B·T, D] norm2 output (fc1's input). */
  h2: tf.Tensor2D;
  /** [B·T, hidden] GELU output (fc2's input). */
  f: tf.Tensor2D;
  /** [B, T, D] MLP branch (after fc2). */
  m: tf.Tensor3D;
}

export interface LrpTargets {
  classes: number[];
  logits: number[];
}

export interface LrpRecord {
  blocks: BlockRecord[];
  /** [B, D] the final norm's CLS row (the CLS head's input). */
  clsFeat: tf.Tensor2D;
  /** Per block ∂y_c/∂A_l [B, H, T, T] (with `withGradients`). */
  gradients?: tf.Tensor4D[];
  targets: LrpTargets;
}

const EPS = 1e-9;

function param2(model: IceVit, name: string): tf.Tensor2D {
  return model.params.get(name) as unknown as tf.Tensor2D;
}

function param1(model: IceVit, name: string): tf.Tensor1D {
  return model.params.get(name) as unknown as tf.Tensor1D;
}

/**
 * The forward pass with every op's inputs kept. `pickTargets` chooses each image's class from the
 * outputs (it may read them back); with `withGradients` one backward pass of Σ_b y_{b,c_b} gives
 * ∂y_c/∂A_l, through a zero tensor added to each A_l. The caller disposes the record (disposeRecord).
 */
export function recordForward(
  model: IceVit,
  x: tf.Tensor4D,
  withGradients: boolean,
  needIceHead: boolean,
  pickTargets: (out: ForwardOutput) => LrpTargets,
): LrpRecord {
  const c = model.config;
  const B = x.shape[0];
  const D = c.embedDim;
  const H = c.numHeads;
  const hd = D / H;
  const T = gridSize(c) ** 2 + 1;
  let kept: { blocks: BlockRecord[]; clsFeat: tf.Tensor2D } | undefined;
  let targets: LrpTargets = { classes: [], logits: [] };

  const run = (probes: tf.Tensor[] | undefined): tf.Scalar => {
    const blocks: BlockRecord[] = [];
    let t = model.embed(x); // [B, T, D]
    for (let i = 0; i < c.depth; i++) {
      const pre = `blocks.${i}`;
      const tIn = t;
      const h1 = layerNorm(
        tf.reshape(t, [B * T, D]),
        param1(model, `${pre}.norm1.weight`),
        param1(model, `${pre}.norm1.bias`),
        c.layerNormEps,
      );
      const qkv = linear(h1, param2(model, `${pre}.attn.qkv.weight`), c.qkvBias ? param1(model, `${pre}.attn.qkv.bias`) : undefined);
      // [B·T, 3D] → [B, T, 3H, hd] → [B, 3H, T, hd]; columns of 3D are (part, head, hd) → 3 × [B·H, T, hd]
      const heads = tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]);
      const [q, k, v] = tf.split(heads, 3, 1).map((z): tf.Tensor3D => tf.reshape(z, [B * H, T, hd]));
      let attn: tf.Tensor3D = tf.softmax(tf.mul(bmm(q, k, false, true), hd ** -0.5)); // [B·H, T, T]
      if (probes) attn = tf.add(attn, tf.reshape(probes[i], [B * H, T, T]));
      // [B·H, T, hd] → [B, H, T, hd] → [B, T, H, hd] → [B·T, D]
      const om: tf.Tensor2D = tf.reshape(tf.transpose(tf.reshape(bmm(attn, v), [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]);
      const a: tf.Tensor3D = tf.reshape(linear(om, param2(model, `${pre}.attn.proj.weight`), param1(model, `${pre}.attn.proj.bias`)), [
        B,
        T,
        D,
      ]);
      const tMid: tf.Tensor3D = tf.add(tIn, a);
      const h2 = layerNorm(
        tf.reshape(tMid, [B * T, D]),
        param1(model, `${pre}.norm2.weight`),
        param1(model, `${pre}.norm2.bias`),
        c.layerNormEps,
      );
      const f = gelu(linear(h2, param2(model, `${pre}.mlp.fc1.weight`), param1(model, `${pre}.mlp.fc1.bias`)));
      const m: tf.Tensor3D = tf.reshape(linear(f, param2(model, `${pre}.mlp.fc2.weight`), param1(model, `${pre}.mlp.fc2.bias`)), [B, T, D]);
      t = tf.add(tMid, m);
      blocks.push({ tIn, h1, q, k, v, attn, om, a, tMid, h2, f, m });
    }
    const prenormPatchTokens = tf.slice(t, [0, 1, 0], [B, T - 1, D]); // [B, N, D]
    const clsFeat = layerNorm(
      tf.reshape(tf.slice(t, [0, 0, 0], [B, 1, D]), [B, D]),
      param1(model, 'norm.weight'),
      param1(model, 'norm.bias'),
      c.layerNormEps,
    );
    const clsLogits = linear(clsFeat, param2(model, 'head.weight'), param1(model, 'head.bias')); // [B, classes]
    const out: ForwardOutput = { clsLogits, prenormPatchTokens };
    if (needIceHead) out.zIce = model.iceHead(prenormPatchTokens);
    targets = pickTargets(out);
    // The record outlives this scope (tf.tidy / tf.grads dispose everything else).
    kept = {
      blocks: blocks.map(
        (r) => Object.fromEntries(Object.entries(r).map(([key, v]) => [key, tf.keep(v as tf.Tensor)])) as unknown as BlockRecord,
      ),
      clsFeat: tf.keep(clsFeat),
    };
    return tf.sum(tf.mul(clsLogits, tf.oneHot(tf.tensor1d(targets.classes, 'int32'), c.numClasses)));
  };

  if (!withGradients) {
    tf.tidy(() => {
      run(undefined);
    });
    return { ...kept!, targets };
  }
  const zeros = Array.from({ length: c.depth }, () => tf.zeros([B, H, T, T]));
  try {
    const gradients = tf.grads((...probes: tf.Tensor[]) => run(probes))(zeros) as tf.Tensor4D[];
    return { ...kept!, gradients, targets };
  } catch (e) {
    if (kept) disposeRecord({ ...kept, targets });
    throw e;
  } finally {
    tf.dispose(zeros);
  }
}

export function disposeRecord(r: LrpRecord): void {
  for (const b of r.blocks) tf.dispose(Object.values(b) as tf.Tensor[]);
  tf.dispose(r.clsFeat);
  if (r.gradients) tf.dispose(r.gradients);
}

// ---------------------------------------------------------------- the rules

/** a / b with the reference's stabiliser: clamp(b, min=ε) + clamp(b, max=ε) = b + ε, 0 where b = 0. */
function safeDivide(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const den0 = tf.add(b, EPS);
  const den = tf.add(den0, tf.mul(tf.cast(tf.equal(den0, 0), 'float32'), EPS));
  return tf.mul(tf.div(a, den), tf.cast(tf.notEqual(b, 0), 'float32'));
}

/** α = 1, β = 0 rule of y = x·w (+ b, ignored): x [M, in], w [in, out], R [M, out] → [M, in]. */
function linearRule(x: tf.Tensor2D, w: tf.Tensor2D, R: tf.Tensor2D, rules: LrpRules): tf.Tensor2D {
  const px = tf.relu(x);
  const nx = tf.sub(x, px); // min(x, 0)
  const pw = tf.relu(w);
  const nw = tf.sub(w, pw);
  const z1 = tf.matMul(px, pw); // [M, out]
  const z2 = tf.matMul(nx, nw);
  const [s1, s2] = rules === 'ours' ? [safeDivide(R, tf.add(z1, z2)), undefined] : [safeDivide(R, z1), safeDivide(R, z2)];
  // Explicit transposes: wasm's XNNPACK takes only untransposed 2-D products.
  return tf.add(
    tf.mul(px, tf.matMul(s1 as tf.Tensor2D, tf.transpose(pw))),
    tf.mul(nx, tf.matMul((s2 ?? s1) as tf.Tensor2D, tf.transpose(nw))),
  );
}

/** Residual x0 + x1 → the two branches' relevances [B, T, D]; sums per image. */
function addRule(x0: tf.Tensor3D, x1: tf.Tensor3D, R: tf.Tensor3D, rules: LrpRules): [tf.Tensor3D, tf.Tensor3D] {
  const s = safeDivide(R, tf.add(x0, x1));
  let a: tf.Tensor3D = tf.mul(x0, s);
  let b: tf.Tensor3D = tf.mul(x1, s);
  if (rules === 'ours') {
    const sa = tf.sum(a, [1, 2], true); // [B, 1, 1]
    const sb = tf.sum(b, [1, 2], true);
    const total = tf.sum(R, [1, 2], true);
    const norm = tf.add(tf.abs(sa), tf.abs(sb));
    a = tf.mul(a, safeDivide(tf.mul(safeDivide(tf.abs(sa), norm), total), sa));
    b = tf.mul(b, safeDivide(tf.mul(safeDivide(tf.abs(sb), norm), total), sb));
  }
  return [a, b];
}

/** The residual fork x → (x, x): R = x·(R₁/x + R₂/x). */
function cloneRule(x: tf.Tensor3D, r1: tf.Tensor3D, r2: tf.Tensor3D): tf.Tensor3D {
  return tf.mul(x, tf.add(safeDivide(r1, x), safeDivide(r2, x)));
}

/**
 * The relevance pass from the target logits down to block `stopBlock`'s attention: returns, per
 * block l ≥ stopBlock, the (halved) relevance at its post-softmax attention R_A [B, H, T, T] (entries
 * below stopBlock are undefined). The caller owns the returned tensors.
 */
export function attentionRelevance(model: IceVit, rec: LrpRecord, rules: LrpRules, stopBlock: number): (tf.Tensor4D | undefined)[] {
  const c = model.config;
  const L = c.depth;
  const H = c.numHeads;
  const D = c.embedDim;
  const hd = D / H;
  const [B, T] = rec.blocks[0].tIn.shape;
  const out: (tf.Tensor4D | undefined)[] = new Array<tf.Tensor4D | undefined>(L).fill(undefined);
  tf.tidy(() => {
    const start = tf.oneHot(tf.tensor1d(rec.targets.classes, 'int32'), c.numClasses).asType('float32') as tf.Tensor2D; // [B, classes]
    const rCls = linearRule(rec.clsFeat, param2(model, 'head.weight'), start, rules); // [B, D]
    // CLS pooling (z-rule): the relevance lands on token 0 of the final norm's output; LayerNorm: identity.
    const r0 = tf.mul(rec.clsFeat, safeDivide(rCls, rec.clsFeat)); // [B, D]
    let R: tf.Tensor3D = tf.concat([tf.reshape(r0, [B, 1, D]), tf.zeros([B, T - 1, D])], 1); // [B, T, D]
    for (let i = L - 1; i >= stopBlock; i--) {
      const r = rec.blocks[i];
      const pre = `blocks.${i}`;
      const [rSkip2, rMlp] = addRule(r.tMid, r.m, R, rules);
      const rF = linearRule(r.f, param2(model, `${pre}.mlp.fc2.weight`), tf.reshape(rMlp, [B * T, D]), rules); // [B·T, hidden]; GELU: identity
      const rH2 = linearRule(r.h2, param2(model, `${pre}.mlp.fc1.weight`), rF, rules); // [B·T, D]; norm2: identity
      R = cloneRule(r.tMid, rSkip2, tf.reshape(rH2, [B, T, D]));
      const [rSkip1, rAttn] = addRule(r.tIn, r.a, R, rules);
      const rOm = linearRule(r.om, param2(model, `${pre}.attn.proj.weight`), tf.reshape(rAttn, [B * T, D]), rules); // [B·T, D]
      // [B·T, D] → [B, T, H, hd] → [B, H, T, hd] → [B·H, T, hd]
      const rO: tf.Tensor3D = tf.reshape(tf.transpose(tf.reshape(rOm, [B, T, H, hd]), [0, 2, 1, 3]), [B * H, T, hd]);
      // O = A·V, z-rule on both operands, each share halved.
      const sO = safeDivide(rO, bmm(r.attn, r.v)) as tf.Tensor3D; // [B·H, T, hd]
      const rA: tf.Tensor3D = tf.mul(tf.mul(r.attn, bmm(sO, r.v, false, true)), 0.5); // [B·H, T, T]
      out[i] = tf.keep(tf.reshape(rA, [B, H, T, T]));
      if (i === stopBlock) break;
      const rV = tf.mul(tf.mul(r.v, bmm(r.attn, sO, true)), 0.5); // Aᵀ·S: [B·H, T, hd]
      // Softmax: identity. Scores = Q·Kᵀ (the scale is outside the reference's einsum), z-rule, halved.
      const sS = safeDivide(rA, bmm(r.q, r.k, false, true)) as tf.Tensor3D; // [B·H, T, T]
      const rQ = tf.mul(tf.mul(r.q, bmm(sS, r.k)), 0.5); // [B·H, T, hd]
      const rK = tf.mul(tf.mul(r.k, bmm(sS, r.q, true)), 0.5); // Sᵀ·Q
      // 3 × [B·H, T, hd] → [B, H, T, hd] → [B, T, H, hd] → [B·T, D], side by side as qkv's columns (part, head, hd) → [B·T, 3D]
      const cols = (z: tf.Tensor): tf.Tensor2D => tf.reshape(tf.transpose(tf.reshape(z, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]);
      const rQkv: tf.Tensor2D = tf.concat([cols(rQ), cols(rK), cols(rV)], 1);
      const rH1 = linearRule(r.h1, param2(model, `${pre}.attn.qkv.weight`), rQkv, rules); // [B·T, D]; norm1: identity
      R = cloneRule(r.tIn, rSkip1, tf.reshape(rH1, [B, T, D]));
    }
  });
  return out;
}

/**
 * Chefer et al.'s transformer attribution: Ā_l = mean_h max(∂y_c/∂A_l ⊙ R_A_l, 0) and
 * C = (I + Ā_{L−1}) ⋯ (I + Ā_s), no row normalisation (ViT_LRP.py:38-49, 357-369). → C [B, T, T].
 */
export function transformerAttributionJoint(
  relevance: readonly (tf.Tensor4D | undefined)[],
  gradients: readonly tf.Tensor4D[],
  startLayer: number,
): tf.Tensor3D {
  return tf.tidy(() => {
    const T = gradients[0].shape[2];
    const eye = tf.eye(T);
    let joint: tf.Tensor3D | undefined;
    for (let l = startLayer; l < gradients.length; l++) {
      const abar: tf.Tensor3D = tf.add(tf.mean(tf.relu(tf.mul(gradients[l], relevance[l]!)), 1), eye); // [B, T, T]
      joint = joint ? bmm(abar, joint) : abar;
    }
    return joint!;
  });
}

/** Partial LRP (Chefer's "last_layer"): mean_h max(R_A, 0) of the last block, CLS row, patch columns. [B, H, T, T] → [B, N]. */
export function partialLrpMap(lastRelevance: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => {
    const [B, , , T] = lastRelevance.shape;
    return tf.reshape(tf.slice(tf.mean(tf.relu(lastRelevance), 1), [0, 0, 1], [B, 1, T - 1]), [B, T - 1]);
  });
}
