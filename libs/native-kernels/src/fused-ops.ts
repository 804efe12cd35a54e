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

/** Registers the fused kernels for the wasm backend (once per tfjs instance). */
export function registerFusedKernels(addon: NativeAddon): void {
  const add = (kernelName: string, f: (addon: NativeAddon, args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]): void => {
    if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: (args) => f(addon, args) });
  };
  add(ADAMW_KERNEL, adamwKernel);
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
