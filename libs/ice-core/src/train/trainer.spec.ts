import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { vitConfig } from '../model/vit.config';
import { IceVit } from '../model/vit.model';
import { loadCheckpoint, readCheckpointStep, saveCheckpoint } from './checkpoint';
import { IceTrainer, lossConfigAt, TrainConfig, TRAIN_PRESETS, validateTrainConfig } from './trainer';

const cfg = (over: Partial<TrainConfig> = {}): TrainConfig => ({
  ...TRAIN_PRESETS.iceReleased,
  schedule: { ...TRAIN_PRESETS.iceReleased.schedule, totalSteps: 20, warmupSteps: 2 },
  seed: 7,
  ...over,
});

/** Deterministic batch number i: images and labels depend only on i. */
function batch(i: number): { x: tf.Tensor4D; labels: number[] } {
  const x: tf.Tensor4D = tf.randomNormal([4, 3, 32, 32], 0, 1, 'float32', 1000 + i);
  return { x, labels: [i % 10, (i + 3) % 10, (i + 5) % 10, (i + 7) % 10] };
}

function run(trainer: IceTrainer, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const { x, labels } = batch(i);
    trainer.trainStep(x, labels);
    x.dispose();
  }
}

async function weights(model: IceVit): Promise<Map<string, Float32Array>> {
  const sd = await model.stateDict();
  return new Map([...sd].map(([k, r]) => [k, r.data as Float32Array]));
}

describe('IceTrainer', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-train-'));
  beforeAll(async () => {
    await initBackend('wasm');
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('lowers the ICE loss on a fixed batch', () => {
    const model = IceVit.create(vitConfig('golden-micro'), 1);
    const trainer = new IceTrainer(
      model,
      cfg({
        mixup: { ...TRAIN_PRESETS.iceReleased.mixup, mixupAlpha: 0, cutmixAlpha: 0 },
        schedule: { baseLr: 1e-3, warmupLr: 1e-3, minLr: 1e-3, totalSteps: 100, warmupSteps: 0 },
      }),
    );
    const { x, labels } = batch(0);
    const first = trainer.trainStep(x, labels).loss;
    let last = first;
    for (let i = 0; i < 15; i++) last = trainer.trainStep(x, labels).loss;
    expect(last).toBeLessThan(first);
    x.dispose();
    trainer.dispose();
    model.dispose();
  });

  it('warms λ_class up linearly from lambdaWarmup.from to the loss value, then keeps it', () => {
    const c = cfg({ loss: { ...TRAIN_PRESETS.iceReleased.loss, lambdaClass: 0.975 }, lambdaWarmup: { from: 0.5, steps: 100 } });
    expect(lossConfigAt(c, 0).lambdaClass).toBe(0.5);
    expect(lossConfigAt(c, 50).lambdaClass).toBeCloseTo(0.7375, 12);
    expect(lossConfigAt(c, 100)).toBe(c.loss);
    expect(lossConfigAt(c, 5000)).toBe(c.loss);
    expect(lossConfigAt({ ...c, lambdaWarmup: null }, 0)).toBe(c.loss);
    expect(lossConfigAt({ ...c, lambdaWarmup: { from: 0.5, steps: 0 } }, 0)).toBe(c.loss);
    expect(() => validateTrainConfig({ ...c, lambdaWarmup: { from: 0, steps: 10 } })).toThrow(/lambdaWarmup.from must be in \(0, 1\]/);
    expect(() => validateTrainConfig({ ...c, lambdaWarmup: { from: 0.5, steps: 1.5 } })).toThrow(/lambdaWarmup.steps/);
  });

  it('trains its first update with the warm-up λ: the same weights as a run at that λ', async () => {
    const at = (lambdaClass: number, lambdaWarmup: TrainConfig['lambdaWarmup']) => {
      const model = IceVit.create(vitConfig('golden-micro'), 4);
      const trainer = new IceTrainer(model, cfg({ loss: { ...TRAIN_PRESETS.iceReleased.loss, lambdaClass }, lambdaWarmup }));
      run(trainer, 0, 1);
      trainer.dispose();
      return model;
    };
    const warmed = at(0.975, { from: 0.5, steps: 10 });
    const plain = at(0.5, null);
    const released = at(0.975, null);
    const [w, p, r] = await Promise.all([weights(warmed), weights(plain), weights(released)]);
    expect(w.get('mlp_head.weight')).toEqual(p.get('mlp_head.weight'));
    expect(w.get('mlp_head.weight')).not.toEqual(r.get('mlp_head.weight'));
    [warmed, plain, released].forEach((m) => m.dispose());
  });

  it('leaks no tensors across training steps', () => {
    const model = IceVit.create(vitConfig('golden-micro', { dropPathRate: 0.1 }), 2);
    const trainer = new IceTrainer(model, cfg());
    run(trainer, 0, 2);
    const before = tf.memory().numTensors;
    run(trainer, 2, 5);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
    model.dispose();
  });

  it('resumes from a checkpoint to bit-identical weights after further steps', async () => {
    const config = vitConfig('golden-micro', { dropPathRate: 0.1 });
    const a = IceVit.create(config, 3);
    const ta = new IceTrainer(a, cfg());
    run(ta, 0, 3);
    const file = path.join(tmp, 'step3.safetensors');
    await saveCheckpoint(file, ta);
    run(ta, 3, 6);

    const { model: b, trainer: tb, info } = loadCheckpoint(file);
    expect(info.step).toBe(3);
    // The step from the header alone; a file that is not a checkpoint is named as such.
    expect(readCheckpointStep(file)).toBe(3);
    const bad = path.join(tmp, 'not-a-checkpoint.safetensors');
    fs.writeFileSync(bad, Buffer.from([1, 2, 3]));
    expect(() => readCheckpointStep(bad)).toThrow(/not-a-checkpoint\.safetensors is shorter than a safetensors header/);
    fs.writeFileSync(bad, Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]));
    expect(() => readCheckpointStep(bad)).toThrow(/checkpoint format \(none\) is not ice-checkpoint\/1/);
    run(tb, 3, 6);
    const wa = await weights(a);
    const wb = await weights(b);
    for (const [k, v] of wa) expect(Buffer.from(wb.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    expect(tb.step).toBe(6);
    [ta, tb].forEach((t) => t.dispose());
    [a, b].forEach((m) => m.dispose());
  });

  it('ICE-f (frozen backbone) only changes the ICE head', async () => {
    const model = IceVit.create(vitConfig('golden-micro', { iceHead: 'icef' }), 4);
    const before = await weights(model);
    const trainer = new IceTrainer(model, cfg({ frozenBackbone: true }));
    run(trainer, 0, 2);
    const after = await weights(model);
    for (const [k, v] of before) {
      const changed = !Buffer.from(after.get(k)!.buffer).equals(Buffer.from(v.buffer));
      expect([k, changed]).toEqual([k, k.startsWith('mlp_head')]);
    }
    trainer.dispose();
    model.dispose();
  });

  it('classification mode trains the CLS head without an ICE head', () => {
    const model = IceVit.create(vitConfig('golden-micro', { iceHead: 'none' }), 5);
    const trainer = new IceTrainer(model, { ...TRAIN_PRESETS.classify, seed: 1 });
    const { x, labels } = batch(1);
    const s = trainer.trainStep(x, labels);
    expect(Number.isFinite(s.loss)).toBe(true);
    expect(s.lIce).toBeUndefined();
    x.dispose();
    trainer.dispose();
    model.dispose();
  });

  it('stops on a NaN loss without touching the weights or the saved checkpoint', async () => {
    const model = IceVit.create(vitConfig('golden-micro'), 6);
    const trainer = new IceTrainer(model, cfg());
    run(trainer, 0, 1);
    const file = path.join(tmp, 'good.safetensors');
    await saveCheckpoint(file, trainer);
    const saved = fs.readFileSync(file);
    const before = await weights(model);
    const x: tf.Tensor4D = tf.fill([4, 3, 32, 32], NaN);
    let err: unknown;
    try {
      trainer.trainStep(x, [0, 1, 2, 3]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IceError);
    expect((err as IceError).code).toBe('NON_FINITE_LOSS');
    expect((err as IceError).message).toMatch(/loss is NaN at step 1/);
    const after = await weights(model);
    for (const [k, v] of before) expect(Buffer.from(after.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    expect(fs.readFileSync(file).equals(saved)).toBe(true);
    expect(trainer.step).toBe(1);
    x.dispose();
    trainer.dispose();
    model.dispose();
  });

  it('accumulates gradients over micro-batches before updating', () => {
    const model = IceVit.create(vitConfig('golden-micro'), 8);
    const trainer = new IceTrainer(model, cfg({ accumSteps: 2 }));
    const { x, labels } = batch(2);
    expect(trainer.trainStep(x, labels).updated).toBe(false);
    expect(trainer.step).toBe(0);
    expect(trainer.trainStep(x, labels).updated).toBe(true);
    expect(trainer.step).toBe(1);
    x.dispose();
    trainer.dispose();
    model.dispose();
  });
});
