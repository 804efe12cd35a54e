import * as tf from '@tensorflow/tfjs-core';
import { explainBatch, type ExplainerName, gridSize, type IceVit, type TargetSource, upsampleMap, type UpsampleMode } from '@ice/core';

/** One explainer's patch-grid map of one image, read back to the CPU. */
export interface MethodMap {
  method: ExplainerName;
  /** Grid side g (the map is g×g, row-major). */
  g: number;
  grid: Float32Array;
  /** Raw attention with `perHead`: each head's CLS → patch attention of the last block (g² values each). */
  heads?: Float32Array[];
  targetClass: number;
}

export interface RunExplainerOptions {
  /** Per image: its target class, or undefined for the top-1 of `targetSource`. */
  classes?: readonly (number | undefined)[];
  targetSource?: TargetSource;
  startLayer?: number;
  /** Raw attention only: keep the heads apart (Intriguing's per-head masks). */
  perHead?: boolean;
}

export interface BatchMaps {
  maps: MethodMap[];
  /** Wall time of the explainer on the whole batch: forward (and backward) passes and the read-back of the maps. */
  seconds: number;
}

/**
 * Runs one registered explainer on NCHW images [B, C, S, S] in one pass (ice-core's explainBatch:
 * each image's map is the one it would get alone) and reads the maps back, timed.
 */
export function runExplainer(model: IceVit, x: tf.Tensor4D, method: ExplainerName, opts: RunExplainerOptions = {}): BatchMaps {
  const g = gridSize(model.config);
  const N = g * g;
  const t0 = performance.now();
  const e = explainBatch(method, model, x, {
    classes: opts.classes,
    targetSource: opts.targetSource,
    startLayer: opts.startLayer,
    perHead: opts.perHead,
  });
  try {
    const all = e.maps.dataSync<'float32'>();
    const heads = e.heads?.dataSync<'float32'>();
    const H = e.heads?.shape[1] ?? 0;
    const maps = e.targetClasses.map((targetClass, b): MethodMap => {
      const m: MethodMap = { method, g, grid: all.slice(b * N, (b + 1) * N), targetClass };
      if (heads) m.heads = Array.from({ length: H }, (_, h) => heads.slice((b * H + h) * N, (b * H + h + 1) * N));
      return m;
    });
    return { maps, seconds: (performance.now() - t0) / 1000 };
  } finally {
    tf.dispose([e.maps, ...(e.heads ? [e.heads] : [])]);
  }
}

/** g×g grid → S×S with ice-core's upsampleMap (bilinear: half-pixel centres, as align_corners=False). */
export function upsampleGrid(grid: Float32Array, g: number, size: number, mode: UpsampleMode): Float32Array {
  return tf.tidy(() => upsampleMap(tf.tensor3d(grid, [1, g, g]), [size, size], mode).dataSync<'float32'>());
}
