/** Lifecycle of a run or an evaluation; terminal states never change again. */
export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const SWEEP_STATUSES = ['queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled'] as const;
export type SweepStatus = (typeof SWEEP_STATUSES)[number];

export function isTerminalRunStatus(s: RunStatus): boolean {
  switch (s) {
    case 'succeeded':
    case 'failed':
    case 'cancelled':
      return true;
    case 'queued':
    case 'running':
      return false;
  }
}

export function isTerminalSweepStatus(s: SweepStatus): boolean {
  switch (s) {
    case 'succeeded':
    case 'partial':
    case 'failed':
    case 'cancelled':
      return true;
    case 'queued':
    case 'running':
      return false;
  }
}
