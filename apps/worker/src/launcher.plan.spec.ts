import { planWorkers } from './launcher.plan';

describe('planWorkers', () => {
  it('starts one worker per GPU, each pinned to its device', () => {
    expect(planWorkers({ gpus: 2, cores: 16 }).map((s) => s.env.CUDA_VISIBLE_DEVICES)).toEqual(['0', '1']);
  });

  it('never starts more GPU workers than GPUs', () => {
    expect(planWorkers({ gpus: 2, cores: 16, requested: 8 })).toHaveLength(2);
  });

  it('starts one worker per core without GPUs, hiding CUDA devices', () => {
    const plan = planWorkers({ gpus: 0, cores: 4 });
    expect(plan.map((s) => s.label)).toEqual(['cpu0', 'cpu1', 'cpu2', 'cpu3']);
    expect(plan.every((s) => s.env.CUDA_VISIBLE_DEVICES === '')).toBe(true);
  });

  it('honours an explicit count on CPU', () => {
    expect(planWorkers({ gpus: 0, cores: 4, requested: 1 })).toHaveLength(1);
  });
});
