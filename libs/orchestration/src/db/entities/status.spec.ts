import { isTerminalRunStatus, isTerminalSweepStatus, RUN_STATUSES, SWEEP_STATUSES } from './status';

describe('terminal statuses', () => {
  it('runs and evaluations end in succeeded, failed or cancelled', () => {
    expect(RUN_STATUSES.filter(isTerminalRunStatus)).toEqual(['succeeded', 'failed', 'cancelled']);
  });

  it('sweeps end in succeeded, partial, failed or cancelled', () => {
    expect(SWEEP_STATUSES.filter(isTerminalSweepStatus)).toEqual(['succeeded', 'partial', 'failed', 'cancelled']);
  });

  it('an unknown value is not terminal', () => {
    expect(isTerminalRunStatus('constructor' as never)).toBe(false);
    expect(isTerminalSweepStatus('toString' as never)).toBe(false);
  });
});
