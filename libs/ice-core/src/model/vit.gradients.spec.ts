/**
 * Gradients of every parameter against PyTorch (float64 autograd through the same network;
 * fixture made by tools/make_grad_fixture.py), for the official ICE loss and for a plain
 * cross-entropy on the CLS head. A wrong backward anywhere in the ViT shows up here.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { iceLoss, ICE_LOSS_PRESETS } from '../loss/ice-loss';
import { expectAllClose, goldenPath } from '../testing/golden.testing';
import { readSafetensors } from '../weights/safetensors';
import { vitConfig } from './vit.config';
import { IceVit, ParamSpec } from './vit.model';

const FIXTURE = path.join(__dirname, '../testing/fixtures/golden-micro-grads.safetensors');

function toTorch(g: tf.Tensor, s: ParamSpec): tf.Tensor {
  switch (s.layout) {
    case 'plain':
      return g;
    case 'linear':
      return tf.transpose(g);
    case 'patch':
      return tf.reshape(tf.transpose(g), s.torchShape);
  }
}

describe('IceVit gradients against PyTorch', () => {
  let model: IceVit;
  let ref: ReturnType<typeof readSafetensors>['tensors'];
  let x: tf.Tensor4D;
  beforeAll(async () => {
    await initBackend('wasm');
    model = IceVit.create(vitConfig('golden-micro'));
    model.loadStateDict(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    ref = readSafetensors(FIXTURE).tensors;
    const io = readSafetensors(goldenPath('golden-micro-io.safetensors')).tensors;
    x = tf.tensor4d(io.get('input')!.data as Float32Array, [2, 3, 32, 32]);
  });
  afterAll(() => {
    x.dispose();
    model.dispose();
  });

  const targets = (): tf.Tensor2D => tf.cast(tf.oneHot(tf.tensor1d([1, 7], 'int32'), 10), 'float32') as tf.Tensor2D;

  it.each([
    ['ice', (m: IceVit, xx: tf.Tensor4D): tf.Scalar => iceLoss(m.forward(xx).zIce!, targets(), ICE_LOSS_PRESETS.official).total],
    ['cls', (m: IceVit, xx: tf.Tensor4D): tf.Scalar => tf.losses.softmaxCrossEntropy(targets(), m.forward(xx).clsLogits)],
  ] as const)('%s loss: every parameter gradient matches', (kind, loss) => {
    const vars = model.trainableVariables();
    const { value, grads } = tf.variableGrads(() => loss(model, x), vars);
    expect(value.dataSync()[0]).toBeCloseTo(Number(readSafetensors(FIXTURE).metadata[`loss_${kind}`]), 4);
    const byVar = new Map(model.specs.map((s) => [model.params.get(s.name)!.name, s]));
    let checked = 0;
    for (const [vname, g] of Object.entries(grads)) {
      const spec = byVar.get(vname)!;
      const want = ref.get(`${kind}.${spec.name}`)!;
      const got = tf.tidy(() => toTorch(g, spec));
      expect(got.shape).toEqual(want.shape);
      // Gradients reach 1e1 in places; float32 through two blocks keeps ~1e-5 relative accuracy.
      expectAllClose(got.dataSync(), want.data as Float32Array, 1e-4, 1e-3, `d${kind}/d${spec.name}`);
      got.dispose();
      checked++;
    }
    tf.dispose([value, ...Object.values(grads)]);
    // The ICE loss does not reach norm/head (the trainer gives them zeros); the CLS loss does not reach mlp_head.
    expect(checked).toBe(kind === 'ice' ? model.specs.length - 4 : model.specs.length - 1);
  });
});
