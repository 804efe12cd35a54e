/**
 * What the reconciler does with an unfinished row (a run or an evaluation, queued or running),
 * from what it found about it: its job in BullMQ, a stored outcome, the live workers. Pure, so
 * that every rule is tested on its own (reconcile.rules.spec.ts).
 */
import type { JobSnapshot } from '../queue/job-queue';

/** Job states in which BullMQ will still run (or is running) the job: the row is in good hands. */
const PENDING_JOB_STATES = new Set(['active', 'waiting', 'delayed', 'prioritized', 'waiting-children', 'paused']);

export interface RowFacts {
  kind: 'run' | 'evaluation';
  status: 'queued' | 'running';
  /** A finished outcome stored beside the checkpoints (runs only). */
  hasOutcome: boolean;
  /** The row's job (a run's rank 0); null when BullMQ does not have it. */
  job: JobSnapshot | null;
  /** A live worker announces the job as one of its active ones. */
  heldByLiveWorker: boolean;
  /** Whether the worker registry can be trusted to list every live worker (Redis up for longer than a presence's lifetime). */
  registryComplete: boolean;
  attempts: number;
  maxAttempts: number;
  /** Since the row last changed: a row that just changed may be mid-way through its normal path (the API adding its job). */
  ageMs: number;
}

/** Rows younger than this are left to their normal path. */
export const RECONCILE_GRACE_MS = 10_000;

export type ReconcileAction =
  | { kind: 'keep'; why: string }
  /** Record the stored outcome on the row. */
  | { kind: 'finish'; why: string }
  /** Add the row's job again (a queued row whose job is gone); idempotent by job id. */
  | { kind: 'enqueue'; why: string }
  /** Back to queued and its job added again: it resumes from its last checkpoint. */
  | { kind: 'requeue'; why: string }
  | { kind: 'fail'; why: string };

export function reconcileAction(f: RowFacts): ReconcileAction {
  if (f.hasOutcome) return { kind: 'finish', why: 'its outcome is stored beside its checkpoint' };
  if (f.ageMs < RECONCILE_GRACE_MS) return { kind: 'keep', why: 'it changed moments ago' };
  if (f.job && PENDING_JOB_STATES.has(f.job.state)) return { kind: 'keep', why: `its job is ${f.job.state}` };
  if (f.job?.state === 'failed')
    return { kind: 'fail', why: `its job failed${f.job.failedReason ? `: ${f.job.failedReason}` : ''} (no outcome reached the ${f.kind})` };
  if (f.job?.state === 'completed')
    return {
      kind: 'fail',
      why: `its job completed without recording an outcome, and none is stored${f.kind === 'run' ? ' beside its checkpoint' : ''}`,
    };
  // No job (Redis lost it, or it was never added).
  if (f.status === 'queued') return { kind: 'enqueue', why: 'it is queued but its job is missing' };
  if (f.heldByLiveWorker)
    return { kind: 'keep', why: 'a live worker is running it (its job was lost with Redis; the worker records the outcome)' };
  if (!f.registryComplete) return { kind: 'keep', why: 'Redis restarted too recently to tell which workers are alive' };
  if (f.attempts < f.maxAttempts)
    return {
      kind: 'requeue',
      why: `its job is missing and no live worker runs it; queued again (attempt ${f.attempts + 1} of ${f.maxAttempts})`,
    };
  return {
    kind: 'fail',
    why: `its job is missing, no outcome is stored, no live worker runs it, and its ${f.maxAttempts} attempt(s) are spent`,
  };
}

/** What to do with an unfinished sweep once its runs are dealt with. */
export function sweepNeedsFinalizing(runsUnfinished: number, finalizeJob: JobSnapshot | null): boolean {
  if (runsUnfinished > 0) return false;
  // A finalize job about to run does it; one gone, finished, or waiting for children that no longer exist does not.
  return !finalizeJob || !['waiting', 'active', 'delayed', 'prioritized'].includes(finalizeJob.state);
}
