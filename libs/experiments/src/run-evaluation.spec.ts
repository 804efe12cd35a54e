import { IceVit, vitConfig } from '@ice/core';
import { DigitsDataset } from '@ice/datasets';
import { parseRunConfig } from './run.contract';
import { evaluateRun } from './run-evaluation';

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
