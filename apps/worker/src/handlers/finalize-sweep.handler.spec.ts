import { sweepOutcome } from './finalize-sweep.handler';

const counts = (c: Partial<Record<'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled', number>>) => ({
  queued: 0,
  running: 0,
  succeeded: 0,
  failed: 0,
  cancelled: 0,
  ...c,
});

describe('sweepOutcome', () => {
  it('is succeeded only when every run succeeded', () => {
    expect(sweepOutcome(counts({ succeeded: 4 }))).toBe('succeeded');
    expect(sweepOutcome(counts({ succeeded: 3, failed: 1 }))).toBe('partial');
    expect(sweepOutcome(counts({ succeeded: 3, cancelled: 1 }))).toBe('partial');
  });

  it('is failed when nothing succeeded, cancelled when everything was cancelled', () => {
    expect(sweepOutcome(counts({ failed: 2, cancelled: 1 }))).toBe('failed');
    expect(sweepOutcome(counts({ cancelled: 3 }))).toBe('cancelled');
  });
});
