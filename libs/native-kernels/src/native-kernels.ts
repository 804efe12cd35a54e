import * as tf from '@tensorflow/tfjs-core';
import { registerFusedKernels } from './fused-ops';
import { isSupportedActivation, nativeMatMul } from './gemm.kernel';
import { BlasLibrary, loadAddon, NativeAddon } from './native-addon';
import { heapOf, offsetOf, sizeOf, WasmBackendLike } from './wasm-heap';

/**
 * Native kernels under tfjs's wasm backend. `enableNativeKernels` loads the addon and a BLAS
 * library and re-registers the wasm backend's BatchMatMul, _FusedMatMul, GatherV2, Identity, Slice and SplitV; the replacements hand
 * anything they do not handle (non-float32 operands, native kernels switched off) to the original
 * kernels. It also registers the fused kernels (fused-ops.ts) under new names. Other backends
 * (cpu, tensorflow) are never touched.
 */
export type NativeKernelsChoice = 'off' | BlasLibrary | 'auto';

export interface NativeKernelsInfo {
  /** The library the GEMM runs on, or 'off' (stock wasm kernels). */
  kernels: BlasLibrary | 'off';
  threads: number;
  /** Path and version of the library; absent when off. */
  path?: string;
  version?: string;
  /** Why the kernels are off (asked for, addon not built, no library found). */
  reason?: string;
}

interface State {
  addon: NativeAddon;
  info: NativeKernelsInfo;
  /** The kernels registered by the wasm backend itself, for what the native ones do not handle. */
  original: Map<string, tf.KernelConfig>;
}

let state: State | undefined;
let active = false;
let lastInfo: NativeKernelsInfo = { kernels: 'off', threads: 0, reason: 'not enabled' };

/** True when the native kernels are loaded, switched on, and the current backend is wasm. */
export function nativeKernelsActive(): boolean {
  return active && state !== undefined && tf.getBackend() === 'wasm';
}

/** What the last enable/disable did. */
export function nativeKernelsInfo(): NativeKernelsInfo {
  return lastInfo;
}

/**
 * Loads the addon and `choice`'s library (auto: oneDNN, else OpenBLAS) with `threads` threads and
 * switches the native kernels on. With 'auto', a missing addon or library gives kernels: 'off' and
 * the reason; naming a library that cannot be loaded throws. Needs the wasm backend registered.
 */
export function enableNativeKernels(choice: NativeKernelsChoice, threads = 1): NativeKernelsInfo {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`native kernels: threads must be a positive integer, got ${threads}`);
  if (choice === 'off') return disableNativeKernels('ICE_NATIVE_KERNELS=off');
  const off = (reason: string): NativeKernelsInfo => {
    if (choice !== 'auto') throw new Error(`native kernels (${choice}) unavailable: ${reason}`);
    return disableNativeKernels(reason);
  };
  const { addon, error } = loadAddon();
  if (!addon) return off(error ?? 'the addon does not load');
  let lib;
  try {
    lib = addon.load(choice, threads);
  } catch (e) {
    return off((e as Error).message);
  }
  if (!tf.getKernel('BatchMatMul', 'wasm')) return off('the wasm backend is not registered');
  const original = state?.original ?? registerKernels();
  if (!state) registerFusedKernels(addon);
  state = { addon, original, info: { kernels: lib.library, threads: lib.threads, path: lib.path, version: lib.version } };
  active = true;
  lastInfo = state.info;
  return lastInfo;
}

/** Back to the stock wasm kernels (the replacements stay registered and delegate). */
export function disableNativeKernels(reason = 'switched off'): NativeKernelsInfo {
  active = false;
  lastInfo = { kernels: 'off', threads: 0, reason };
  return lastInfo;
}

/**
 * Switches loaded native kernels on or off without unloading them (benchmarks and tests compare
 * both in one process). Returns whether they are now active.
 */
export function setNativeKernelsEnabled(on: boolean): boolean {
  if (on && !state) throw new Error('native kernels: not loaded (call enableNativeKernels first)');
  active = on;
  lastInfo = on && state ? state.info : { kernels: 'off', threads: 0, reason: 'switched off' };
  return nativeKernelsActive();
}

// ---------------------------------------------------------------- kernel registration

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function replace(
  name: string,
  original: Map<string, tf.KernelConfig>,
  handle: (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[] | undefined,
): void {
  const orig = tf.getKernel(name, 'wasm');
  if (!orig) throw new Error(`the wasm backend has no ${name} kernel to replace`);
  original.set(name, orig);
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const out = active && state ? handle(args) : undefined;
      return out ?? orig.kernelFunc(args);
    },
  });
}

function registerKernels(): Map<string, tf.KernelConfig> {
  const original = new Map<string, tf.KernelConfig>();
  // The engine clones every tensor a gradient saves (≈170 per training step) through Identity,
  // which the wasm backend implements as a copy. tfjs tensors are immutable and no kernel here
  // writes into its inputs, so the clone can share the buffer as Reshape does (and the cpu
  // backend's Identity): one reference more instead of a copy.
  replace('Identity', original, ({ inputs, backend }) => {
    const { x } = inputs;
    if (!x || x.dtype === 'string') return undefined;
    (backend as WasmBackendLike).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  });
  replace('BatchMatMul', original, ({ inputs, backend, attrs }) => {
    const { a, b } = inputs;
    if (!a || !b || a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
    return nativeMatMul(state!.addon, backend as WasmBackendLike, {
      a,
      b,
      transposeA: Boolean(attrs?.transposeA),
      transposeB: Boolean(attrs?.transposeB),
    });
  });
  replace('_FusedMatMul', original, ({ inputs, backend, attrs }) => {
    const { a, b, bias, preluActivationWeights } = inputs;
    const activation = (attrs?.activation as string | undefined) ?? 'linear';
    if (!a || !b || a.dtype !== 'float32' || b.dtype !== 'float32' || !isSupportedActivation(activation)) return undefined;
    if ((bias && bias.dtype !== 'float32') || (activation === 'prelu' && preluActivationWeights?.dtype !== 'float32')) return undefined;
    return nativeMatMul(state!.addon, backend as WasmBackendLike, {
      a,
      b,
      transposeA: Boolean(attrs?.transposeA),
      transposeB: Boolean(attrs?.transposeB),
      bias,
      activation,
      preluWeights: preluActivationWeights,
      leakyreluAlpha: attrs?.leakyreluAlpha as number | undefined,
    });
  });
  // The wasm GatherV2 computes every element's source index (≈30 ns per float: 55 ms of a pruned
  // DeiT-Tiny batch of 64); the native one copies whole rows.
  replace('GatherV2', original, ({ inputs, backend, attrs }) => {
    const { x, indices } = inputs;
    if (!x || !indices || (x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32') return undefined;
    if (Number(attrs?.batchDims ?? 0) !== 0 || x.shape.length === 0) return undefined;
    const axis = tf.util.parseAxisParam(Number(attrs?.axis ?? 0), x.shape)[0];
    return nativeGather(state!.addon, backend as WasmBackendLike, x, indices, axis);
  });
  // The wasm Slice reads its whole input back first (readSync: a fresh copy of x per call, 10–20 MB
  // per DeiT-Tiny training step, through SplitV too, which calls it directly). That garbage is
  // external memory to V8: it set off a major GC about every second, whose pauses and helper
  // threads slowed the data-parallel ranks unevenly (bench:train-scaling). These copy rows heap to heap.
  replace('Slice', original, ({ inputs, backend, attrs }) => {
    const { x } = inputs;
    if (!x || !COPYABLE.has(x.dtype)) return undefined;
    const [begin, size] = tf.slice_util.parseSliceParams(x, attrs!.begin as number[], attrs!.size as number[]);
    return heapSlice(backend as WasmBackendLike, x, begin, size);
  });
  replace('SplitV', original, ({ inputs, backend, attrs }) => {
    const { x } = inputs;
    if (!x || !COPYABLE.has(x.dtype)) return undefined;
    const axis = tf.util.parseAxisParam(attrs!.axis as number, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x, attrs!.numOrSizeSplits as number[] | number, axis);
    const begin = x.shape.map(() => 0);
    return sizes.map((n) => {
      const size = [...x.shape];
      size[axis] = n;
      const out = heapSlice(backend as WasmBackendLike, x, [...begin], size);
      begin[axis] += n;
      return out;
    });
  });
  return original;
}

/** Dtypes whose elements are 4 bytes on the wasm heap (bool is 1, string lives off the heap). */
const COPYABLE: ReadonlySet<tf.DataType> = new Set(['float32', 'int32']);

/**
 * x[begin : begin + size] (any rank) by memmoves inside the heap: the trailing dimensions the slice
 * covers whole, with the first one it cuts, form one contiguous run per index of the dimensions before.
 */
function heapSlice(be: WasmBackendLike, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  const out = be.makeOutput(size, x.dtype); // may grow the heap: offsets and views after it
  const total = sizeOf(size);
  if (total === 0) return out;
  const rank = x.shape.length;
  const strides = new Array<number>(rank);
  for (let d = rank - 1, s = 1; d >= 0; d--) {
    strides[d] = s;
    s *= x.shape[d];
  }
  let d = rank - 1;
  let run = 1;
  while (d >= 0 && size[d] === x.shape[d]) run *= size[d--];
  if (d >= 0) run *= size[d]; // dimension d is cut: its kept range is still contiguous
  const outer = d >= 0 ? d : 0; // dimensions iterated one index at a time
  const heap = be.wasm.HEAPU8;
  const src0 = offsetOf(be, x);
  let dst = offsetOf(be, out);
  const idx = new Array<number>(outer).fill(0);
  const bytes = 4 * run;
  for (let copied = 0; copied < total; copied += run) {
    let e = d >= 0 ? begin[d] * strides[d] : 0;
    for (let k = 0; k < outer; k++) e += (begin[k] + idx[k]) * strides[k];
    heap.copyWithin(dst, src0 + 4 * e, src0 + 4 * e + bytes);
    dst += bytes;
    for (let k = outer - 1; k >= 0 && ++idx[k] === size[k]; k--) idx[k] = 0; // odometer over the outer dimensions
  }
  return out;
}

const PG = new Float64Array(7);

/** tf.gather(x, indices, axis) with batchDims 0, for 4-byte x and int32 indices. */
function nativeGather(addon: NativeAddon, be: WasmBackendLike, x: tf.TensorInfo, indices: tf.TensorInfo, axis: number): tf.TensorInfo {
  const outer = sizeOf(x.shape.slice(0, axis));
  const inner = sizeOf(x.shape.slice(axis + 1));
  const count = sizeOf(indices.shape);
  const n = x.shape[axis];
  // Checked before the output is allocated (an error after it would leak that buffer); the kernel checks again.
  const idx = new Int32Array(heapOf(be), offsetOf(be, indices), count);
  for (let i = 0; i < count; i++) {
    if (idx[i] < 0 || idx[i] >= n) throw new Error(`GatherV2: the index value ${idx[i]} is not in [0, ${n - 1}]`);
  }
  const out = be.makeOutput([...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)], x.dtype);
  if (sizeOf(out.shape) === 0) return out;
  PG[0] = outer;
  PG[1] = n;
  PG[2] = inner;
  PG[3] = count;
  PG[4] = offsetOf(be, x);
  PG[5] = offsetOf(be, indices);
  PG[6] = offsetOf(be, out);
  addon.gather(heapOf(be), PG);
  return out;
}
