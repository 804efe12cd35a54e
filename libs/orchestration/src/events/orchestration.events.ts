/**
 * The events the API streams to clients over SSE and the workers announce, and their builders:
 * the one place a run's or a sweep's status becomes an event, for the API and the workers alike.
 */
import { progressSnapshot, type RunProgress, type RunProgressSnapshot } from '@ice/experiments';
import type { RunEntity, RunStatus, SweepEntity, SweepStatus } from '../db/entities';
import type { StatusCounts } from '../db/repositories';

export type OrchestrationEvent =
  | {
      type: 'run.status';
      runId: string;
      sweepId: string | null;
      status: RunStatus;
      error?: string | null;
      metrics?: Record<string, number> | null;
      at: string;
    }
  | { type: 'run.progress'; runId: string; sweepId: string | null; progress: RunProgressSnapshot }
  | { type: 'sweep.status'; sweepId: string; status: SweepStatus; counts: StatusCounts; at: string };

export type RunStatusEvent = Extract<OrchestrationEvent, { type: 'run.status' }>;
export type RunProgressEvent = Extract<OrchestrationEvent, { type: 'run.progress' }>;
export type SweepStatusEvent = Extract<OrchestrationEvent, { type: 'sweep.status' }>;

/**
 * A run's row as a status event (its status, error and metrics as stored), dated when the status
 * changed: a replayed event says when it happened, not when it was read.
 */
export function runStatusEvent(run: RunEntity): RunStatusEvent {
  return {
    type: 'run.status',
    runId: run.id,
    sweepId: run.sweepId,
    status: run.status,
    error: run.error,
    metrics: run.metrics,
    at: run.statusChangedAt.toISOString(),
  };
}

/** A progress report (the worker's RunProgress, or the snapshot a row keeps) as an event. */
export function runProgressEvent(run: Pick<RunEntity, 'id' | 'sweepId'>, progress: RunProgress | RunProgressSnapshot): RunProgressEvent {
  const snapshot = 'at' in progress ? progress : progressSnapshot(progress);
  return { type: 'run.progress', runId: run.id, sweepId: run.sweepId, progress: snapshot };
}

/** A sweep's status as stored, with its runs' counts per status, dated when the status changed. */
export function sweepStatusEvent(sweep: Pick<SweepEntity, 'id' | 'status' | 'statusChangedAt'>, counts: StatusCounts): SweepStatusEvent {
  return { type: 'sweep.status', sweepId: sweep.id, status: sweep.status, counts, at: sweep.statusChangedAt.toISOString() };
}
