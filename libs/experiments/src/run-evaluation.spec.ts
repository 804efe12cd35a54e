import * as tf from '@tensorflow/tfjs-core';
import { iceLoss, ICE_LOSS_PRESETS, IceVit, vitConfig } from '@ice/core';
import { DigitsDataset } from '@ice/datasets';
import { parseRunConfig } from './run-config';
import { evaluateRun, iceClassPredictions, NO_ICE_CLASS } from './run-evaluation';

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
      [[0, 0, 10, 0, 0, 0], [0, 3, 2.9, 0, 0, 0], [0, 3, 2.9, 0, 0, 0]],
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

describe('evaluateRun', () => {
  const ds = new DigitsDataset({ split: 'test', canvasSize: 32, seed: 0 });
  const config = parseRunConfig({ data: { batchSize: 4, evalLimit: 10 } });

  it('reports ice_top1 and ice_no_fg for a model with an ICE head', async () => {
    const model = IceVit.create(vitConfig('digits-micro', { iceHead: 'official' }), 1);
    try {
      const m = await evaluateRun(model, ds, config);
      expect(m.eval_images).toBe(10);
      for (const k of ['top1', 'ice_top1', 'ice_no_fg', 'fg_fraction']) {
        expect(m[k]).toBeGreaterThanOrEqual(0);
        expect(m[k]).toBeLessThanOrEqual(1);
      }
      // images without foreground are counted wrong
      expect(m.ice_top1).toBeLessThanOrEqual(1 - m.ice_no_fg + 1e-9);
      // ice_top1 is in steps of 1/n
      expect(Math.abs(m.ice_top1 * 10 - Math.round(m.ice_top1 * 10))).toBeLessThan(1e-9);
    } finally {
      model.dispose();
    }
  });

  it('has no ICE metrics for a model without an ICE head', async () => {
    const model = IceVit.create(vitConfig('digits-micro', { iceHead: 'none' }), 1);
    try {
      const m = await evaluateRun(model, ds, config);
      expect(m.top1).toBeGreaterThanOrEqual(0);
      expect(m.ice_top1).toBeUndefined();
      expect(m.fg_fraction).toBeUndefined();
    } finally {
      model.dispose();
    }
  });
});
