import type { RunEntity, SweepEntity, StatusCounts } from '@ice/orchestration';

/** The JSON shapes the API returns (entities stay internal). */
export function runView(r: RunEntity) {
  return {
    id: r.id,
    sweepId: r.sweepId,
    cellKey: r.cellKey || null,
    cell: r.cell,
    seed: r.seed,
    status: r.status,
    statusChangedAt: r.statusChangedAt,
    cancelRequested: r.cancelRequested,
    attempts: r.attempts,
    config: r.config,
    progress: r.progress,
    metrics: r.metrics,
    checkpoint: r.checkpoint,
    lastCheckpoint: r.lastCheckpoint,
    resumedFromStep: r.resumedFromStep,
    error: r.error,
    workerId: r.workerId,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    durationMs: r.durationMs,
  };
}

export function sweepView(s: SweepEntity, counts: StatusCounts) {
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    statusChangedAt: s.statusChangedAt,
    axes: s.axes,
    runCount: s.runCount,
    counts,
    spec: s.spec,
    createdAt: s.createdAt,
    finishedAt: s.finishedAt,
  };
}
