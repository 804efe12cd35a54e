import { In, type FindOptionsWhere } from 'typeorm';
import type { RunProgressSnapshot, RunResult } from '@ice/experiments';
import { RunEntity, type RunStatus, type StoredRunConfig } from '../entities';
import type { OrchestrationDatabase } from '../orchestration.database';
import { JobStateRepository, type Page } from './job-state.repository';
import type { MetricRepository } from './metric.repository';
import type { SweepRepository } from './sweep.repository';

export interface NewRun {
  cellKey: string;
  cell: Record<string, number | string | boolean>;
  seed: number;
  config: StoredRunConfig;
}

/** A run of a sweep and how many rank jobs it has. */
export interface SweepRunRef {
  id: string;
  worldSize: number;
}

/** A run's outcome as the store records it: the RunResult, and where the last resumable checkpoint is. */
export type RunFinish = RunResult & { lastCheckpoint: string | null };

/**
 * Runs: creation, claims, progress, outcome. Every transition is one guarded UPDATE, so that a job
 * delivered twice, or a cancel racing a finish, cannot write two outcomes. Claiming a sweep's run
 * moves the sweep to running; progress and the final scores go to the run's metric series.
 */
export class RunRepository extends JobStateRepository<RunEntity> {
  constructor(
    db: OrchestrationDatabase,
    private readonly sweeps: SweepRepository,
    private readonly metrics: MetricRepository,
  ) {
    super(db, 'runs');
  }

  private get runs() {
    return this.db.repository(RunEntity);
  }

  /** A run of no sweep (POST /experiments). */
  async create(run: NewRun): Promise<RunEntity> {
    return this.runs.save(this.runs.create({ ...run, sweepId: null, status: 'queued' }));
  }

  get(id: string): Promise<RunEntity | null> {
    return this.runs.findOneBy({ id });
  }

  async list(filter: { sweepId?: string; status?: RunStatus }, page: Page): Promise<{ items: RunEntity[]; total: number }> {
    const where: FindOptionsWhere<RunEntity> = {};
    if (filter.status) where.status = filter.status;
    if (filter.sweepId) where.sweepId = filter.sweepId;
    const [items, total] = await this.runs.findAndCount({ where, order: { createdAt: 'DESC' }, take: page.limit, skip: page.offset });
    return { items, total };
  }

  /** Every queued or running run, oldest first (what the reconciler looks at). */
  unfinished(): Promise<RunEntity[]> {
    return this.runs.find({ where: { status: In(['queued', 'running']) }, order: { createdAt: 'ASC' } });
  }

  /** A sweep's runs by grid cell and seed. */
  ofSweep(sweepId: string): Promise<RunEntity[]> {
    return this.runs.find({ where: { sweepId }, order: { cellKey: 'ASC', seed: 'ASC' } });
  }

  /**
   * Claims a run for an attempt. Null when it must not run: finished already (a redelivered job),
   * or cancelled before a worker got to it.
   */
  async start(id: string, workerId: string): Promise<RunEntity | null> {
    const rows = await this.db.rows<{ id: string; sweep_id: string | null }>(
      `UPDATE runs SET status = 'running', attempts = attempts + 1, worker_id = $2, error = NULL,
         started_at = coalesce(started_at, now()), updated_at = now()
       WHERE id = $1 AND status IN ('queued','running') AND NOT cancel_requested RETURNING id, sweep_id`,
      [id, workerId],
    );
    if (!rows.length) return null;
    if (rows[0].sweep_id) await this.sweeps.setStatus(rows[0].sweep_id, 'running');
    return this.get(id);
  }

  /** Latest progress on the row and the points of the series (idempotent per step). */
  async recordProgress(
    id: string,
    progress: RunProgressSnapshot,
    points: Record<string, number>,
    lastCheckpoint: string | null,
  ): Promise<void> {
    await this.db.rows(
      `UPDATE runs SET progress = $2::jsonb, last_checkpoint = coalesce($3, last_checkpoint), updated_at = now()
       WHERE id = $1 AND status = 'running'`,
      [id, JSON.stringify(progress), lastCheckpoint],
    );
    await this.metrics.add(id, progress.step, points);
  }

  /**
   * Records the outcome once: false when the run had already finished (its first result stands).
   * A queued row takes it too: a finished training (its outcome stored on disk) is the truth,
   * even when the row was handed back or re-queued meanwhile.
   */
  async finish(id: string, r: RunFinish): Promise<boolean> {
    const rows = await this.db.rows<{ id: string }>(
      `UPDATE runs SET status = 'succeeded', metrics = $2::jsonb, checkpoint = $3, last_checkpoint = coalesce($4, last_checkpoint),
         resumed_from_step = $5, config = jsonb_set(config, '{backend}', to_jsonb($6::text)), duration_ms = $7,
         finished_at = now(), updated_at = now(),
         progress = CASE WHEN progress IS NULL THEN NULL ELSE jsonb_set(progress, '{step}', to_jsonb($8::int)) END
       WHERE id = $1 AND status IN ('queued','running') RETURNING id`,
      [id, JSON.stringify(r.metrics), r.checkpoint, r.lastCheckpoint, r.resumedFromStep, r.backend, Math.round(r.durationMs), r.steps],
    );
    if (rows.length) await this.metrics.add(id, r.steps, Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [`final.${k}`, v])));
    return rows.length > 0;
  }

  /**
   * Cancels every unfinished run of a sweep in one statement (see requestCancel for one run):
   * queued runs become cancelled at once, running ones are flagged for their workers to stop.
   * Returns both groups with their data-parallel width (their job ids follow from it).
   */
  async requestCancelOfSweep(sweepId: string): Promise<{ cancelled: SweepRunRef[]; stopping: SweepRunRef[] }> {
    const rows = await this.db.rows<{ id: string; status: RunStatus; world_size: number | null }>(
      `UPDATE runs SET cancel_requested = true, updated_at = now(),
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
         finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END
       WHERE sweep_id = $1 AND status IN ('queued','running')
       RETURNING id, status, (config->'run'->>'worldSize')::int AS world_size`,
      [sweepId],
    );
    const ref = (r: (typeof rows)[number]): SweepRunRef => ({ id: r.id, worldSize: r.world_size ?? 1 });
    return {
      cancelled: rows.filter((r) => r.status === 'cancelled').map(ref),
      stopping: rows.filter((r) => r.status === 'running').map(ref),
    };
  }

  /** A failed attempt: back to queued while BullMQ will retry it, failed after the last one. */
  async fail(id: string, error: string, final: boolean): Promise<void> {
    await this.db.rows(
      `UPDATE runs SET status = $3, error = $2, updated_at = now(), finished_at = CASE WHEN $3 = 'failed' THEN now() ELSE finished_at END
       WHERE id = $1 AND status IN ('queued','running')`,
      [id, error, final ? 'failed' : 'queued'],
    );
  }
}
