import { join } from 'node:path';
import { EXPLAINER_NAMES, IceError, initBackend } from '@ice/core';
import { runEvaluation } from './evaluation.runner';
import { localizationProtocol, tscamGtBoxes } from './localization.protocol';
import {
  type CubSpec,
  gridMap,
  makeTempDir,
  preparedSample,
  protocolSettings,
  writeCub,
  writeTinyModel,
} from './testing/eval-fixtures.testing';

beforeAll(() => initBackend());

describe('localization protocol: exact cases', () => {
  it("scales ground-truth boxes as TS-CAM's cub.py (int x, y, w, h; right = x + w, clipped to S − 1)", () => {
    expect(tscamGtBoxes(preparedSample(32, { height: 48, width: 64, bboxXywh: [10.7, 20.2, 30.9, 15.5] }))).toEqual([[5, 13, 20, 23]]);
    expect(tscamGtBoxes(preparedSample(32, { height: 48, width: 64, bboxXywh: [0, 0, 64, 48] }))).toEqual([[0, 0, 31, 31]]);
    // Other data sets' inclusive boxes: w = x1 − x0 + 1.
    expect(tscamGtBoxes(preparedSample(32, { boxes: [[8, 4, 23, 19]] }))).toEqual([[8, 4, 24, 20]]);
  });

  // S = 4, p = 1: the mask covers x 0..1, y 0..2 → TS-CAM box [0, 0, 2, 3] (12 px inclusive);
  // GT [0, 0, 2, 1] (6 px) lies inside it: inclusive IoU exactly 0.5.
  const mask = [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0];
  const sample = (top1: number) => preparedSample(4, { label: 3, top1, bboxXywh: [0, 0, 2, 1] });

  it('GT-known needs IoU ≥ 0.5, Top-1 Loc IoU > 0.5 strictly (TS-CAM) unless asked otherwise', () => {
    const strict = localizationProtocol(protocolSettings(4, 1), 10).scorer('ice');
    strict.add(sample(3), gridMap('ice', mask, 4));
    strict.add(sample(5), gridMap('ice', mask, 4));
    expect(strict.result()).toEqual({ top1Cls: 0.5, gtKnownLoc: 1, top1Loc: 0, 'maxBoxAcc@0.5': 1, 'maxBoxAccTau@0.5': 0 });
    const loose = localizationProtocol(protocolSettings(4, 1, { strictTop1: false }), 10).scorer('ice');
    loose.add(sample(3), gridMap('ice', mask, 4));
    loose.add(sample(5), gridMap('ice', mask, 4));
    expect(loose.result()).toMatchObject({ top1Cls: 0.5, gtKnownLoc: 1, top1Loc: 0.5 });
  });

  it('sweeps the CAM threshold for MaxBoxAcc on a continuous map', () => {
    // A ramp over a 4×4 grid (S = 4): low thresholds box everything, high ones only the corner.
    const ramp = [1, 0.9, 0.2, 0.1, 0.9, 0.8, 0.1, 0, 0.2, 0.1, 0, 0, 0.1, 0, 0, 0];
    const s = localizationProtocol(
      protocolSettings(4, 1, { maxBoxAccIous: [0.5, 0.7], maxBoxAccThresholds: [0, 0.25, 0.5, 0.75] }),
      10,
    ).scorer('gradcam');
    // GT [0, 0, 2, 2] (TS-CAM's x + w). τ = 0 boxes [0, 0, 3, 3] (clipped to S − 1): IoU 9/16;
    // τ = .25 keeps the four values > .25: box [0, 0, 2, 2], IoU 1.
    s.add(preparedSample(4, { label: 0, top1: 0, boxes: [[0, 0, 1, 1]] }), gridMap('gradcam', ramp, 4));
    expect(s.result()).toMatchObject({ 'maxBoxAcc@0.5': 1, 'maxBoxAccTau@0.5': 0, 'maxBoxAcc@0.7': 1, 'maxBoxAccTau@0.7': 0.25 });
  });

  it('asks for a label and a box', () => {
    const p = localizationProtocol(protocolSettings(4, 1), 10);
    expect(() => p.check(preparedSample(4, { label: -1, boxes: [[0, 0, 1, 1]] }))).toThrow(IceError);
    expect(() => p.check(preparedSample(4, { label: 2 }))).toThrow(/ground-truth box/);
    expect(p.target(preparedSample(4, { label: 2 }))).toBe(2);
  });
});

describe('localization protocol on a CUB-layout data set', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());
  const scenes: CubSpec[] = [
    { height: 48, width: 64, label: 2, objects: [{ box: [0, 0, 63, 47] }] },
    { height: 60, width: 40, label: 7, objects: [{ box: [4, 6, 13, 15] }] },
  ];

  it('gives one row per method with sane values, and is exact for a whole-image ICE mask', async () => {
    const weights = join(tmp.dir, 'zero.safetensors');
    await writeTinyModel(weights, { zeroIceHead: true });
    await writeCub(join(tmp.dir, 'cub'), scenes);
    const r = await runEvaluation({
      protocol: 'localization',
      format: 'cub',
      root: join(tmp.dir, 'cub'),
      weights,
      modelSpec: 'digits-micro',
      methods: [...EXPLAINER_NAMES],
    });
    expect(r.columns).toEqual(['top1Cls', 'gtKnownLoc', 'top1Loc', 'maxBoxAcc@0.5', 'maxBoxAccTau@0.5']);
    expect(r.dataset).toEqual({ name: 'cub', split: 'test', images: 2 });
    const top1 = r.rows[0].metrics.top1Cls;
    for (const row of r.rows) {
      expect(Object.keys(row.metrics)).toEqual(r.columns);
      expect(row.metrics.top1Cls).toBe(top1); // one classifier for every method
      for (const c of r.columns) {
        expect(row.metrics[c]).toBeGreaterThanOrEqual(0);
        expect(row.metrics[c]).toBeLessThanOrEqual(1);
      }
      expect(row.metrics.top1Loc).toBeLessThanOrEqual(Math.min(row.metrics.top1Cls ?? 0, row.metrics.gtKnownLoc ?? 0));
    }
    // ICE: box [0, 0, 32, 32] vs GT [0, 0, 31, 31] → IoU 1024/1089 (hit); the small bird is missed.
    expect(r.rows[0].metrics).toMatchObject({ gtKnownLoc: 0.5, 'maxBoxAcc@0.5': 0.5 });
    const text = r.conventions.join('\n');
    expect(text).toMatch(/inclusive \(\+1\) pixel convention/);
    expect(text).toMatch(/> 0\.5 strictly/);
    expect(text).toMatch(/⌊0\.1·max⌋/);
  });

  it('rejects a data set without boxes or labels for this protocol', async () => {
    const weights = join(tmp.dir, 'zero.safetensors');
    await expect(
      runEvaluation({
        protocol: 'segmentation',
        format: 'cub',
        root: join(tmp.dir, 'cub'),
        weights,
        modelSpec: 'digits-micro',
        methods: ['ice'],
      }),
    ).rejects.toThrow(/needs a foreground mask/);
  });
});
