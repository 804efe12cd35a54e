import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from './native-addon';
import { heapOf, offsetOf, sizeOf, WasmBackendLike } from './wasm-heap';

/**
 * Fused native kernels registered under new names for the wasm backend (only while the native
 * kernels are loaded). Each replaces a chain of stock kernels with one pass over the wasm heap;
 * the callers (ice-core's fast-ops and AdamW) keep the stock formulation for when they are off.
 * Call the wrappers only when `nativeKernelsActive()`.
 */

export const ADAMW_KERNEL = 'IceAdamW';
export const GELU_KERNEL = 'IceGelu';
export const GELU_GRAD_KERNEL = 'IceGeluGrad';
export const LAYER_NORM_KERNEL = 'IceLayerNorm';
export const LAYER_NORM_GRAD_KERNEL = 'IceLayerNormGrad';
export const COL_SUM_KERNEL = 'IceColSum';
export const ATTENTION_KERNEL = 'IceAttention';
export const ATTENTION_GRAD_KERNEL = 'IceAttentionGrad';
export const ICE_MARGIN_KERNEL = 'IceMargin';

/** The update's float32 scalars, as the stock chain's tf.scalar values (doubles, rounded by the kernel like tf.scalar). */
export interface AdamWScalars {
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  /** eps·√(1 − β2^t) */
  eps: number;
  /** lr·√(1 − β2^t)/(1 − β1^t) */
  step: number;
  /** 1 − lr·wd */
  keep: number;
  decay: boolean;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function float32(name: string, t: tf.TensorInfo | undefined): tf.TensorInfo {
  if (!t) throw new Error(`native kernel: input ${name} missing`);
  if (t.dtype !== 'float32') throw new Error(`native kernel: input ${name} is ${t.dtype}, not float32`);
  return t;
}

const PA = new Float64Array(17);

function adamwKernel(addon: NativeAddon, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const p = float32('p', inputs.p);
  const n = sizeOf(p.shape);
  const g = float32('g', inputs.g);
  const m = float32('m', inputs.m);
  const v = float32('v', inputs.v);
  for (const [name, t] of [
    ['g', g],
    ['m', m],
    ['v', v],
  ] as const) {
    if (sizeOf(t.shape) !== n) throw new Error(`${ADAMW_KERNEL}: ${name} has ${sizeOf(t.shape)} elements, p has ${n}`);
  }
  const coef = inputs.coef ? float32('coef', inputs.coef) : undefined;
  const outs = [p, m, v].map((t) => be.makeOutput([...t.shape], 'float32'));
  const a = attrs as unknown as AdamWScalars;
  PA[0] = n;
  PA[1] = offsetOf(be, p);
  PA[2] = offsetOf(be, g);
  PA[3] = offsetOf(be, m);
  PA[4] = offsetOf(be, v);
  PA[5] = offsetOf(be, outs[0]);
  PA[6] = offsetOf(be, outs[1]);
  PA[7] = offsetOf(be, outs[2]);
  PA[8] = coef ? offsetOf(be, coef) : -1;
  PA[9] = a.beta1;
  PA[10] = a.oneMinusBeta1;
  PA[11] = a.beta2;
  PA[12] = a.oneMinusBeta2;
  PA[13] = a.eps;
  PA[14] = a.step;
  PA[15] = a.keep;
  PA[16] = a.decay ? 1 : 0;
  addon.adamw(heapOf(be), PA);
  return outs;
}

const PK = new Float64Array(10);

/** Checks that t is float32 with `shape` (the kernels trust their callers, so a wrong call fails here, not in C). */
function expectShape(kernel: string, name: string, t: tf.TensorInfo | undefined, shape: readonly number[]): tf.TensorInfo {
  const x = float32(name, t);
  if (x.shape.length !== shape.length || x.shape.some((d, i) => d !== shape[i]))
    throw new Error(`${kernel}: ${name} is [${x.shape.join(',')}], expected [${shape.join(',')}]`);
  return x;
}

function geluKernel(addon: NativeAddon, { inputs, backend }: KernelArgs): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const x = float32('x', inputs.x);
  const y = be.makeOutput([...x.shape], 'float32');
  PK[0] = sizeOf(x.shape);
  PK[1] = offsetOf(be, x);
  PK[2] = offsetOf(be, y);
  addon.gelu(heapOf(be), PK);
  return y;
}

function geluGradKernel(addon: NativeAddon, { inputs, backend }: KernelArgs): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const x = float32('x', inputs.x);
  const dy = expectShape(GELU_GRAD_KERNEL, 'dy', inputs.dy, x.shape);
  const dx = be.makeOutput([...x.shape], 'float32');
  PK[0] = sizeOf(x.shape);
  PK[1] = offsetOf(be, dy);
  PK[2] = offsetOf(be, x);
  PK[3] = offsetOf(be, dx);
  addon.geluGrad(heapOf(be), PK);
  return dx;
}

/** [.., D] as [M, D]. */
function rows(kernel: string, x: tf.TensorInfo): [number, number] {
  if (x.shape.length < 1) throw new Error(`${kernel}: x must have rank ≥ 1`);
  return [sizeOf(x.shape.slice(0, -1)), x.shape[x.shape.length - 1]];
}

function layerNormKernel(addon: NativeAddon, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const x = float32('x', inputs.x);
  const [M, D] = rows(LAYER_NORM_KERNEL, x);
  const gamma = expectShape(LAYER_NORM_KERNEL, 'gamma', inputs.gamma, [D]);
  const beta = expectShape(LAYER_NORM_KERNEL, 'beta', inputs.beta, [D]);
  const y = be.makeOutput([...x.shape], 'float32');
  const mean = be.makeOutput([M], 'float32');
  const rstd = be.makeOutput([M], 'float32');
  PK[0] = M;
  PK[1] = D;
  PK[2] = offsetOf(be, x);
  PK[3] = offsetOf(be, gamma);
  PK[4] = offsetOf(be, beta);
  PK[5] = offsetOf(be, y);
  PK[6] = offsetOf(be, mean);
  PK[7] = offsetOf(be, rstd);
  PK[8] = attrs?.eps as number;
  addon.layerNorm(heapOf(be), PK);
  return [y, mean, rstd];
}

function layerNormGradKernel(addon: NativeAddon, { inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const x = float32('x', inputs.x);
  const [M, D] = rows(LAYER_NORM_GRAD_KERNEL, x);
  const dy = expectShape(LAYER_NORM_GRAD_KERNEL, 'dy', inputs.dy, x.shape);
  const gamma = expectShape(LAYER_NORM_GRAD_KERNEL, 'gamma', inputs.gamma, [D]);
  const mean = expectShape(LAYER_NORM_GRAD_KERNEL, 'mean', inputs.mean, [M]);
  const rstd = expectShape(LAYER_NORM_GRAD_KERNEL, 'rstd', inputs.rstd, [M]);
  const dx = be.makeOutput([...x.shape], 'float32');
  const dgamma = be.makeOutput([D], 'float32');
  const dbeta = be.makeOutput([D], 'float32');
  PK[0] = M;
  PK[1] = D;
  PK[2] = offsetOf(be, dy);
  PK[3] = offsetOf(be, x);
  PK[4] = offsetOf(be, gamma);
  PK[5] = offsetOf(be, mean);
  PK[6] = offsetOf(be, rstd);
  PK[7] = offsetOf(be, dx);
  PK[8] = offsetOf(be, dgamma);
  PK[9] = offsetOf(be, dbeta);
  addon.layerNormGrad(heapOf(be), PK);
  return [dx, dgamma, dbeta];
}

function colSumKernel(addon: NativeAddon, { inputs, backend }: KernelArgs): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const x = float32('x', inputs.x);
  if (x.shape.length !== 2) throw new Error(`${COL_SUM_KERNEL}: x must be 2-D, got [${x.shape.join(',')}]`);
  const out = be.makeOutput([x.shape[1]], 'float32');
  PK[0] = x.shape[0];
  PK[1] = x.shape[1];
  PK[2] = offsetOf(be, x);
  PK[3] = offsetOf(be, out);
  addon.colSum(heapOf(be), PK);
  return out;
}

interface AttentionAttrs {
  B: number;
  T: number;
  H: number;
}

function attentionDims(kernel: string, qkv: tf.TensorInfo, a: AttentionAttrs): { hd: number; D: number } {
  const { B, T, H } = a;
  if (![B, T, H].every((n) => Number.isInteger(n) && n >= 0)) throw new Error(`${kernel}: B, T, H must be integers ≥ 0`);
  if (qkv.shape.length !== 2 || qkv.shape[0] !== B * T || H === 0 || qkv.shape[1] % (3 * H) !== 0)
    throw new Error(`${kernel}: qkv is [${qkv.shape.join(',')}], expected [B·T, 3·H·hd] = [${B * T}, 3·${H}·hd]`);
  const hd = qkv.shape[1] / (3 * H);
  return { hd, D: H * hd };
}

function attentionKernel(addon: NativeAddon, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const a = attrs as unknown as AttentionAttrs;
  const qkv = float32('qkv', inputs.qkv);
  const { hd, D } = attentionDims(ATTENTION_KERNEL, qkv, a);
  const out = be.makeOutput([a.B * a.T, D], 'float32');
  const p = be.makeOutput([a.B * a.H, a.T, a.T], 'float32');
  PK[0] = a.B;
  PK[1] = a.T;
  PK[2] = a.H;
  PK[3] = hd;
  PK[4] = hd ** -0.5;
  PK[5] = offsetOf(be, qkv);
  PK[6] = offsetOf(be, out);
  PK[7] = offsetOf(be, p);
  addon.attention(heapOf(be), PK);
  return [out, p];
}

function attentionGradKernel(addon: NativeAddon, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const a = attrs as unknown as AttentionAttrs;
  const qkv = float32('qkv', inputs.qkv);
  const { hd, D } = attentionDims(ATTENTION_GRAD_KERNEL, qkv, a);
  const dy = expectShape(ATTENTION_GRAD_KERNEL, 'dy', inputs.dy, [a.B * a.T, D]);
  const p = expectShape(ATTENTION_GRAD_KERNEL, 'p', inputs.p, [a.B * a.H, a.T, a.T]);
  const dqkv = be.makeOutput([...qkv.shape], 'float32');
  PK[0] = a.B;
  PK[1] = a.T;
  PK[2] = a.H;
  PK[3] = hd;
  PK[4] = hd ** -0.5;
  PK[5] = offsetOf(be, dy);
  PK[6] = offsetOf(be, qkv);
  PK[7] = offsetOf(be, p);
  PK[8] = offsetOf(be, dqkv);
  addon.attentionGrad(heapOf(be), PK);
  return dqkv;
}

function iceMarginKernel(addon: NativeAddon, { inputs, backend }: KernelArgs): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const x = float32('x', inputs.x);
  const w = float32('w', inputs.w);
  if (x.shape.length !== 2 || w.shape.length !== 2 || x.shape[1] !== w.shape[0] || w.shape[1] < 2)
    throw new Error(`${ICE_MARGIN_KERNEL}: x [${x.shape.join(',')}] and w [${w.shape.join(',')}] are not [M, K] and [K, c+1] with c ≥ 1`);
  const out = be.makeOutput([x.shape[0]], 'float32');
  PK[0] = x.shape[0];
  PK[1] = x.shape[1];
  PK[2] = w.shape[1];
  PK[3] = offsetOf(be, x);
  PK[4] = offsetOf(be, w);
  PK[5] = offsetOf(be, out);
  addon.iceMargin(heapOf(be), PK);
  return out;
}

/** Registers the fused kernels for the wasm backend (once per tfjs instance). */
export function registerFusedKernels(addon: NativeAddon): void {
  const add = (kernelName: string, f: (addon: NativeAddon, args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]): void => {
    if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: (args) => f(addon, args) });
  };
  add(ADAMW_KERNEL, adamwKernel);
  add(GELU_KERNEL, geluKernel);
  add(GELU_GRAD_KERNEL, geluGradKernel);
  add(LAYER_NORM_KERNEL, layerNormKernel);
  add(LAYER_NORM_GRAD_KERNEL, layerNormGradKernel);
  add(COL_SUM_KERNEL, colSumKernel);
  add(ATTENTION_KERNEL, attentionKernel);
  add(ATTENTION_GRAD_KERNEL, attentionGradKernel);
  add(ICE_MARGIN_KERNEL, iceMarginKernel);
}

/**
 * One AdamW update of a parameter: new p, m, v (the inputs are not changed). `coef` is the
 * gradient-clipping factor (a scalar tensor), or null.
 */
export function fusedAdamW(
  p: tf.Tensor,
  g: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  coef: tf.Scalar | null,
  s: AdamWScalars,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const inputs: tf.NamedTensorMap = coef ? { p, g, m, v, coef } : { p, g, m, v };
  return tf.engine().runKernel<tf.Tensor[]>(ADAMW_KERNEL, inputs, { ...s }) as [tf.Tensor, tf.Tensor, tf.Tensor];
}

const run = <T extends tf.Tensor | tf.Tensor[]>(kernel: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = {}): T =>
  tf.engine().runKernel<T>(kernel, inputs, attrs);

/** Exact GELU x·Φ(x) (Φ by Abramowitz & Stegun 7.1.26, |erf error| ≤ 1.5e-7), any shape. */
export function fusedGelu<T extends tf.Tensor>(x: T): T {
  return run<T>(GELU_KERNEL, { x });
}

/** dy·(Φ(x) + x·φ(x)). */
export function fusedGeluGrad<T extends tf.Tensor>(dy: T, x: T): T {
  return run<T>(GELU_GRAD_KERNEL, { dy, x });
}

/** LayerNorm over the last axis (biased variance): y, and the per-row mean and 1/σ for the backward. */
export function fusedLayerNorm(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D] {
  return run<tf.Tensor[]>(LAYER_NORM_KERNEL, { x, gamma, beta }, { eps }) as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
}

/** dx, dγ, dβ of fusedLayerNorm. */
export function fusedLayerNormGrad(
  dy: tf.Tensor2D,
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  mean: tf.Tensor1D,
  rstd: tf.Tensor1D,
): [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D] {
  return run<tf.Tensor[]>(LAYER_NORM_GRAD_KERNEL, { dy, x, gamma, mean, rstd }) as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
}

/** Σ over rows of x [M, N] → [N]. */
export function fusedColSum(x: tf.Tensor2D): tf.Tensor1D {
  return run<tf.Tensor1D>(COL_SUM_KERNEL, { x });
}

/**
 * Multi-head attention core on qkv [B·T, 3·H·hd] (timm's column layout): the heads' outputs
 * [B·T, H·hd] and the post-softmax attention [B·H, T, T] (softmax(q·kᵀ/√hd)).
 */
export function fusedAttention(qkv: tf.Tensor2D, B: number, T: number, H: number): [tf.Tensor2D, tf.Tensor3D] {
  return run<tf.Tensor[]>(ATTENTION_KERNEL, { qkv }, { B, T, H }) as [tf.Tensor2D, tf.Tensor3D];
}

/** d/dqkv of fusedAttention's output, given that output's gradient dy and the attention p it returned. */
export function fusedAttentionGrad(dy: tf.Tensor2D, qkv: tf.Tensor2D, p: tf.Tensor3D, B: number, T: number, H: number): tf.Tensor2D {
  return run<tf.Tensor2D>(ATTENTION_GRAD_KERNEL, { dy, qkv, p }, { B, T, H });
}

/**
 * ICE's token score from its last linear layer: x [M, K], w [K, c+1] (background last) →
 * max_{j<c} (x·w)_j − (x·w)_c, [M]. The logits are reduced block by block inside the kernel and
 * never written out.
 */
export function fusedIceMargin(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor1D {
  return run<tf.Tensor1D>(ICE_MARGIN_KERNEL, { x, w });
}
