/**
 * Explainability maps from the ICE head's per-patch logits z [B, N, c+1] (background last):
 * the class-agnostic foreground mask and the per-class score map, on the patch grid or
 * upsampled to the image.
 */
import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import type { IceVit } from '../model/vit.model';

export type UpsampleMode = 'nearest' | 'bilinear';

function grid(N: number): number {
  const g = Math.round(Math.sqrt(N));
  if (g * g !== N) throw new IceError('INPUT_INVALID', `ICE logits have ${N} patches, not a square grid`);
  return g;
}

/** [B, N, c+1] → [B, g, g] float 0/1: 1 where the patch's argmax is not the background channel. */
export function foregroundMask(z: tf.Tensor3D): tf.Tensor3D {
  const [B, N, k] = z.shape;
  const g = grid(N);
  return tf.tidy(() => tf.reshape(tf.cast(tf.notEqual(tf.argMax(z, -1), k - 1), 'float32'), [B, g, g]));
}

/** [B, N, c+1] → [B, g, g]: the raw logit of class `classes[b]` at every patch. */
export function classScoreMap(z: tf.Tensor3D, classes: readonly number[]): tf.Tensor3D {
  const [B, N, k] = z.shape;
  if (classes.length !== B) throw new IceError('INPUT_INVALID', `need one class per image: ${classes.length} for ${B} images`);
  classes.forEach((c) => {
    if (!Number.isInteger(c) || c < 0 || c >= k - 1) throw new IceError('INPUT_INVALID', `class ${c} is outside 0..${k - 2}`);
  });
  const g = grid(N);
  return tf.tidy(() => {
    const onehot = tf.oneHot(tf.tensor1d(classes as number[], 'int32'), k); // [B, k]
    const scores: tf.Tensor3D = tf.reshape(tf.matMul(z, tf.expandDims(onehot, 2)), [B, g, g]); // [B,N,k]·[B,k,1]
    return scores;
  });
}

/**
 * [B, h, w] → [B, H, W]. Bilinear uses half-pixel centres with the source coordinate clamped
 * at 0 (PyTorch's align_corners=False); nearest repeats each cell as a block for integer factors.
 */
export function upsampleMap(map: tf.Tensor3D, size: [number, number], mode: UpsampleMode): tf.Tensor3D {
  return tf.tidy(() => {
    const x: tf.Tensor4D = tf.expandDims(map, 3); // [B,h,w,1]
    const y = mode === 'bilinear' ? tf.image.resizeBilinear(x, size, false, true) : tf.image.resizeNearestNeighbor(x, size, false, true);
    return tf.squeeze(y, [3]);
  });
}

export interface IceMapsOptions {
  /** Target class per image; default: the CLS head's top-1 prediction. */
  classes?: number[];
  /** Output size; default: the input size. */
  size?: [number, number];
  mode?: UpsampleMode;
}

export interface IceMaps {
  /** [B, H, W] 0/1 class-agnostic foreground. */
  foreground: tf.Tensor3D;
  /** [B, H, W] score of the target class. */
  classScore: tf.Tensor3D;
  classes: number[];
}

/** One forward pass → both ICE maps for a batch of NCHW images. */
export function iceMaps(model: IceVit, x: tf.Tensor4D, opts: IceMapsOptions = {}): IceMaps {
  if (model.config.iceHead === 'none') throw new IceError('CONFIG_INVALID', 'ICE maps need a model with an ICE head');
  const size = opts.size ?? [x.shape[2], x.shape[3]];
  let classes: number[] = [];
  const maps = tf.tidy(() => {
    const out = model.forward(x);
    classes = opts.classes ?? Array.from(tf.argMax(out.clsLogits, -1).dataSync());
    return {
      // The mask is categorical: nearest keeps it 0/1 whatever the mode asked for the scores.
      foreground: upsampleMap(foregroundMask(out.zIce!), size, 'nearest'),
      classScore: upsampleMap(classScoreMap(out.zIce!, classes), size, opts.mode ?? 'bilinear'),
    };
  });
  return { ...maps, classes };
}
