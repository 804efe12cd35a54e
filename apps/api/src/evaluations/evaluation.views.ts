import * as path from 'node:path';
import type { EvaluationEntity, EvaluationResultEntity } from '@ice/orchestration';

/** Where GET /evaluations/:id/maps/:file serves a saved map. */
export function mapUrl(evaluationId: string, file: string): string {
  return `/evaluations/${evaluationId}/maps/${encodeURIComponent(path.basename(file))}`;
}

/** The saved maps as URLs (the row keeps the files' paths, which the maps route checks against). */
function savedMapsView(evaluationId: string, saved: unknown) {
  const s = saved as { files?: unknown; contactSheet?: unknown } | null | undefined;
  if (!s) return undefined;
  const files = Array.isArray(s.files) ? s.files.filter((f): f is string => typeof f === 'string') : [];
  return {
    files: files.map((f) => mapUrl(evaluationId, f)),
    contactSheet: typeof s.contactSheet === 'string' ? mapUrl(evaluationId, s.contactSheet) : null,
  };
}

/** One method's row as the API returns it. */
export function evaluationRowView(r: EvaluationResultEntity) {
  return { method: r.method, label: r.label, metrics: r.metrics, images: r.images, imagesPerSecond: r.imagesPerSecond, seconds: r.seconds };
}

/**
 * An evaluation with its outcome: `result` is the stored summary (protocol, data set, model,
 * backend, columns, conventions, saved maps; or the accuracy metrics) with the per-method rows
 * from evaluation_results put back in as `rows`, and the saved maps as URLs of the maps route.
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
    result: e.result
      ? { ...e.result, rows: rows.map(evaluationRowView), savedMaps: savedMapsView(e.id, (e.result as { savedMaps?: unknown }).savedMaps) }
      : null,
    error: e.error,
    createdAt: e.createdAt,
    startedAt: e.startedAt,
    finishedAt: e.finishedAt,
    durationMs: e.durationMs,
  };
}
