import { RUN_STATUSES, type RunStatus } from '@ice/experiments';

/** Lifecycle of a run or an evaluation: the run contract's vocabulary (terminal states never change again). */
export { RUN_STATUSES, type RunStatus };

export const SWEEP_STATUSES = ['queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled'] as const;
export type SweepStatus = (typeof SWEEP_STATUSES)[number];

/** Which statuses are terminal: a Record, so that a new status cannot be left unclassified. */
const TERMINAL_RUN: Readonly<Record<RunStatus, boolean>> = {
  queued: false,
  running: false,
  succeeded: true,
  failed: true,
  cancelled: true,
};
/** A sweep's statuses are a run's plus `partial` (some of its runs failed), which is terminal too. */
const TERMINAL_SWEEP: Readonly<Record<SweepStatus, boolean>> = { ...TERMINAL_RUN, partial: true };

export function isTerminalRunStatus(s: RunStatus): boolean {
  return TERMINAL_RUN[s] === true;
}

export function isTerminalSweepStatus(s: SweepStatus): boolean {
  return TERMINAL_SWEEP[s] === true;
}

/** A sweep's outcome once none of its runs is queued or running (counts per run status). */
export function sweepOutcome(c: Readonly<Record<RunStatus, number>>): SweepStatus {
  const total = c.queued + c.running + c.succeeded + c.failed + c.cancelled;
  if (c.succeeded === total) return 'succeeded';
  if (c.cancelled === total) return 'cancelled';
  if (c.succeeded === 0) return 'failed';
  return 'partial';
}
