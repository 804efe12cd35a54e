import { In, type FindOptionsWhere } from 'typeorm';
import { EvaluationEntity, EvaluationResultEntity, type EvaluationProgressSnapshot, type RunStatus } from '../entities';
import type { OrchestrationDatabase } from '../orchestration.database';
import { JobStateRepository, type Page } from './job-state.repository';

export interface EvaluationFilter {
  status?: RunStatus;
  protocol?: string;
  runId?: string;
}

/** One method's row as the evaluation library returns it. */
export interface EvaluationRowInput {
  method: string;
  label: string;
  metrics: Record<string, number | null>;
  images: number;
  imagesPerSecond: number;
  seconds: number;
}

export interface EvaluationFinish {
  /** The summary stored on the evaluation (everything but the rows). */
  result: Record<string, unknown>;
  rows?: EvaluationRowInput[];
  durationMs?: number;
}

/**
 * Evaluations and their per-method result rows (evaluation_results). As for runs, every transition
 * is guarded by the status, so a second delivery of the job changes nothing.
 */
export class EvaluationRepository extends JobStateRepository<EvaluationEntity> {
  constructor(db: OrchestrationDatabase) {
    super(db, 'evaluations');
  }

  private get evaluations() {
    return this.db.repository(EvaluationEntity);
  }

  create(spec: Record<string, unknown>, runId: string | null, protocol: string): Promise<EvaluationEntity> {
    return this.evaluations.save(this.evaluations.create({ spec, runId, protocol, status: 'queued' }));
  }

  get(id: string): Promise<EvaluationEntity | null> {
    return this.evaluations.findOneBy({ id });
  }

  /** Every queued or running evaluation, oldest first (what the reconciler looks at). */
  unfinished(): Promise<EvaluationEntity[]> {
    return this.evaluations.find({ where: { status: In(['queued', 'running']) }, order: { createdAt: 'ASC' } });
  }

  async list(filter: EvaluationFilter, page: Page): Promise<{ items: EvaluationEntity[]; total: number }> {
    const where: FindOptionsWhere<EvaluationEntity> = {};
    if (filter.status) where.status = filter.status;
    if (filter.protocol) where.protocol = filter.protocol;
    if (filter.runId) where.runId = filter.runId;
    const [items, total] = await this.evaluations.findAndCount({
      where,
      order: { createdAt: 'DESC' },
      take: page.limit,
      skip: page.offset,
    });
    return { items, total };
  }

  /** The per-method rows of each evaluation, in the order the methods were asked for. */
  async results(evaluationIds: string[]): Promise<Map<string, EvaluationResultEntity[]>> {
    const out = new Map<string, EvaluationResultEntity[]>(evaluationIds.map((id) => [id, []]));
    if (!evaluationIds.length) return out;
    const rows = await this.db
      .repository(EvaluationResultEntity)
      .find({ where: { evaluationId: In(evaluationIds) }, order: { evaluationId: 'ASC', position: 'ASC' } });
    for (const r of rows) out.get(r.evaluationId)?.push(r);
    return out;
  }

  /** Claims an evaluation for an attempt; false when it finished already (a redelivered job) or was cancelled. */
  async start(id: string, workerId: string): Promise<boolean> {
    const rows = await this.db.rows<{ id: string }>(
      `UPDATE evaluations SET status = 'running', attempts = attempts + 1, worker_id = $2, error = NULL, progress = NULL,
         started_at = coalesce(started_at, now()), updated_at = now()
       WHERE id = $1 AND status IN ('queued','running') AND NOT cancel_requested RETURNING id`,
      [id, workerId],
    );
    return rows.length > 0;
  }

  async recordProgress(id: string, progress: EvaluationProgressSnapshot): Promise<void> {
    await this.db.rows(`UPDATE evaluations SET progress = $2::jsonb, updated_at = now() WHERE id = $1 AND status = 'running'`, [
      id,
      JSON.stringify(progress),
    ]);
  }

  /**
   * Records the outcome once: the summary and the per-method rows in one transaction guarded by the
   * running status; false when the evaluation had already left 'running' (its first result stands).
   */
  async finish(id: string, outcome: EvaluationFinish): Promise<boolean> {
    return this.db.inTransaction(async (rows) => {
      const updated = await rows<{ id: string }>(
        `UPDATE evaluations SET status = 'succeeded', result = $2::jsonb, error = NULL, duration_ms = $3, finished_at = now(),
           updated_at = now(), progress = CASE WHEN progress IS NULL THEN NULL ELSE jsonb_set(progress, '{done}', progress->'total') END
         WHERE id = $1 AND status = 'running' RETURNING id`,
        [id, JSON.stringify(outcome.result), outcome.durationMs === undefined ? null : Math.round(outcome.durationMs)],
      );
      const first = updated.length > 0;
      if (first && outcome.rows?.length) await rows(INSERT_RESULT_ROWS, [id, JSON.stringify(resultRows(outcome.rows))]);
      return first;
    });
  }

  /** A failed attempt: back to queued while BullMQ will retry it, failed after the last one. False: it had finished already. */
  async fail(id: string, error: string, final: boolean): Promise<boolean> {
    const rows = await this.db.rows<{ id: string }>(
      `UPDATE evaluations SET status = $3, error = $2, updated_at = now(), finished_at = CASE WHEN $3 = 'failed' THEN now() ELSE NULL END
       WHERE id = $1 AND status IN ('queued','running') RETURNING id`,
      [id, error, final ? 'failed' : 'queued'],
    );
    return rows.length > 0;
  }
}

/** One row per method; a redelivered job cannot add a second (unique per evaluation and method). */
const INSERT_RESULT_ROWS = `
  INSERT INTO evaluation_results (evaluation_id, position, method, label, metrics, images, images_per_second, seconds)
  SELECT $1, r.position, r.method, r.label, r.metrics, r.images, r.images_per_second, r.seconds
  FROM jsonb_to_recordset($2::jsonb)
    AS r(position int, method text, label text, metrics jsonb, images int, images_per_second float8, seconds float8)
  ON CONFLICT (evaluation_id, method) DO NOTHING`;

function resultRows(rows: EvaluationRowInput[]) {
  return rows.map((r, position) => ({
    position,
    method: r.method,
    label: r.label,
    metrics: r.metrics,
    images: r.images,
    // JSON has no Infinity (an explainer timed at zero seconds); null says "not measurable".
    images_per_second: Number.isFinite(r.imagesPerSecond) ? r.imagesPerSecond : null,
    seconds: r.seconds,
  }));
}
