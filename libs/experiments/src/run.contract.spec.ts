import { ICE_LOSS_PRESETS, IceError, iceLossConfigIssues } from '@ice/core';
import { loadMnistSource } from '@ice/datasets';
import { parseRunConfig, progressSeries, progressSnapshot, RUN_ICE_HEADS, runLossConfig, type RunProgress } from './run.contract';
import { epochsSeen, openRunData, TRAIN_CANVASES_PER_DIGIT } from './run-data';
import { trainConfigFor } from './run-executor';

describe('the run contract', () => {
  it("takes its enums and defaults from @ice/core's", () => {
    const c = parseRunConfig({});
    expect(c.loss).toEqual({
      variant: 'official',
      alpha: ICE_LOSS_PRESETS.official.alpha,
      lambdaClass: ICE_LOSS_PRESETS.official.lambdaClass,
      // Not the released code's (none): the warm-up under which its λ_class gives object maps on digits.
      lambdaWarmup: { from: 0.65, fraction: 0.6 },
    });
    expect(RUN_ICE_HEADS).toEqual(['official', 'icef', 'paper']);
    expect(() => parseRunConfig({ model: { head: 'none' } })).toThrow(/model\.head/);
    expect(() => parseRunConfig({ mode: 'pretrain' })).toThrow(/mode/);
    expect(() => parseRunConfig({ loss: { variant: 'pytorch' } })).toThrow(/loss\.variant/);
  });

  it("states the α/λ_class/gate ranges once (core's), naming every offending field", () => {
    let err: unknown;
    try {
      parseRunConfig({ loss: { alpha: 0, lambdaClass: 1.5, gateThreshold: -1 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IceError);
    expect((err as IceError).code).toBe('CONFIG_INVALID');
    const message = (err as IceError).message;
    for (const i of iceLossConfigIssues({ variant: 'official', alpha: 0, lambdaClass: 1.5, gateThreshold: -1 }))
      expect(message).toContain(`loss.${i.field}: ${i.field} must be ${i.rule}`);
    // The official loss divides by λ; the paper's does not.
    expect(() => parseRunConfig({ loss: { lambdaClass: 0 } })).toThrow(
      /loss\.lambdaClass: lambdaClass must be in \(0, 1\] for the official variant/,
    );
    expect(parseRunConfig({ loss: { variant: 'paper', lambdaClass: 0 } }).loss.lambdaClass).toBe(0);
  });

  it('takes a warm-up of λ_class, checked like λ_class and named by its field', () => {
    const c = parseRunConfig({ loss: { lambdaClass: 0.975, lambdaWarmup: { from: 0.8, steps: 200 } } });
    expect(trainConfigFor(c).lambdaWarmup).toEqual({ from: 0.8, steps: 200 });
    expect(() => parseRunConfig({ loss: { lambdaWarmup: { from: 0, steps: 10 } } })).toThrow(
      /loss\.lambdaWarmup\.from: lambdaWarmup\.from must be in \(0, 1\]/,
    );
    expect(() => parseRunConfig({ loss: { lambdaWarmup: { from: 0.5, steps: -1 } } })).toThrow(/loss\.lambdaWarmup\.steps/);
    expect(() => parseRunConfig({ loss: { lambdaWarmup: { from: 0.5 } } })).toThrow(/exactly one of steps and fraction/);
    expect(() => parseRunConfig({ loss: { lambdaWarmup: { from: 0.5, steps: 3, fraction: 0.5 } } })).toThrow(/exactly one/);
    expect(() => parseRunConfig({ loss: { lambdaWarmup: { from: 0.5, fraction: 1.5 } } })).toThrow(/loss\.lambdaWarmup\.fraction/);
  });

  it('warms λ_class up over a share of the run when asked, only where that strengthens the background term', () => {
    // The default: from 0.65 over the first 60 % of the run; null is the released code's (none).
    expect(trainConfigFor(parseRunConfig({ steps: 500 })).lambdaWarmup).toEqual({ from: 0.65, steps: 300 });
    expect(trainConfigFor(parseRunConfig({ steps: 500, loss: { lambdaWarmup: null } })).lambdaWarmup).toBeNull();
    expect(trainConfigFor(parseRunConfig({ steps: 500, loss: { lambdaWarmup: { from: 0.8, fraction: 0.6 } } })).lambdaWarmup).toEqual({
      from: 0.8,
      steps: 300,
    });
    expect(trainConfigFor(parseRunConfig({ steps: 500, loss: { lambdaWarmup: { from: 0.7, fraction: 0.5 } } })).lambdaWarmup).toEqual({
      from: 0.7,
      steps: 250,
    });
    // λ_class at or below `from`, classification, an explicit null or a zero-length warm-up: none.
    expect(
      trainConfigFor(parseRunConfig({ loss: { lambdaClass: 0.5, lambdaWarmup: { from: 0.8, fraction: 0.6 } } })).lambdaWarmup,
    ).toBeNull();
    expect(
      trainConfigFor(parseRunConfig({ loss: { lambdaClass: 0.8, lambdaWarmup: { from: 0.8, fraction: 0.6 } } })).lambdaWarmup,
    ).toBeNull();
    expect(
      trainConfigFor(parseRunConfig({ mode: 'classify', loss: { lambdaWarmup: { from: 0.8, fraction: 0.6 } } })).lambdaWarmup,
    ).toBeNull();
    expect(trainConfigFor(parseRunConfig({ loss: { lambdaWarmup: null } })).lambdaWarmup).toBeNull();
    expect(trainConfigFor(parseRunConfig({ steps: 1, loss: { lambdaWarmup: { from: 0.8, fraction: 0.4 } } })).lambdaWarmup).toBeNull();
  });

  it("gates the background loss with the variant's preset unless the run sets a threshold", () => {
    expect(runLossConfig(parseRunConfig({}).loss).gateThreshold).toBe(ICE_LOSS_PRESETS.official.gateThreshold);
    expect(runLossConfig(parseRunConfig({ loss: { variant: 'paper' } }).loss).gateThreshold).toBe(ICE_LOSS_PRESETS.paper.gateThreshold);
    expect(runLossConfig(parseRunConfig({ loss: { gateThreshold: 0.3 } }).loss).gateThreshold).toBe(0.3);
    expect(trainConfigFor(parseRunConfig({ loss: { variant: 'paper', alpha: 1 } })).loss).toEqual({
      variant: 'paper',
      alpha: 1,
      lambdaClass: ICE_LOSS_PRESETS.official.lambdaClass,
      gateThreshold: 0,
    });
  });

  it('keeps the progress series names and the row snapshot beside RunProgress', () => {
    const p: RunProgress = {
      step: 3,
      totalSteps: 9,
      epoch: 0.5,
      loss: 1,
      lIce: 0.7,
      lBg: 0.2,
      clsPer: 0.4,
      lr: 1e-3,
      imgPerSec: 80,
      etaSeconds: 6,
    };
    expect(progressSeries(p)).toEqual({ loss: 1, lr: 1e-3, img_per_sec: 80, l_ice: 0.7, l_bg: 0.2, cls_per: 0.4 });
    expect(progressSeries({ ...p, lIce: undefined, lBg: undefined, clsPer: undefined })).toEqual({ loss: 1, lr: 1e-3, img_per_sec: 80 });
    const at = new Date('2024-01-02T03:04:05Z');
    expect(progressSnapshot(p, at)).toEqual({
      step: 3,
      totalSteps: 9,
      epoch: 0.5,
      loss: 1,
      imgPerSec: 80,
      etaSeconds: 6,
      lr: 1e-3,
      at: '2024-01-02T03:04:05.000Z',
    });
  });

  it("counts epochs in the run's own training stream, not in a fixed 60,000 images", () => {
    const canvases = TRAIN_CANVASES_PER_DIGIT * loadMnistSource().refs('train').length; // 160,120
    const one = openRunData(parseRunConfig({ data: { batchSize: 16 } }), 32);
    expect(one.train.length).toBe(canvases);
    expect(one.batchesPerEpoch).toBe(Math.floor(canvases / 16));
    expect(epochsSeen(one.batchesPerEpoch, 1, one.batchesPerEpoch)).toBe(1);
    // Two ranks each take half of every batch; accumulation counts micro-batches.
    const two = openRunData(parseRunConfig({ data: { batchSize: 16 }, worldSize: 2, optimizer: { accumSteps: 2 } }), 32);
    expect(two.batchesPerEpoch).toBe(Math.floor(canvases / 2 / 16));
    const step = 2500;
    expect(epochsSeen(step, 2, two.batchesPerEpoch)).toBeCloseTo((step * 2 * 16 * 2) / canvases, 3);
    // What the worker used to report for the same step: about 2.7 times too many epochs.
    expect((step * 2 * 16 * 2) / 60_000 / epochsSeen(step, 2, two.batchesPerEpoch)).toBeCloseTo(canvases / 60_000, 2);
  });
});
