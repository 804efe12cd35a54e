import * as tf from '@tensorflow/tfjs-core';
import { disposeExplanation, disposeTrace, EXPLAINERS, type ExplainerName, gridSize, type IceVit, traceAttention, upsampleMap, type UpsampleMode } from '@ice/core';

/** One explainer's patch-grid map of one image, read back to the CPU, with the time it took. */
export interface MethodMap {
  method: ExplainerName;
  /** Grid side g (the map is g×g, row-major). */
  g: number;
  grid: Float32Array;
  /** Raw attention with `perHead`: each head's CLS → patch attention of the last block (g² values each). */
  heads?: Float32Array[];
  targetClass: number;
  /** Wall time of the explainer: forward (and backward) passes and the read-back of the map. */
  seconds: number;
}

export interface RunExplainerOptions {
  targetClass?: number;
  startLayer?: number;
  /** Raw attention only: keep the heads apart (Intriguing's per-head masks). */
  perHead?: boolean;
}

/** Runs one registered explainer on one NCHW image [1, C, S, S]. */
export function runExplainer(model: IceVit, x: tf.Tensor4D, method: ExplainerName, opts: RunExplainerOptions = {}): MethodMap {
  const g = gridSize(model.config);
  const t0 = performance.now();
  if (method === 'raw-attention' && opts.perHead) {
    const trace = traceAttention(model, x, false, opts.targetClass);
    try {
      const last = trace.attention[trace.attention.length - 1];
      const [H, T] = last.shape;
      const rows = tf.tidy((): tf.Tensor2D => tf.reshape(tf.slice(last, [0, 0, 1], [H, 1, T - 1]), [H, T - 1]));
      const data = rows.dataSync<'float32'>();
      rows.dispose();
      const N = T - 1;
      const heads = Array.from({ length: H }, (_, h) => data.slice(h * N, (h + 1) * N));
      // The head mean, summed in the order tf.mean would see the heads.
      const grid = new Float32Array(N);
      for (const row of heads) for (let i = 0; i < N; i++) grid[i] += row[i];
      for (let i = 0; i < N; i++) grid[i] /= H;
      return { method, g, grid, heads, targetClass: trace.targetClass, seconds: (performance.now() - t0) / 1000 };
    } finally {
      disposeTrace(trace);
    }
  }
  const e = EXPLAINERS[method].explain(model, x, { targetClass: opts.targetClass, startLayer: opts.startLayer });
  try {
    const grid = e.map.dataSync<'float32'>().slice();
    return { method, g, grid, targetClass: e.targetClass, seconds: (performance.now() - t0) / 1000 };
  } finally {
    disposeExplanation(e);
  }
}

/** The CLS head's top-1 class of one image (first maximum, as torch.argmax). */
export function predictTop1(model: IceVit, x: tf.Tensor4D): number {
  const logits = tf.tidy(() => model.forward(x, { skipIceHead: true }).clsLogits.dataSync<'float32'>());
  let best = 0;
  for (let k = 1; k < logits.length; k++) if (logits[k] > logits[best]) best = k;
  return best;
}

/** g×g grid → S×S with ice-core's upsampleMap (bilinear: half-pixel centres, as align_corners=False). */
export function upsampleGrid(grid: Float32Array, g: number, size: number, mode: UpsampleMode): Float32Array {
  return tf.tidy(() => upsampleMap(tf.tensor3d(grid, [1, g, g]), [size, size], mode).dataSync<'float32'>());
}
