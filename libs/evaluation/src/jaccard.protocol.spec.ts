import { join } from 'node:path';
import { EXPLAINER_NAMES, initBackend } from '@ice/core';
import { requestedImgSize, runEvaluation } from './evaluation.runner';
import { jaccardProtocol } from './jaccard.protocol';
import {
  gridMap,
  makeTempDir,
  preparedSample,
  protocolSettings,
  type SceneSpec,
  writeTinyModel,
  writeVoc,
} from './testing/eval-fixtures.testing';

beforeAll(() => initBackend());

describe('jaccard protocol: exact cases', () => {
  // The golden case: pred {(0,0),(0,1),(2,0)}, target [[1,1,1],[0,0,2],[255,255,2]].
  const target = Uint8Array.from([1, 1, 1, 0, 0, 2, 255, 255, 2]);
  const pred = [1, 1, 0, 0, 0, 0, 1, 0, 0];

  it("scores ICE's mask as is, void counted in the union by default (0.25) and excluded on request (1/3)", () => {
    const counted = jaccardProtocol(protocolSettings(3, 1)).scorer('ice');
    counted.add(preparedSample(3, { segmentation: target }), gridMap('ice', pred, 3));
    expect(counted.result()).toEqual({ jaccard: 0.25, 'jaccard@0.9': null, 'jaccard@0.8': null, 'jaccard@0.6': null, skipped: 0 });
    const excluded = jaccardProtocol(protocolSettings(3, 1, { excludeVoid: true })).scorer('ice');
    excluded.add(preparedSample(3, { segmentation: target }), gridMap('ice', pred, 3));
    expect(excluded.result().jaccard).toBeCloseTo(1 / 3, 12);
  });

  it('thresholds attention maps by mass at each τ, and takes the best head per class', () => {
    const mask = Uint8Array.from([1, 1, 0, 0]); // binary mask: one object class
    // Sorted ascending .05, .1, .3, .55 → cumulative .05, .15, .45, 1: τ=.9 keeps 3 patches, τ=.8 and .6 keep 2.
    const mean = jaccardProtocol(protocolSettings(2, 1)).scorer('rollout');
    mean.add(preparedSample(2, { mask }), gridMap('rollout', [0.55, 0.3, 0.1, 0.05], 2));
    expect(mean.result()).toEqual({ jaccard: null, 'jaccard@0.9': 2 / 3, 'jaccard@0.8': 1, 'jaccard@0.6': 1, skipped: 0 });

    // Two heads: head 0 looks only at patch 3 (J = 0); head 1 is the map above: the best head wins.
    const heads = [
      [0, 0, 0, 1],
      [0.55, 0.3, 0.1, 0.05],
    ];
    const perHead = jaccardProtocol(protocolSettings(2, 1, { taus: [0.9] })).scorer('raw-attention');
    perHead.add(preparedSample(2, { mask }), gridMap('raw-attention', [0.275, 0.15, 0.05, 0.525], 2, heads));
    expect(perHead.result()['jaccard@0.9']).toBeCloseTo(2 / 3, 12);
    // The head mean as one map keeps patches 0, 1, 3: J = 2/3 as well, but through another mask.
    const p = jaccardProtocol(protocolSettings(2, 1, { taus: [0.9], jaccardHeads: 'mean' }));
    expect(p.perHead('raw-attention')).toBe(false);
    expect(jaccardProtocol(protocolSettings(2, 1)).perHead('raw-attention')).toBe(true);
  });

  it('counts images without an object label as skipped', () => {
    const s = jaccardProtocol(protocolSettings(2, 1)).scorer('ice');
    s.add(preparedSample(2, { segmentation: Uint8Array.from([0, 0, 255, 0]) }), gridMap('ice', [1, 0, 0, 0], 2));
    expect(s.result()).toMatchObject({ jaccard: null, skipped: 1 });
  });
});

describe('jaccard protocol on a VOC-layout data set', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());
  // 32² scenes (no resize at S = 32): class 1 (256 px), class 2 (128 px), a void band (256 px).
  const exact: SceneSpec = {
    height: 32,
    width: 32,
    objects: [
      { box: [0, 0, 15, 15], label: 1 },
      { box: [16, 16, 31, 23], label: 2, rgb: [20, 220, 90] },
    ],
    voids: [[0, 24, 31, 31]],
  };
  const scenes: SceneSpec[] = [exact, { height: 50, width: 40, objects: [{ box: [5, 10, 30, 40], label: 3 }] }];

  it('gives one row per method: ICE in the mask column, the other maps in the τ columns', async () => {
    const weights = join(tmp.dir, 'tiny.safetensors');
    await writeTinyModel(weights);
    await writeVoc(join(tmp.dir, 'voc'), scenes);
    const r = await runEvaluation({
      protocol: 'jaccard',
      format: 'voc',
      root: join(tmp.dir, 'voc'),
      weights,
      modelSpec: 'digits-micro',
      imgSize: 32,
      methods: [...EXPLAINER_NAMES],
    });
    expect(r.columns).toEqual(['jaccard', 'jaccard@0.9', 'jaccard@0.8', 'jaccard@0.6', 'skipped']);
    expect(r.dataset).toEqual({ name: 'voc', split: 'val', images: 2 });
    for (const row of r.rows) {
      expect(Object.keys(row.metrics)).toEqual(r.columns);
      expect(row.metrics.skipped).toBe(0);
      const values = row.method === 'ice' ? [row.metrics.jaccard] : r.columns.slice(1, 4).map((c) => row.metrics[c]);
      for (const v of values) {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
      if (row.method === 'ice') expect(row.metrics['jaccard@0.9']).toBeNull();
      else expect(row.metrics.jaccard).toBeNull();
      expect(row.images).toBe(2);
    }
    expect(r.conventions.join('\n')).toMatch(/void \(255\) pixels count in the unions/);
    expect(r.conventions.join('\n')).toMatch(/ImageNet mean\/std/);
  });

  it('is exact for an all-foreground ICE mask, with and without void pixels', async () => {
    const weights = join(tmp.dir, 'zero.safetensors');
    await writeTinyModel(weights, { zeroIceHead: true });
    await writeVoc(join(tmp.dir, 'voc1'), [exact]);
    const base = {
      protocol: 'jaccard' as const,
      format: 'voc' as const,
      root: join(tmp.dir, 'voc1'),
      weights,
      modelSpec: 'digits-micro',
      imgSize: 32,
      methods: ['ice' as const],
    };
    // J_1 = 256/1024, J_2 = 128/1024 → 0.1875; without void: 256/768, 128/768 → 0.25.
    expect((await runEvaluation(base)).rows[0].metrics.jaccard).toBeCloseTo(0.1875, 12);
    const noVoid = await runEvaluation({ ...base, excludeVoid: true });
    expect(noVoid.rows[0].metrics.jaccard).toBeCloseTo(0.25, 12);
    expect(noVoid.conventions.join('\n')).toMatch(/void \(255\) pixels excluded/);
  });

  it("asks for VOC at 512² by default (Intriguing's size; the loader resamples the position embedding)", () => {
    expect(requestedImgSize('jaccard', 'voc')).toBe(512);
    expect(requestedImgSize('jaccard', 'voc', 224)).toBe(224);
    expect(requestedImgSize('jaccard', 'digits')).toBeUndefined();
    expect(requestedImgSize('segmentation', 'voc')).toBeUndefined();
  });

  it('scales VOC for models trained at other sizes as the reference scales 224² ViTs (×512/224, to the patch)', () => {
    expect(requestedImgSize('jaccard', 'voc', undefined, { imgSize: 224, patchSize: 16 })).toBe(512);
    expect(requestedImgSize('jaccard', 'voc', undefined, { imgSize: 224, patchSize: 8 })).toBe(512);
    expect(requestedImgSize('jaccard', 'voc', undefined, { imgSize: 32, patchSize: 8 })).toBe(72);
    expect(requestedImgSize('jaccard', 'voc', undefined, { imgSize: 64, patchSize: 8 })).toBe(144);
    expect(requestedImgSize('jaccard', 'voc', 96, { imgSize: 64, patchSize: 8 })).toBe(96);
  });
});
