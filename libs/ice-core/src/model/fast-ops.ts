import * as tf from '@tensorflow/tfjs-core';

/**
 * The ViT's building blocks on 2-D row stacks. They are the training hot path, so their
 * formulation is chosen by measurement on the wasm backend (bench/micro/FINDINGS.md).
 */

/** y = x @ w + b, w kept [in, out]. x: [M, in] → [M, out]. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  const y: tf.Tensor2D = tf.matMul(x, w);
  return b ? tf.add(y, b) : y;
}

/** LayerNorm over the last axis with biased variance. x: [M, D]. */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

/** Exact GELU: 0.5·x·(1 + erf(x/√2)). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/**
 * Multi-head self-attention core. qkv: [B·T, 3D] with timm's column layout (q | k | v, heads
 * inside each, head 0 first). Returns the heads' outputs concatenated, [B·T, D], and the
 * post-softmax attention [B, H, T, T] (after `hook`, which may replace it).
 */
export function attentionCore(
  qkv: tf.Tensor2D,
  B: number,
  T: number,
  H: number,
  hook?: (attn: tf.Tensor4D) => tf.Tensor4D,
): { out: tf.Tensor2D; attn: tf.Tensor4D } {
  const D = qkv.shape[1] / 3;
  const hd = D / H;
  // [B·T, 3D] → [B, T, 3, H, hd] → [3, B, H, T, hd]
  const parts = tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(parts) as tf.Tensor4D[]; // each [B, H, T, hd]
  let attn: tf.Tensor4D = tf.softmax(tf.mul(tf.matMul(q, k, false, true), hd ** -0.5)); // [B,H,T,T]
  if (hook) attn = hook(attn);
  const o = tf.matMul(attn, v); // [B, H, T, hd]
  // [B, H, T, hd] → [B, T, H, hd] → [B·T, D]
  const out: tf.Tensor2D = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, D]);
  return { out, attn };
}
