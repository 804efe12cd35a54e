import type { EvaluationEntity, EvaluationResultEntity } from '@ice/orchestration';

/** One method's row as the API returns it. */
export function evaluationRowView(r: EvaluationResultEntity) {
  return { method: r.method, label: r.label, metrics: r.metrics, images: r.images, imagesPerSecond: r.imagesPerSecond, seconds: r.seconds };
}

/**
 * An evaluation with its outcome: `result` is the stored summary (protocol, data set, model,
 * backend, columns, conventions, saved maps; or the accuracy metrics) with the per-method rows
 * from evaluation_results put back in as `rows`.
 */
export function evaluationView(e: EvaluationEntity, rows: EvaluationResultEntity[]) {
  return {
    id: e.id,
    status: e.status,
    statusChangedAt: e.statusChangedAt,
    protocol: e.protocol,
    runId: e.runId,
    spec: e.spec,
    progress: e.progress,
    cancelRequested: e.cancelRequested,
    attempts: e.attempts,
    workerId: e.workerId,
    result: e.result ? { ...e.result, rows: rows.map(evaluationRowView) } : null,
    error: e.error,
    createdAt: e.createdAt,
    startedAt: e.startedAt,
    finishedAt: e.finishedAt,
    durationMs: e.durationMs,
  };
}
