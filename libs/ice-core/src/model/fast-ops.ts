import * as tf from '@tensorflow/tfjs-core';
import {
  fusedAttention,
  fusedAttentionGrad,
  fusedColSum,
  fusedGelu,
  fusedGeluGrad,
  fusedLayerNorm,
  fusedLayerNormGrad,
  nativeKernelsActive,
} from '@ice/native-kernels';

/**
 * The ViT's building blocks on 2-D row stacks. They are the training hot path, so their
 * formulation is chosen by measurement on the wasm backend (bench/micro/FINDINGS.md).
 *
 * Each op is a tf.customGrad with a hand-written backward pass. The values are those of the plain
 * formulations (fast-ops.spec.ts checks the gradients against autodiff of those). Saved tensors go
 * through `save` (never a closure): the caller's tidy scopes may free intermediates before backprop.
 *
 * With the native kernels (@ice/native-kernels under the wasm backend) the products use the
 * GEMM's transpose flags and a fused bias, and LayerNorm, GELU and the attention core are one
 * native kernel forward and one backward each; without them, the stock formulation below is the
 * fastest one measured on plain wasm (explicit transposes, XNNPACK). The choice is made per call.
 */

// ---------------------------------------------------------------- linear

// Why: autodiff of matMul uses transposeA/transposeB, and stock wasm runs those on a scalar loop
// (≈7× slower); XNNPACK takes only plain 2-D products, so the stock path makes the transposes
// explicit. The native GEMM takes the flags at no cost, which saves the transposes.
function linearGrads(dy: tf.Tensor2D, x: tf.Tensor2D, w: tf.Tensor2D): [tf.Tensor2D, tf.Tensor2D] {
  if (nativeKernelsActive()) return [tf.matMul(dy, w, false, true), tf.matMul(x, dy, true, false)]; // dx = dy·wᵀ, dw = xᵀ·dy
  return [
    tf.matMul(dy, tf.transpose(w)), // dx = dy·wᵀ   [M, in]
    tf.matMul(tf.transpose(x), dy), // dw = xᵀ·dy   [in, out]
  ];
}

const linearNoBias = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc]; // x [M, in], w [in, out]
  save([x, w]);
  const y: tf.Tensor2D = tf.matMul(x, w); // [M, out]
  return {
    value: y,
    gradFunc: (dy: tf.Tensor2D, [xs, ws]: tf.Tensor[]) => linearGrads(dy, xs as tf.Tensor2D, ws as tf.Tensor2D),
  };
});

const linearBias = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, w, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc]; // b [out]
  save([x, w]);
  // One native kernel for product and bias (stock wasm's _FusedMatMul is wrong with a bias in most cases).
  const y: tf.Tensor2D = nativeKernelsActive()
    ? tf
        .engine()
        .runKernel<tf.Tensor2D>('_FusedMatMul', { a: x, b: w, bias: b }, { transposeA: false, transposeB: false, activation: 'linear' })
    : tf.add(tf.matMul(x, w), b); // [M, out]
  return {
    value: y,
    gradFunc: (dy: tf.Tensor2D, [xs, ws]: tf.Tensor[]) => [
      ...linearGrads(dy, xs as tf.Tensor2D, ws as tf.Tensor2D), // [M, in], [in, out]
      nativeKernelsActive() ? fusedColSum(dy) : tf.sum(dy, 0), // db [out]
    ],
  };
});

/** y = x @ w + b, w kept [in, out]. x: [M, in] → [M, out]. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  return b ? linearBias(x, w, b) : linearNoBias(x, w);
}

// ---------------------------------------------------------------- layer norm

// Why: autodiff through tf.moments is ≈3× slower than the closed-form backward
// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·γ, over the normalised axis.
function makeLayerNorm(eps: number): (x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D) => tf.Tensor2D {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, gamma, beta, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc]; // x [M, D]
    const xc = tf.sub(x, tf.mean(x, -1, true)); // [M, D]
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps)); // [M, 1], biased variance
    const xhat = tf.mul(xc, rstd); // [M, D]
    save([xhat, rstd, gamma]);
    return {
      value: tf.add(tf.mul(xhat, gamma), beta),
      gradFunc: (dy: tf.Tensor2D, [xh, rs, g]: tf.Tensor[]) => {
        const gh = tf.mul(dy, g); // [M, D]
        const dx = tf.mul(rs, tf.sub(tf.sub(gh, tf.mean(gh, -1, true)), tf.mul(xh, tf.mean(tf.mul(gh, xh), -1, true))));
        return [dx, tf.sum(tf.mul(dy, xh), 0), tf.sum(dy, 0)]; // [M, D], [D], [D]
      },
    };
  });
}

/** The same as one native kernel each way; the backward recomputes x̂ from x, the mean and 1/σ. */
function makeNativeLayerNorm(eps: number): ReturnType<typeof makeLayerNorm> {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, gamma, beta, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc]; // x [M, D]
    const [y, mean, rstd] = fusedLayerNorm(x, gamma, beta, eps); // [M, D], [M], [M]
    save([x, gamma, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, [xs, g, mu, rs]: tf.Tensor[]) =>
        fusedLayerNormGrad(dy, xs as tf.Tensor2D, g as tf.Tensor1D, mu as tf.Tensor1D, rs as tf.Tensor1D), // [M, D], [D], [D]
    };
  });
}

const layerNormByEps = new Map<string, ReturnType<typeof makeLayerNorm>>();

/** LayerNorm over the last axis with biased variance. x: [M, D]. */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  const native = nativeKernelsActive();
  const key = `${native ? 'native' : 'stock'}:${eps}`;
  let f = layerNormByEps.get(key);
  if (!f) layerNormByEps.set(key, (f = native ? makeNativeLayerNorm(eps) : makeLayerNorm(eps)));
  return f(x, gamma, beta);
}

// ---------------------------------------------------------------- GELU

// Why: wasm's Erf kernel is slow (≈2 ms per [136,768]). erf from Abramowitz & Stegun 7.1.26
// (|error| ≤ 1.5e-7) is made of cheap ops, and its exp(−x²/2) is also the normal pdf that the
// gradient needs. wasm's Exp is a scalar loop (≈1.5 ms per [136,768]) but Sigmoid is XNNPACK SIMD,
// so e^w = σ(w)/(1 − σ(w)) (rel. error ≤ 3.2e-7, w ≤ 0) is ≈3× cheaper. x/(|x|+1e-30) stands for
// sign(x) and div(1,·) for reciprocal (both much cheaper).
const ERF_P = 0.3275911 * Math.SQRT1_2; // A&S's p, with erf's argument x/√2 folded in
const ERF_A = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429].map((a) => a / 2); // halved: q below is (1 − erf)/2
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

const geluOp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const ax = tf.abs(x);
  const t = tf.div(1, tf.add(tf.mul(ax, ERF_P), 1));
  let poly = tf.mul(t, ERF_A[4]);
  for (let i = 3; i >= 0; i--) poly = tf.mul(tf.add(poly, ERF_A[i]), t);
  const sg = tf.sigmoid(tf.mul(tf.square(x), -0.5)); // σ(−x²/2)
  const e = tf.div(sg, tf.sub(1, sg)); // exp(−x²/2)
  const q = tf.mul(poly, e); // (1 − erf(|x|/√2))/2
  const cdf = tf.add(tf.mul(tf.div(x, tf.add(ax, 1e-30)), tf.sub(0.5, q)), 0.5); // Φ(x)
  save([x, cdf, e]);
  return {
    value: tf.mul(x, cdf),
    // d/dx x·Φ(x) = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π)
    gradFunc: (dy: tf.Tensor, [xs, c, es]: tf.Tensor[]) => tf.mul(dy, tf.add(c, tf.mul(tf.mul(xs, es), INV_SQRT_2PI))),
  };
});

/** The same formula as one native kernel each way (its exp is a polynomial, not σ/(1 − σ)). */
const nativeGeluOp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  save([x]);
  return { value: fusedGelu(x), gradFunc: (dy: tf.Tensor, [xs]: tf.Tensor[]) => fusedGeluGrad(dy, xs) };
});

/** Exact GELU: 0.5·x·(1 + erf(x/√2)) (erf to 1.5e-7). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return (nativeKernelsActive() ? nativeGeluOp(x) : geluOp(x)) as T;
}

// ---------------------------------------------------------------- attention

// Why: autodiff of the batched products uses transposeB and the softmax gradient costs several
// ops more; custom gradients hold the backward in six batched matMuls. Without a hook (training)
// the whole core is one custom gradient (fewest tape nodes: ≈15 % faster fwd+bwd). With a hook
// (an explainer's gate) the core is cut at the post-softmax probabilities into two custom
// gradients, so that the hook sits between them on the tape and gets exact gradients by autodiff.

/** Below this many multiply-adds per slice a batched product stays one call (see bmm). */
export const SLICE_MACS = 32_768;
/** Above this many slices, splitting (wasm's Unpack) costs more than the scalar loop saves. */
const MAX_SLICES = 12;

/**
 * Batched matMul [n, r, k]·[n, k, c] → [n, r, c], transposes as in tf.matMul. Why: wasm's
 * BatchMatMul gives XNNPACK only 2-D untransposed products; batched or transposed ones run a
 * scalar loop (≈1 GMAC/s). For large slices (attention at T ≈ 200: 2.5 M MACs each) n separate
 * 2-D products after one rank-3 transpose are much faster (DeiT-Tiny forward 290 → 183 ms, one
 * image); small slices (digits, T = 17) stay one call, where the per-call overhead would dominate,
 * and so do many slices (a batch of images), where the split itself grows slow.
 */
export function bmm(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  if (nativeKernelsActive()) return tf.matMul(a, b, transposeA, transposeB); // the native GEMM runs batches and flags well
  const [r, k] = transposeA ? [a.shape[2], a.shape[1]] : [a.shape[1], a.shape[2]];
  const c = transposeB ? b.shape[1] : b.shape[2];
  if (r * k * c < SLICE_MACS || a.shape[0] > MAX_SLICES || tf.getBackend() !== 'wasm') return tf.matMul(a, b, transposeA, transposeB);
  return tf.tidy(() => {
    const as = tf.unstack(transposeA ? tf.transpose(a, [0, 2, 1]) : a) as tf.Tensor2D[]; // n × [r, k]
    const bs = tf.unstack(transposeB ? tf.transpose(b, [0, 2, 1]) : b) as tf.Tensor2D[]; // n × [k, c]
    return tf.stack(as.map((x, i) => tf.matMul(x, bs[i]))) as tf.Tensor3D; // [n, r, c]
  });
}

/** P = softmax(q·kᵀ·hd^−½). q, k: [BH, T, hd] → [BH, T, T]. */
const attnProbs = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [q, k, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
  const scale = q.shape[2] ** -0.5;
  const p: tf.Tensor3D = tf.softmax(tf.mul(bmm(q, k, false, true), scale)); // [BH, T, T]
  save([q, k, p]);
  return {
    value: p,
    gradFunc: (dP: tf.Tensor3D, [qs, ks, ps]: tf.Tensor[]) => {
      // softmax backward with the scale folded in: dS = scale·p·(dP − Σ_j dP·p)   [BH, T, T]
      const dS: tf.Tensor3D = tf.mul(ps, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, ps), -1, true)), scale));
      return [
        bmm(dS, ks as tf.Tensor3D), // dq [BH, T, hd]
        bmm(dS, qs as tf.Tensor3D, true), // dk = dSᵀ·q [BH, T, hd]
      ];
    },
  };
});

/** O = A·v. a: [BH, T, T], v: [BH, T, hd] → [BH, T, hd]. */
const attnApply = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, v, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
  save([a, v]);
  const o: tf.Tensor3D = bmm(a, v);
  return {
    value: o,
    gradFunc: (dO: tf.Tensor3D, [as, vs]: tf.Tensor[]) => [
      bmm(dO, vs as tf.Tensor3D, false, true), // dA = dO·vᵀ [BH, T, T]
      bmm(as as tf.Tensor3D, dO, true), // dv = Aᵀ·dO [BH, T, hd]
    ],
  };
});

/** qkv [B·T, 3D] → q, k, v each [B·H, T, hd], with rank-4 transposes only. */
function splitHeads(qkv: tf.Tensor2D, B: number, T: number, H: number): tf.Tensor3D[] {
  const hd = qkv.shape[1] / (3 * H);
  // wasm's rank-5 Transpose is a generic per-element loop (≈180× slower than rank 4).
  // [B·T, 3D] → [B, T, 3H, hd] → [B, 3H, T, hd]; columns of 3D are (part, head, hd).
  const heads: tf.Tensor4D = tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]);
  // split on the (part, head) axis → 3 × [B, H, T, hd] → [B·H, T, hd]
  return tf.split(heads, 3, 1).map((z): tf.Tensor3D => tf.reshape(z, [B * H, T, hd]));
}

/** o [B·H, T, hd] → [B, H, T, hd] → [B, T, H, hd] → [B·T, H·hd] (heads concatenated per row). */
function mergeHeads(o: tf.Tensor3D, B: number, T: number, H: number): tf.Tensor2D {
  const hd = o.shape[2];
  return tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, H * hd]);
}

/** The whole core qkv [B·T, 3D] → [B·T, D] as one custom gradient (no hook possible inside). */
function stockFusedAttention(B: number, T: number, H: number): (qkv: tf.Tensor2D) => tf.Tensor2D {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qkv, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const [q, k, v] = splitHeads(qkv, B, T, H); // each [B·H, T, hd]
    const hd = q.shape[2];
    const scale = hd ** -0.5;
    const p: tf.Tensor3D = tf.softmax(tf.mul(bmm(q, k, false, true), scale)); // [B·H, T, T]
    save([q, k, v, p]);
    return {
      value: mergeHeads(bmm(p, v), B, T, H), // [B·T, D]
      gradFunc: (dy: tf.Tensor2D, [qs, ks, vs, ps]: tf.Tensor[]) => {
        // [B·T, D] → [B, T, H, hd] → [B, H, T, hd] → [B·H, T, hd]
        const dO: tf.Tensor3D = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [B * H, T, hd]);
        const dP = bmm(dO, vs as tf.Tensor3D, false, true); // [B·H, T, T]
        const dS: tf.Tensor3D = tf.mul(ps, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, ps), -1, true)), scale)); // softmax backward, scale folded in
        const d4 = (z: tf.Tensor): tf.Tensor4D => tf.reshape(z, [B, H, T, hd]); // [B·H, T, hd] → [B, H, T, hd]
        const dq = d4(bmm(dS, ks as tf.Tensor3D));
        const dk = d4(bmm(dS, qs as tf.Tensor3D, true)); // dSᵀ·q
        const dv = d4(bmm(ps as tf.Tensor3D, dO, true)); // pᵀ·dO
        // 3 × [B, H, T, hd] → [B, 3H, T, hd] → [B, T, 3H, hd] → [B·T, 3D]
        return tf.reshape(tf.transpose(tf.concat([dq, dk, dv], 1), [0, 2, 1, 3]), [B * T, 3 * H * hd]);
      },
    };
  });
}

/** The whole core as one native kernel each way: heads are strided blocks of qkv, no transposes. */
function nativeFusedAttention(B: number, T: number, H: number): (qkv: tf.Tensor2D) => tf.Tensor2D {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qkv, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const [out, p] = fusedAttention(qkv, B, T, H); // [B·T, D], [B·H, T, T]
    save([qkv, p]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor2D, [q, ps]: tf.Tensor[]) => fusedAttentionGrad(dy, q as tf.Tensor2D, ps as tf.Tensor3D, B, T, H), // [B·T, 3D]
    };
  });
}

/**
 * The CLS row of the post-softmax attention, [B, H, T], from qkv [B·T, 3D] without splitting or
 * slicing the keys out of it (wasm's SplitV and strided Slice cost more than the products): head
 * h's CLS query, scaled, is laid into the key columns of head h of a zero row of width 3D, so one
 * batched product with qkv's rows gives every head's q_h·k_hᵀ: [B, H, 3D] × [B, T, 3D]ᵀ → [B, H, T].
 */
function clsAttention(qkv: tf.Tensor2D, B: number, T: number, H: number): tf.Tensor3D {
  const D = qkv.shape[1] / 3;
  const hd = D / H;
  const rows: tf.Tensor3D = tf.reshape(qkv, [B, T, 3 * D]);
  const q0: tf.Tensor3D = tf.slice(rows, [0, 0, 0], [B, 1, D]); // the CLS query: [B, 1, D]
  const headMask = tf.tensor2d(
    Float32Array.from({ length: H * D }, (_, i) => (Math.floor((i % D) / hd) === Math.floor(i / D) ? hd ** -0.5 : 0)),
    [H, D],
  ); // [H, D]: row h keeps head h's columns, times the softmax scale
  const perHead = tf.pad(tf.mul(q0, headMask), [
    [0, 0],
    [0, 0],
    [D, D],
  ]); // [B, 1, D] · [H, D] → [B, H, D] → the key columns of [B, H, 3D]
  return tf.softmax(tf.matMul(perHead, rows, false, true)); // [B, H, 3D] × [B, 3D, T] → [B, H, T]
}

/**
 * Multi-head self-attention core. qkv: [B·T, 3D] with timm's column layout (q | k | v, heads
 * inside each, head 0 first). Returns the heads' outputs concatenated, [B·T, D], and the
 * post-softmax attention [B, H, T, T] (after `hook`, which may replace it), and its CLS row
 * [B, H, T]. Without a hook, `attn` and `clsAttn` are computed when first read (a second q·kᵀ and
 * softmax, of every row or of the CLS row only): do not destructure them unless they are needed.
 */
export function attentionCore(
  qkv: tf.Tensor2D,
  B: number,
  T: number,
  H: number,
  hook?: (attn: tf.Tensor4D) => tf.Tensor4D,
): { out: tf.Tensor2D; attn: tf.Tensor4D; clsAttn: tf.Tensor3D } {
  const clsRow = (a: tf.Tensor4D): tf.Tensor3D => tf.reshape(tf.slice(a, [0, 0, 0, 0], [B, H, 1, T]), [B, H, T]); // [B,H,1,T] → [B,H,T]
  if (!hook) {
    // The attention is not an output of the fused op: it is recomputed (differentiably, from qkv)
    // only if read, which training never does. Read it in the scope that owns the outputs.
    let attn: tf.Tensor4D | undefined;
    let cls: tf.Tensor3D | undefined;
    return {
      out: (nativeKernelsActive() ? nativeFusedAttention : stockFusedAttention)(B, T, H)(qkv),
      get attn(): tf.Tensor4D {
        if (!attn) {
          const [q, k] = splitHeads(qkv, B, T, H);
          attn = tf.reshape(attnProbs(q, k), [B, H, T, T]); // [B·H, T, T] → [B, H, T, T]
        }
        return attn;
      },
      // What EViT's pruning reads: the CLS query against every key, T dot products a head instead of T².
      get clsAttn(): tf.Tensor3D {
        if (attn) return clsRow(attn);
        if (!cls) {
          cls = clsAttention(qkv, B, T, H);
        }
        return cls;
      },
    };
  }
  const [q, k, v] = splitHeads(qkv, B, T, H); // each [B·H, T, hd]
  const attn = hook(tf.reshape(attnProbs(q, k), [B, H, T, T])); // [B·H, T, T] → [B, H, T, T]
  const o = attnApply(tf.reshape(attn, [B * H, T, T]), v); // [B, H, T, T] → [B·H, T, T]; o [B·H, T, hd]
  return {
    out: mergeHeads(o, B, T, H),
    attn,
    get clsAttn(): tf.Tensor3D {
      return clsRow(attn);
    },
  };
}
