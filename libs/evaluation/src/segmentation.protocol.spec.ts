import { join } from 'node:path';
import { EXPLAINER_NAMES, initBackend } from '@ice/core';
import { runEvaluation } from './evaluation.runner';
import type { MethodMap } from './explain.runner';
import type { ProtocolSettings } from './protocol.types';
import type { PreparedSample } from './sample-prep.util';
import { segmentationPixelMap, segmentationProtocol } from './segmentation.protocol';
import {
  gridMap,
  makeTempDir,
  preparedSample,
  protocolSettings,
  type SceneSpec,
  writeImageNetSeg,
  writeTinyModel,
} from './testing/eval-fixtures.testing';

const settings = (size: number, patch: number): ProtocolSettings => protocolSettings(size, patch);
const map = (method: MethodMap['method'], grid: number[], g: number): MethodMap => gridMap(method, grid, g);
const prep = (mask: number[], size: number): PreparedSample => preparedSample(size, { mask: Uint8Array.from(mask) });

beforeAll(() => initBackend());

describe('segmentation protocol: exact cases', () => {
  it('scores golden image A and B through the protocol (maps at pixel size: bilinear ×1 is the identity)', () => {
    const sA = segmentationProtocol(settings(2, 1)).scorer('raw-attention');
    sA.add(prep([0, 1, 0, 1], 2), map('raw-attention', [0.1, 0.9, 0.5, 0.3], 2));
    expect(sA.result().pixAcc).toBeCloseTo(0.5, 12);
    expect(sA.result().mAP).toBeCloseTo(0.8166666666666667, 12);

    const sB = segmentationProtocol(settings(3, 1)).scorer('rollout');
    sB.add(prep([0, 0, 0, 0, 1, 1, 0, 1, 1], 3), map('rollout', [0, 0, 0, 0, 1, 0, 0, 0, 0], 3));
    sB.add(prep([0, 0, 0, 0, 1, 1, 0, 1, 1], 3), map('rollout', [0, 0, 0, 0, 1, 0, 0, 0, 0], 3));
    const r = sB.result(); // image B twice: pooled counts double, ratios unchanged
    expect(r.pixAcc).toBeCloseTo(6 / 9, 12);
    expect(r.iouBg).toBeCloseTo(0.625, 12);
    expect(r.iouFg).toBeCloseTo(0.25, 12);
    expect(r.mIoU).toBeCloseTo(0.4375, 12);
    expect(r.mAP).toBeCloseTo(0.6111111111111112, 12);
  });

  it("upsamples ICE's mask by block repetition and a score map bilinearly", () => {
    // 2×2 grid, 2×2 patches: mask [[1,0],[0,0]] covers exactly the top-left quarter.
    const gt = [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const ice = segmentationProtocol(settings(4, 2)).scorer('ice');
    ice.add(prep(gt, 4), map('ice', [1, 0, 0, 0], 2));
    expect(ice.result()).toMatchObject({ pixAcc: expect.closeTo(1, 12), mIoU: expect.closeTo(1, 12), mAP: expect.closeTo(1, 12) });
    // The same grid as a score map: half-pixel bilinear gives 1, .75, .25, 0 along each axis.
    const px = segmentationPixelMap(map('gradcam', [1, 0, 0, 0], 2), settings(4, 2));
    const axis = [1, 0.75, 0.25, 0];
    expect(Array.from(px)).toEqual(axis.flatMap((a) => axis.map((b) => a * b)));
    expect(Array.from(segmentationPixelMap(map('ice', [1, 0, 0, 0], 2), settings(4, 2)))).toEqual(gt);
  });

  it('scores a constant map as all background (the reference NaN rule)', () => {
    const s = segmentationProtocol(settings(2, 1)).scorer('ice');
    s.add(prep([0, 1, 1, 0], 2), map('ice', [1, 1, 1, 1], 2));
    expect(s.result()).toMatchObject({ pixAcc: expect.closeTo(0.5, 12), iouFg: 0, mAP: expect.closeTo(0.5, 12) });
  });
});

describe('segmentation protocol on an ImageNet-Segmentation .mat file', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());
  // Two objects of different sizes on non-square images (resized to 32² by the protocol).
  const scenes: SceneSpec[] = [
    { height: 40, width: 48, objects: [{ box: [8, 6, 31, 29] }] },
    { height: 36, width: 30, objects: [{ box: [0, 0, 14, 17] }] },
    { height: 32, width: 32, objects: [{ box: [16, 16, 31, 31] }], background: [200, 30, 30] },
  ];

  it('gives one row per method with the protocol columns and sane values', async () => {
    const weights = join(tmp.dir, 'tiny.safetensors');
    await writeTinyModel(weights);
    await writeImageNetSeg(join(tmp.dir, 'gtsegs_ijcv.mat'), scenes);
    const r = await runEvaluation({
      protocol: 'segmentation',
      format: 'imagenet-seg',
      root: tmp.dir,
      weights,
      modelSpec: 'digits-micro',
      methods: [...EXPLAINER_NAMES],
    });
    expect(r.columns).toEqual(['pixAcc', 'mIoU', 'mAP', 'iouBg', 'iouFg']);
    expect(r.dataset).toEqual({ name: 'imagenet-seg', split: 'test', images: 3 });
    expect(r.rows.map((row) => row.method)).toEqual(EXPLAINER_NAMES);
    expect(r.rows[0].label).toBe('ice [official head]');
    for (const row of r.rows) {
      expect(Object.keys(row.metrics)).toEqual(r.columns);
      for (const c of r.columns) expect(row.metrics[c]).toBeGreaterThanOrEqual(0);
      for (const c of r.columns) expect(row.metrics[c]).toBeLessThanOrEqual(1);
      expect(row.metrics.mIoU).toBeCloseTo(((row.metrics.iouBg ?? 0) + (row.metrics.iouFg ?? 0)) / 2, 12);
      expect(row.images).toBe(3);
      expect(row.imagesPerSecond).toBeGreaterThan(0);
    }
    expect(r.conventions.join('\n')).toMatch(/mean = std = 0\.5/);
    expect(r.conventions.join('\n')).toMatch(/rollout and transformer attribution start at block 1/);
  });

  it('is exact for an all-foreground ICE mask (constant → all background) and names the ImageNet option', async () => {
    const weights = join(tmp.dir, 'zero-head.safetensors');
    await writeTinyModel(weights, { zeroIceHead: true });
    await writeImageNetSeg(join(tmp.dir, 'b', 'gtsegs_ijcv.mat'), scenes.slice(2));
    const r = await runEvaluation({
      protocol: 'segmentation',
      format: 'imagenet-seg',
      root: join(tmp.dir, 'b'),
      weights,
      modelSpec: 'digits-micro',
      methods: ['ice'],
      normalization: 'imagenet',
    });
    // Scene 3 at 32²: the object is the bottom-right quarter; all background → 3/4 correct.
    expect(r.rows[0].metrics).toMatchObject({
      pixAcc: expect.closeTo(0.75, 9),
      iouBg: expect.closeTo(0.75, 9),
      iouFg: 0,
      mAP: expect.closeTo(0.5, 12),
    });
    expect(r.conventions.join('\n')).toMatch(/ImageNet mean\/std \(the paper/);
  });
});
