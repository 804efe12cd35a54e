import type { OrchestrationEvent } from './orchestration.events';
import { formatDuration, runProgressLine, SweepProgress } from './sweep-progress';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();
const progress = (runId: string, step: number, s: number, totalSteps = 100): OrchestrationEvent => ({
  type: 'run.progress',
  runId,
  sweepId: 'sw',
  progress: { step, totalSteps, epoch: 0, loss: 1 / step, imgPerSec: 1, etaSeconds: null, lr: 1e-3, at: at(s) },
});
const status = (runId: string, st: 'running' | 'queued' | 'succeeded' | 'failed', s: number): OrchestrationEvent => ({
  type: 'run.status',
  runId,
  sweepId: 'sw',
  status: st,
  metrics: st === 'succeeded' ? { top1: 0.9 } : null,
  error: st === 'failed' ? 'boom' : null,
  at: at(s),
});

describe('SweepProgress', () => {
  const fresh = () =>
    new SweepProgress([
      { id: 'a', label: 'alpha=0.5 seed 0', status: 'queued', totalSteps: 100 },
      { id: 'b', label: 'alpha=1 seed 0', status: 'queued', totalSteps: 100 },
    ]);

  it('gives no ETA from a first report, however slow the start-up was, then one from the measured rate', () => {
    const p = fresh();
    // 30 s of start-up before the first step: a naive ETA would read 99 × 30 s.
    p.apply(status('a', 'running', 0), T0);
    p.apply(progress('a', 1, 30), T0 + 30_000);
    expect(p.running()[0]).toMatchObject({ step: 1, etaSeconds: null, stepsPerSecond: null });
    expect(p.etaSeconds(T0 + 30_000)).toBeNull();
    // 10 steps in 2 s: 5 steps/s, 89 steps left.
    p.apply(progress('a', 11, 32), T0 + 32_000);
    expect(p.running()[0].stepsPerSecond).toBeCloseTo(5, 12);
    expect(p.running()[0].etaSeconds).toBeCloseTo(89 / 5, 12);
    // The whole job: not before OVERALL_MIN_SECONDS of reports.
    expect(p.etaSeconds(T0 + 32_000)).toBeNull();
    p.apply(progress('a', 31, 36), T0 + 36_000);
    // 30 steps in 6 s of wall time since the first report; 69 + 100 steps left.
    expect(p.overallStepsPerSecond(T0 + 36_000)).toBeCloseTo(5, 12);
    expect(p.etaSeconds(T0 + 36_000)).toBeCloseTo(169 / 5, 12);
  });

  it('counts finished runs (k of n) and forgets a rate when a run goes back to the queue', () => {
    const p = fresh();
    p.apply(progress('a', 10, 10), T0 + 10_000);
    p.apply(progress('a', 20, 12), T0 + 12_000);
    p.apply(status('a', 'succeeded', 13), T0 + 13_000);
    expect(p.counts()).toMatchObject({ finished: 1, total: 2, succeeded: 1, running: 0 });
    expect(p.all()[0]).toMatchObject({ step: 100, metrics: { top1: 0.9 }, etaSeconds: 0 });
    p.apply(progress('b', 5, 14), T0 + 14_000);
    p.apply(progress('b', 15, 16), T0 + 16_000);
    expect(p.running()[0].etaSeconds).toBeCloseTo(85 / 5, 12);
    // A retry: the next start-up is not a rate either.
    p.apply(status('b', 'queued', 17), T0 + 17_000);
    p.apply(progress('b', 16, 40), T0 + 40_000);
    expect(p.running()[0]).toMatchObject({ step: 16, etaSeconds: null });
    p.apply(status('b', 'failed', 41), T0 + 41_000);
    expect(p.counts()).toMatchObject({ finished: 2, failed: 1 });
    expect(p.etaSeconds(T0 + 41_000)).toBe(0);
    expect(p.all()[1].error).toBe('boom');
  });

  it('starts from the runs as the API lists them (finished ones count as done)', () => {
    const p = new SweepProgress([
      { id: 'a', label: 'a', status: 'succeeded', totalSteps: 50 },
      {
        id: 'b',
        label: 'b',
        status: 'running',
        totalSteps: 50,
        progress: { step: 20, totalSteps: 50, epoch: 0, loss: 1, imgPerSec: 1, etaSeconds: 3, lr: 1, at: at(0) },
      },
    ]);
    expect(p.counts()).toMatchObject({ finished: 1, total: 2, running: 1 });
    expect(p.running()[0]).toMatchObject({ step: 20, etaSeconds: null });
  });

  it('says it in lines: run k of n, each running run, the ETA once measured', () => {
    const p = fresh();
    p.apply(progress('a', 1, 30), T0 + 30_000);
    expect(p.summaryLine(T0 + 30_000)).toBe('0 of 2 runs finished, 1 running · ETA measuring…');
    expect(runProgressLine(p.running()[0])).toBe('alpha=0.5 seed 0: step 1/100, loss 1.0000 · ETA –');
    p.apply(progress('a', 51, 40), T0 + 40_000);
    expect(runProgressLine(p.running()[0])).toBe('alpha=0.5 seed 0: step 51/100, loss 0.0196 · ETA 10s');
    expect(p.summaryLine(T0 + 40_000)).toBe('0 of 2 runs finished, 1 running · ETA 30s');
    // Every step done, the run is being scored: no "ETA 0s" while it still takes time.
    p.apply(progress('a', 100, 45), T0 + 45_000);
    expect(runProgressLine(p.running()[0])).toBe('alpha=0.5 seed 0: step 100/100, loss 0.0100 · ETA scoring…');
    p.apply(status('a', 'succeeded', 50), T0 + 50_000);
    expect(p.finishedLine(p.all()[0])).toBe('run 1 of 2 finished: alpha=0.5 seed 0 succeeded · top1 0.900');
    p.apply(status('b', 'failed', 51), T0 + 51_000);
    expect(p.finishedLine(p.all()[1])).toBe('run 2 of 2 finished: alpha=1 seed 0 failed · boom');
    expect(p.summaryLine(T0 + 51_000)).toBe('2 of 2 runs finished (1 failed), 0 running · ETA 0s');
  });

  it('formats durations', () => {
    expect([null, 0, 42.4, 185, 3725].map(formatDuration)).toEqual(['–', '0s', '42s', '3m05s', '1h02m']);
  });
});
