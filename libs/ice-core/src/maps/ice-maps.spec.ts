import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import { initBackend } from '../backend/tf-backend.service';
import { vitConfig } from '../model/vit.config';
import { IceVit } from '../model/vit.model';
import { expectAllClose, flat, goldenPath } from '../testing/golden.testing';
import { readSafetensors } from '../weights/safetensors';
import { classScoreMap, foregroundMask, iceMaps, upsampleMap } from './ice-maps';

describe('ICE maps against golden-explain', () => {
  let explain: ReturnType<typeof readSafetensors>['tensors'];
  let io: ReturnType<typeof readSafetensors>['tensors'];
  let json: Record<string, unknown>;
  beforeAll(async () => {
    await initBackend('wasm');
    explain = readSafetensors(goldenPath('golden-explain.safetensors')).tensors;
    io = readSafetensors(goldenPath('golden-micro-io.safetensors')).tensors;
    json = JSON.parse(fs.readFileSync(goldenPath('golden-explain.json'), 'utf8')) as Record<string, unknown>;
  });
  const data = (name: string, from = explain): Float32Array => from.get(name)!.data as Float32Array;

  it('foreground mask and class score map from z_official', () => {
    const z = tf.tensor3d(data('z_official', io), [2, 16, 11]);
    const fg = foregroundMask(z);
    expect(Array.from(fg.dataSync())).toEqual(flat(json.ice_fg_mask));
    const score = classScoreMap(z, flat(json.target_class));
    expectAllClose(score.dataSync(), flat(json.ice_class_score), 1e-6, 0, 'ice_class_score');
    tf.dispose([z, fg, score]);
  });

  it('nearest ×8 of the mask and bilinear ×8 (half-pixel centres) of rollout', () => {
    const mask = tf.tensor3d(flat(json.ice_fg_mask), [2, 4, 4]);
    const up = upsampleMap(mask, [32, 32], 'nearest');
    expect(Array.from(up.dataSync())).toEqual(Array.from(data('ice_fg_mask.up32')));
    const roll = tf.tensor3d(data('rollout.s0'), [2, 4, 4]);
    const bil = upsampleMap(roll, [32, 32], 'bilinear');
    expectAllClose(bil.dataSync(), data('rollout.s0.up32'), 1e-6, 1e-5, 'rollout.s0.up32');
    tf.dispose([mask, up, roll, bil]);
  });

  it('bilinear ×16 of [0, 1] gives the protocol notes’ values', () => {
    const m = tf.tensor3d([0, 1], [1, 1, 2]);
    const up = upsampleMap(m, [1, 32], 'bilinear').dataSync();
    expect(up[7]).toBe(0);
    expect(up[8]).toBeCloseTo(0.03125, 7);
    expect(up[23]).toBeCloseTo(0.96875, 7);
    expect(up[24]).toBe(1);
    m.dispose();
  });

  it('iceMaps runs the model once and targets the top-1 class', () => {
    const model = IceVit.create(vitConfig('golden-micro'));
    model.loadStateDict(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    const x = tf.tensor4d(data('input', io), [2, 3, 32, 32]);
    const before = tf.memory().numTensors;
    const maps = iceMaps(model, x);
    expect(maps.classes).toEqual([1, 7]);
    expect(maps.foreground.shape).toEqual([2, 32, 32]);
    expect(Array.from(maps.foreground.dataSync())).toEqual(Array.from(data('ice_fg_mask.up32')));
    tf.dispose([maps.foreground, maps.classScore]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    model.dispose();
  });
});
