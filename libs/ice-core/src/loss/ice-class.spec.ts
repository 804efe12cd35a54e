import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { iceClassPredictions, iceLoss, ICE_LOSS_PRESETS, NO_ICE_CLASS } from './ice-loss';

beforeAll(async () => {
  await initBackend('wasm');
});

/** [B, N, c+1] logits from per-patch rows (c = 5 image classes + background at index 5). */
function z(rows: number[][][]): tf.Tensor3D {
  return tf.tensor3d(rows);
}
const bgPatch = [0, 0, 0, 0, 0, 10];

describe('iceClassPredictions (the ICE head’s own top-1)', () => {
  it('takes the argmax over image classes of Ŷ pooled over the foreground patches', async () => {
    const logits = z([
      // one foreground patch (class 3), the rest background
      [[0, 0, 0, 4, 0, 1], bgPatch, bgPatch],
      // Ŷ pools logits, not votes: two patches lean to class 1, one strongly to class 2 → 2
      [
        [0, 0, 10, 0, 0, 0],
        [0, 3, 2.9, 0, 0, 0],
        [0, 3, 2.9, 0, 0, 0],
      ],
      // the background channel of Ŷ is the largest (9.8) but only image classes compete → 4
      [[-10, -5, -5, -5, 5, 4.9], [5, -5, -5, -5, -9, 4.9], bgPatch],
      // no foreground patch: Ŷ = 0, the head names no class
      [bgPatch, bgPatch, bgPatch],
    ]);
    const official = iceClassPredictions(logits, 'official');
    const paper = iceClassPredictions(logits, 'paper');
    expect(official.dtype).toBe('int32');
    expect(Array.from(await official.data())).toEqual([3, 2, 4, NO_ICE_CLASS]);
    // the variants scale Ŷ by different positive factors: same argmax
    expect(Array.from(await paper.data())).toEqual([3, 2, 4, NO_ICE_CLASS]);
    tf.dispose([logits, official, paper]);
  });

  it('agrees with the argmax of the loss’s own Ŷ on random logits, and leaks no tensors', async () => {
    const logits = tf.randomNormal<tf.Rank.R3>([6, 16, 11], 0, 2, 'float32', 7);
    const before = tf.memory().numTensors;
    const pred = iceClassPredictions(logits);
    expect(tf.memory().numTensors).toBe(before + 1);
    const ref = tf.tidy(() => {
      const out = iceLoss(logits, tf.zeros([6, 10]), ICE_LOSS_PRESETS.official);
      return tf.concat([tf.argMax(tf.slice(out.yHat, [0, 0], [6, 10]), 1), tf.cast(out.fCount, 'int32')]);
    });
    const r = Array.from(await ref.data());
    const expected = r.slice(0, 6).map((c, i) => (r[6 + i] > 0 ? c : NO_ICE_CLASS));
    expect(Array.from(await pred.data())).toEqual(expected);
    tf.dispose([logits, pred, ref]);
  });
});
