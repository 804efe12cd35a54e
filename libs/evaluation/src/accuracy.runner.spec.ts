import * as tf from '@tensorflow/tfjs-core';
import { IceError, IceVit, initBackend, vitConfig } from '@ice/core';
import { batchNCHW, DigitsDataset } from '@ice/datasets';
import { formatAccuracyReport, runAccuracy } from './accuracy.runner';

beforeAll(() => initBackend());

describe('runAccuracy (ice eval accuracy)', () => {
  const config = vitConfig('digits-micro');
  let model: IceVit;
  beforeAll(() => {
    model = IceVit.create(config, 4);
  });
  afterAll(() => model.dispose());

  /** The CLS head's top-1 over the first n digits test images, computed here by hand. */
  function handTop1(n: number, opts: Parameters<IceVit['forward']>[1] = {}): number {
    const ds = new DigitsDataset({ split: 'test', canvasSize: 32, seed: 0 });
    const samples = Array.from({ length: n }, (_, i) => ds.get(i));
    const b = batchNCHW(samples, config.mean, config.std);
    const pred = tf.tidy(() => tf.argMax(model.forward(tf.tensor4d(b.x, b.shape), opts).clsLogits, -1).dataSync());
    return b.labels.filter((l, i) => pred[i] === l).length / n;
  }

  it('top-1 of the CLS head as computed by hand, batch by batch, without leaking', async () => {
    const before = tf.memory().numTensors;
    const r = await runAccuracy({ model, format: 'digits', limit: 24, batchSize: 10 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.metrics.top1).toBeCloseTo(handTop1(24), 10);
    expect(r.metrics.ice_top1).toBeGreaterThanOrEqual(0);
    expect(r.prune).toBeNull();
    expect(r.tokens).toEqual([16, 16]);
    expect(r.images).toBe(24);
    expect(r.dataset).toEqual({ name: 'digits', split: 'test', images: 24 });
    expect(formatAccuracyReport(r)).toMatch(/^accuracy on digits\/test \(24 images\): top1 [\d.]+ {2}ice_top1/);
  });

  it('with pruning: the pruned forward pass, the tokens it leaves, and ρ = 1 equal to none', async () => {
    const prune = { mode: 'evit' as const, keepRate: 0.5, locations: [0] };
    const r = await runAccuracy({ model, format: 'digits', limit: 24, prune });
    expect(r.metrics.top1).toBeCloseTo(handTop1(24, { prune }), 10);
    expect(r.prune).toMatchObject({ mode: 'evit', keepRate: 0.5, locations: [0], fuse: true });
    expect(r.tokens).toEqual([9, 9]);
    expect(r.conventions.join('\n')).toMatch(/token pruning \(evit, inference only.*fused into one token/);
    const ice = await runAccuracy({ model, format: 'digits', limit: 24, prune: { mode: 'ice', keepRate: 0.7 } });
    expect(ice.prune).toMatchObject({ locations: [0], fuse: false });
    expect(ice.tokens).toEqual([12, 12]);
    const one = await runAccuracy({ model, format: 'digits', limit: 24, prune: { mode: 'ice', keepRate: 1 } });
    const none = await runAccuracy({ model, format: 'digits', limit: 24 });
    expect(one.metrics).toEqual(none.metrics);
  });

  it('names what is wrong', async () => {
    await expect(runAccuracy({ model, format: 'imagenet' })).rejects.toThrow(/needs a root/);
    await expect(runAccuracy({ model, format: 'voc' as never })).rejects.toThrow(/accuracy reads digits, imagenet/);
    await expect(runAccuracy({ model, limit: 0 })).rejects.toThrow(/limit/);
    await expect(runAccuracy({ model, split: 'dev' })).rejects.toThrow(/digits splits are train, val and test/);
    await expect(runAccuracy({ model, prune: { mode: 'evit', keepRate: 2 } })).rejects.toThrow(IceError);
    const plain = IceVit.create(vitConfig('digits-micro', { iceHead: 'none' }), 1);
    try {
      await expect(runAccuracy({ model: plain, limit: 4, prune: { mode: 'ice', keepRate: 0.5 } })).rejects.toThrow(/has none/);
      const r = await runAccuracy({ model: plain, limit: 4 });
      expect(r.metrics.ice_top1).toBeUndefined();
    } finally {
      plain.dispose();
    }
    const wide = IceVit.create(vitConfig('digits-micro', { numClasses: 12 }), 1);
    try {
      await expect(runAccuracy({ model: wide, limit: 4 })).rejects.toThrow(/10 classes and the model's CLS head 12/);
    } finally {
      wide.dispose();
    }
  });
});
