import { IceError } from '../errors';
import { CosineLrSchedule, CosineStepConfig, LR_SCHEDULE_PRESETS } from './lr-schedule';

const base: CosineStepConfig = { unit: 'step', baseLr: 1e-3, warmupLr: 1e-6, minLr: 1e-5, totalSteps: 100, warmupSteps: 10 };
const cosine = (t: number, T: number, lo = 1e-5, hi = 1e-3): number => lo + 0.5 * (hi - lo) * (1 + Math.cos((Math.PI * t) / T));

describe('CosineLrSchedule (timm CosineLRScheduler, t_in_epochs=False)', () => {
  it('warms up linearly from warmupLr, then follows the cosine measured from t = 0', () => {
    const s = new CosineLrSchedule(base);
    expect(s.valueAt(0)).toBe(1e-6);
    expect(s.valueAt(5)).toBeCloseTo(5.005e-4, 15);
    expect(s.valueAt(9)).toBeCloseTo(1e-6 + 9 * 0.999e-4, 15);
    // Without warmupPrefix the cosine at t = 10 is already past its peak.
    expect(s.valueAt(10)).toBeCloseTo(cosine(10, 100), 15);
    expect(s.valueAt(50)).toBeCloseTo(5.05e-4, 15);
    expect(s.valueAt(99)).toBeCloseTo(cosine(99, 100), 15);
    // One cycle (create_scheduler's cycle_limit=1), then the floor.
    expect(s.valueAt(100)).toBe(1e-5);
    expect(s.valueAt(1000)).toBe(1e-5);
    expect(s.lrForUpdate(50)).toBe(s.valueAt(50));
  });

  it('starts at baseLr without a warm-up', () => {
    const s = new CosineLrSchedule({ ...base, warmupSteps: 0 });
    expect(s.valueAt(0)).toBe(1e-3);
    expect(s.valueAt(25)).toBeCloseTo(cosine(25, 100), 15);
  });

  it('shifts the cosine by the warm-up with warmupPrefix', () => {
    const s = new CosineLrSchedule({ ...base, warmupPrefix: true });
    expect(s.valueAt(10)).toBe(1e-3);
    expect(s.valueAt(60)).toBeCloseTo(5.05e-4, 15);
    expect(s.valueAt(110)).toBe(1e-5);
  });

  it('handles restarts: unlimited (0), decay_rate, t_mul and k_decay', () => {
    expect(new CosineLrSchedule({ ...base, cycleLimit: 0 }).valueAt(150)).toBeCloseTo(5.05e-4, 15);
    // Second cycle at half height: min 5e-6, max 5e-4.
    expect(new CosineLrSchedule({ ...base, cycleLimit: 2, decayRate: 0.5 }).valueAt(150)).toBeCloseTo(2.525e-4, 15);
    expect(new CosineLrSchedule({ ...base, cycleLimit: 2, decayRate: 0.5 }).valueAt(200)).toBe(1e-5);
    // t_mul 2: the second cycle spans [100, 300); t = 150 is a quarter into it.
    expect(new CosineLrSchedule({ ...base, cycleLimit: 2, cycleMul: 2 }).valueAt(150)).toBeCloseTo(cosine(50, 200), 15);
    expect(new CosineLrSchedule({ ...base, kDecay: 2 }).valueAt(50)).toBeCloseTo(cosine(25, 100), 15);
  });

  it('steps per epoch, with the DeiT/ICE loop lag', () => {
    const ice = new CosineLrSchedule(LR_SCHEDULE_PRESETS.iceReleased);
    // The released run: 3 epochs inside a 5-epoch warm-up, scheduler.step(epoch) after each.
    expect([0, 1, 2].map((e) => ice.lrForEpoch(e))).toEqual([1e-5, 1e-5, 1e-5 + 9e-5 / 5]);
    expect(ice.lrForUpdate(99, 100)).toBe(1e-5);
    expect(ice.lrForUpdate(250, 100)).toBeCloseTo(2.8e-5, 15);
    const plain = new CosineLrSchedule({ unit: 'epoch', baseLr: 1e-3, warmupLr: 1e-6, minLr: 1e-5, totalEpochs: 30, warmupEpochs: 5 });
    expect(plain.lrForEpoch(0)).toBe(1e-6);
    expect(plain.lrForEpoch(7)).toBeCloseTo(cosine(7, 30), 15);
    expect(plain.lrForUpdate(7 * 50 + 49, 50)).toBe(plain.lrForEpoch(7));
    expect(() => plain.lrForUpdate(3)).toThrow(IceError);
    expect(() => new CosineLrSchedule(base).lrForEpoch(1)).toThrow(IceError);
  });

  it('rejects impossible configurations', () => {
    expect(() => new CosineLrSchedule({ ...base, totalSteps: 0 })).toThrow(IceError);
    expect(() => new CosineLrSchedule({ ...base, warmupSteps: -1 })).toThrow(IceError);
    expect(() => new CosineLrSchedule({ ...base, baseLr: Number.NaN })).toThrow(IceError);
    expect(() => new CosineLrSchedule({ ...base, cycleLimit: 1.5 })).toThrow(IceError);
    expect(() => new CosineLrSchedule(base).valueAt(-1)).toThrow(IceError);
  });
});
