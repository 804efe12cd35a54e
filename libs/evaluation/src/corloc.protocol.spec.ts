import { join } from 'node:path';
import { EXPLAINER_NAMES, initBackend } from '@ice/core';
import { continuousBox, corlocBox, corlocProtocol } from './corloc.protocol';
import { runEvaluation } from './evaluation.runner';
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

describe('corloc protocol: exact cases', () => {
  // Components (4-connected): {(0,0),(0,1)}, {(1,3),(2,3),(3,3)}, {(3,0)} → the second is the largest.
  const mask = Uint8Array.from([1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1]);

  it('boxes the largest 4-connected component as [min, max + 1]·p, mapped to the original frame', () => {
    expect(corlocBox(mask, 4, 8, 32, 32, 32)).toEqual([24, 8, 32, 32]);
    // A 64 wide × 48 high original: ×2 horizontally, ×1.5 vertically.
    expect(corlocBox(mask, 4, 8, 32, 48, 64)).toEqual([48, 12, 64, 48]);
    // Diagonal neighbours are separate components under 4-connectivity: the first one wins the tie.
    expect(corlocBox(Uint8Array.from([1, 0, 0, 1]), 2, 8, 16, 16, 16)).toEqual([0, 0, 8, 8]);
    expect(corlocBox(new Uint8Array(4), 2, 8, 16, 16, 16)).toBeNull();
    expect(continuousBox([47, 11, 63, 47])).toEqual([47, 11, 64, 48]);
  });

  it('counts a hit at IoU ≥ 0.5 with any ground-truth box (continuous IoU), and an empty mask as a miss', () => {
    const s = corlocProtocol(protocolSettings(32, 8)).scorer('ice');
    // Box [48, 12, 64, 48]; GT inclusive [48, 12, 63, 47] → continuous [48, 12, 64, 48]: IoU 1.
    s.add(
      preparedSample(32, {
        height: 48,
        width: 64,
        boxes: [
          [0, 0, 3, 3],
          [48, 12, 63, 47],
        ],
      }),
      gridMap('ice', Array.from(mask), 4),
    );
    // Box [0, 0, 8, 8] (area 64) against [0, 0, 16, 8) (area 128): continuous IoU exactly 0.5 → a hit.
    s.add(preparedSample(32, { boxes: [[0, 0, 15, 7]] }), gridMap('ice', [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4));
    // Inclusive IoU would be 81/153 here; continuous 64/128. Against [0, 0, 16, 9): 64/144 < 0.5 → a miss.
    s.add(preparedSample(32, { boxes: [[0, 0, 15, 8]] }), gridMap('ice', [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4));
    s.add(preparedSample(32, { boxes: [[0, 0, 5, 5]] }), gridMap('ice', new Array<number>(16).fill(0), 4));
    s.add(preparedSample(32, { boxes: [] }), gridMap('ice', new Array<number>(16).fill(1), 4));
    expect(s.result()).toEqual({ corloc: 2 / 4, hits: 2, noBox: 1, skipped: 1 });
  });

  it('turns a continuous map into a mask by attention mass (default τ = 0.6) or by the mean', () => {
    // Mass .6 of [.5, .3, .15, .05]: cumulative ascending .05, .2, .5, 1 → keep .3 and .5 (patches 0, 1).
    const grid = [0.5, 0.3, 0.15, 0.05];
    const gt = { boxes: [[0, 0, 15, 7]] as [number, number, number, number][] };
    const mass = corlocProtocol(protocolSettings(16, 8)).scorer('rollout');
    mass.add(preparedSample(16, gt), gridMap('rollout', grid, 2));
    expect(mass.result().corloc).toBe(1);
    // Mean rule: min-max → [1, .5556, .2222, 0], mean .4444 → patches 0, 1 as well.
    const mean = corlocProtocol(protocolSettings(16, 8, { corlocMask: 'mean' })).scorer('rollout');
    mean.add(preparedSample(16, gt), gridMap('rollout', grid, 2));
    expect(mean.result().corloc).toBe(1);
    expect(
      corlocProtocol(protocolSettings(16, 8, { corlocMask: 'mean' }))
        .conventions()
        .join('\n'),
    ).toMatch(/thresholded at their mean/);
  });
});

describe('corloc protocol on a VOC-layout data set (detection lists, XML boxes)', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());
  const scenes: SceneSpec[] = [
    // Whole-image box vs [0, 0, 48, 30) of 48×40: IoU 1440/1920 = 0.75 → hit.
    { height: 40, width: 48, objects: [{ box: [0, 0, 47, 29] }] },
    // [5, 5, 15, 15) of 40×50: IoU 100/2000 → miss.
    { height: 50, width: 40, objects: [{ box: [5, 5, 14, 14] }] },
    // Two objects, the second large enough: hit with any ground-truth box.
    { height: 32, width: 32, objects: [{ box: [0, 0, 3, 3], label: 2 }, { box: [0, 0, 31, 20] }] },
  ];

  it('gives one row per method with sane values, and is exact for a whole-image ICE box', async () => {
    const weights = join(tmp.dir, 'zero.safetensors');
    await writeTinyModel(weights, { zeroIceHead: true });
    await writeVoc(join(tmp.dir, 'voc'), scenes, 'trainval');
    const r = await runEvaluation({
      protocol: 'corloc',
      format: 'voc',
      root: join(tmp.dir, 'voc'),
      weights,
      modelSpec: 'digits-micro',
      methods: [...EXPLAINER_NAMES],
    });
    expect(r.columns).toEqual(['corloc', 'hits', 'noBox', 'skipped']);
    expect(r.dataset).toEqual({ name: 'voc', split: 'trainval', images: 3 });
    for (const row of r.rows) {
      expect(Object.keys(row.metrics)).toEqual(r.columns);
      expect(row.metrics.corloc).toBeGreaterThanOrEqual(0);
      expect(row.metrics.corloc).toBeLessThanOrEqual(1);
      expect(row.metrics.corloc).toBeCloseTo((row.metrics.hits ?? NaN) / 3, 12);
    }
    expect(r.rows[0].metrics).toEqual({ corloc: 2 / 3, hits: 2, noBox: 0, skipped: 0 });
    const text = r.conventions.join('\n');
    expect(text).toMatch(/largest 4-connected component/);
    expect(text).toMatch(/IoU in continuous coordinates/);
    expect(text).toMatch(/IoU ≥ 0\.5 with any ground-truth box/);
  });
});
