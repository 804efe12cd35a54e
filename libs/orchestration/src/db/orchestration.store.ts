import { DataSource, In, QueryResult, type DataSourceOptions, type FindOptionsWhere } from 'typeorm';
import type { OnApplicationShutdown } from '@nestjs/common';
import { embeddedDatabaseUrl, type OrchestrationConfig } from '../config/orchestration.config';
import { EmbeddedPostgres } from './embedded-postgres';
import {
  ENTITIES,
  EvaluationEntity,
  EvaluationResultEntity,
  type EvaluationProgressSnapshot,
  isTerminalSweepStatus,
  RunEntity,
  SweepEntity,
  type RunProgressSnapshot,
  type RunStatus,
  type StoredRunConfig,
  type SweepStatus,
} from './entities';
import { MIGRATIONS } from './migrations';

export interface NewRun {
  cellKey: string;
  cell: Record<string, number | string | boolean>;
  seed: number;
  config: StoredRunConfig;
}

export interface Page {
  limit: number;
  offset: number;
}

export type StatusCounts = Record<RunStatus, number>;

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

export interface RunFinish {
  metrics: Record<string, number>;
  checkpoint: string;
  lastCheckpoint: string | null;
  resumedFromStep: number | null;
  backend: string;
  durationMs: number;
  steps: number;
}

// Any constant works; it only has to be the same in every process that migrates this database.
const MIGRATION_LOCK = 0x1ce0_0001;

/**
 * The one door to PostgreSQL (external, or the embedded PGlite server): connection, migrations
 * and every query the API and the workers make. State transitions are single guarded UPDATEs so
 * that a job delivered twice, or a cancel racing a finish, cannot write two outcomes.
 */
export class OrchestrationStore implements OnApplicationShutdown {
  private constructor(
    readonly dataSource: DataSource,
    private readonly embedded: EmbeddedPostgres | null,
  ) {}

  static dataSourceOptions(url: string, poolSize: number): DataSourceOptions {
    return {
      type: 'postgres',
      url,
      entities: ENTITIES,
      migrations: MIGRATIONS,
      migrationsTableName: 'typeorm_migrations',
      synchronize: false,
      poolSize,
      extra: { max: poolSize, connectionTimeoutMillis: 10_000 },
    };
  }

  /**
   * Connects and brings the schema up to date. The API migrates (under an advisory lock, so that
   * several API replicas can start together); a worker waits until the schema is current. With
   * no DATABASE_URL the API hosts the embedded server and the workers connect to it.
   */
  static async open(config: OrchestrationConfig, opts: { migrate?: boolean } = {}): Promise<OrchestrationStore> {
    let embedded: EmbeddedPostgres | null = null;
    let url = config.databaseUrl;
    if (!url) {
      if (config.role === 'api') embedded = await EmbeddedPostgres.start(config.embeddedDb);
      url = embeddedDatabaseUrl(config);
    }
    // The embedded server executes one statement at a time; one pooled connection per process is all it can use.
    const ds = new DataSource(OrchestrationStore.dataSourceOptions(url, embedded || !config.databaseUrl ? 1 : 10));
    try {
      await ds.initialize();
      const store = new OrchestrationStore(ds, embedded);
      if (opts.migrate ?? config.role === 'api') await store.migrate();
      else await store.waitForSchema();
      return store;
    } catch (e) {
      if (ds.isInitialized) await ds.destroy();
      await embedded?.stop();
      throw e;
    }
  }

  async migrate(): Promise<void> {
    const pooled = (this.dataSource.options as { poolSize?: number }).poolSize ?? 1;
    if (pooled < 2) {
      await this.dataSource.runMigrations({ transaction: 'all' });
      return;
    }
    const qr = this.dataSource.createQueryRunner();
    await qr.connect();
    try {
      await qr.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await this.dataSource.runMigrations({ transaction: 'all' });
    } finally {
      await qr.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      await qr.release();
    }
  }

  private async waitForSchema(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (await this.dataSource.showMigrations()) {
      if (Date.now() > deadline) throw new Error('the database schema is not migrated; start the API (it migrates) or run the migrations');
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.stop();
  }

  async ping(): Promise<void> {
    await this.dataSource.query('SELECT 1');
  }

  /** Rows of a statement, whatever its kind (TypeORM shapes UPDATE results differently from SELECT). */
  private async sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const qr = this.dataSource.createQueryRunner();
    try {
      const r = (await qr.query(text, params, true)) as QueryResult<T[]>;
      return (r.records ?? []) as T[];
    } finally {
      await qr.release();
    }
  }

  private get runs() {
    return this.dataSource.getRepository(RunEntity);
  }
  private get sweeps() {
    return this.dataSource.getRepository(SweepEntity);
  }
  private get evaluations() {
    return this.dataSource.getRepository(EvaluationEntity);
  }

  // ---- sweeps -------------------------------------------------------------------------------

  /** The sweep and all its runs in one transaction: a sweep is never visible half-created. */
  async createSweep(input: {
    name: string | null;
    spec: Record<string, unknown>;
    axes: string[];
    runs: NewRun[];
  }): Promise<{ sweep: SweepEntity; runs: RunEntity[] }> {
    return this.dataSource.transaction(async (m) => {
      const sweep = await m.save(
        SweepEntity,
        m.create(SweepEntity, {
          name: input.name,
          spec: input.spec,
          axes: input.axes,
          status: 'queued',
          runCount: input.runs.length,
          finishedAt: null,
        }),
      );
      const runs: RunEntity[] = [];
      // Chunked so that a 1,000-run sweep is a handful of statements.
      for (let i = 0; i < input.runs.length; i += 200) {
        const chunk = input.runs.slice(i, i + 200).map((r) => m.create(RunEntity, { ...r, sweepId: sweep.id, status: 'queued' }));
        runs.push(...(await m.save(RunEntity, chunk)));
      }
      return { sweep, runs };
    });
  }

  getSweep(id: string): Promise<SweepEntity | null> {
    return this.sweeps.findOneBy({ id });
  }

  async listSweeps(filter: { status?: SweepStatus; name?: string }, page: Page): Promise<{ items: SweepEntity[]; total: number }> {
    const where: FindOptionsWhere<SweepEntity> = {};
    if (filter.status) where.status = filter.status;
    if (filter.name) where.name = filter.name;
    const [items, total] = await this.sweeps.findAndCount({ where, order: { createdAt: 'DESC' }, take: page.limit, skip: page.offset });
    return { items, total };
  }

  async sweepCounts(sweepIds: string[]): Promise<Map<string, StatusCounts>> {
    const out = new Map<string, StatusCounts>();
    if (!sweepIds.length) return out;
    const rows = await this.sql<{ sweep_id: string; status: RunStatus; n: string }>(
      'SELECT sweep_id, status, count(*) AS n FROM runs WHERE sweep_id = ANY($1::uuid[]) GROUP BY sweep_id, status',
      [sweepIds],
    );
    for (const id of sweepIds) out.set(id, { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
    for (const r of rows) out.get(r.sweep_id)![r.status] = Number(r.n);
    return out;
  }

  runsOfSweep(sweepId: string): Promise<RunEntity[]> {
    return this.runs.find({ where: { sweepId }, order: { cellKey: 'ASC', seed: 'ASC' } });
  }

  /** Moves a sweep forward; a terminal sweep is not reopened. Returns false when nothing changed. */
  async setSweepStatus(id: string, status: SweepStatus): Promise<boolean> {
    const terminal = isTerminalSweepStatus(status);
    const rows = await this.sql<{ id: string }>(
      `UPDATE sweeps SET status = $2, updated_at = now(), finished_at = CASE WHEN $3 THEN now() ELSE finished_at END
       WHERE id = $1 AND status IN ('queued','running') AND status <> $2 RETURNING id`,
      [id, status, terminal],
    );
    return rows.length > 0;
  }

  // ---- runs ---------------------------------------------------------------------------------

  async createRun(run: NewRun): Promise<RunEntity> {
    return this.runs.save(this.runs.create({ ...run, sweepId: null, status: 'queued' }));
  }

  getRun(id: string): Promise<RunEntity | null> {
    return this.runs.findOneBy({ id });
  }

  async listRuns(filter: { sweepId?: string; status?: RunStatus }, page: Page): Promise<{ items: RunEntity[]; total: number }> {
    const where: FindOptionsWhere<RunEntity> = {};
    if (filter.status) where.status = filter.status;
    if (filter.sweepId) where.sweepId = filter.sweepId;
    const [items, total] = await this.runs.findAndCount({ where, order: { createdAt: 'DESC' }, take: page.limit, skip: page.offset });
    return { items, total };
  }

  /**
   * Claims a run for an attempt. Null when it must not run: finished already (a redelivered job),
   * or cancelled before a worker got to it.
   */
  async startRun(id: string, workerId: string): Promise<RunEntity | null> {
    const rows = await this.sql<{ id: string; sweep_id: string | null }>(
      `UPDATE runs SET status = 'running', attempts = attempts + 1, worker_id = $2, error = NULL,
         started_at = coalesce(started_at, now()), updated_at = now()
       WHERE id = $1 AND status IN ('queued','running') AND NOT cancel_requested RETURNING id, sweep_id`,
      [id, workerId],
    );
    if (!rows.length) return null;
    if (rows[0].sweep_id) await this.setSweepStatus(rows[0].sweep_id, 'running');
    return this.getRun(id);
  }

  /** Latest progress on the row and the points of the series (idempotent per step). */
  async recordProgress(
    id: string,
    progress: RunProgressSnapshot,
    points: Record<string, number>,
    lastCheckpoint: string | null,
  ): Promise<void> {
    await this.sql(
      `UPDATE runs SET progress = $2::jsonb, last_checkpoint = coalesce($3, last_checkpoint), updated_at = now() WHERE id = $1 AND status = 'running'`,
      [id, JSON.stringify(progress), lastCheckpoint],
    );
    await this.addMetricPoints(id, progress.step, points);
  }

  async addMetricPoints(runId: string, step: number, points: Record<string, number>): Promise<void> {
    const entries = Object.entries(points).filter(([, v]) => Number.isFinite(v));
    if (!entries.length) return;
    await this.sql(
      `INSERT INTO metric_points (run_id, name, step, value)
       SELECT $1, name, $2, value FROM unnest($3::text[], $4::float8[]) AS t(name, value)
       ON CONFLICT (run_id, name, step) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
      [runId, step, entries.map(([k]) => k), entries.map(([, v]) => v)],
    );
  }

  /** Records the outcome once: false when the run had already finished (its first result stands). */
  async finishRun(id: string, r: RunFinish): Promise<boolean> {
    const rows = await this.sql<{ id: string }>(
      `UPDATE runs SET status = 'succeeded', metrics = $2::jsonb, checkpoint = $3, last_checkpoint = coalesce($4, last_checkpoint),
         resumed_from_step = $5, config = jsonb_set(config, '{backend}', to_jsonb($6::text)), duration_ms = $7,
         finished_at = now(), updated_at = now(),
         progress = CASE WHEN progress IS NULL THEN NULL ELSE jsonb_set(progress, '{step}', to_jsonb($8::int)) END
       WHERE id = $1 AND status = 'running' RETURNING id`,
      [id, JSON.stringify(r.metrics), r.checkpoint, r.lastCheckpoint, r.resumedFromStep, r.backend, Math.round(r.durationMs), r.steps],
    );
    if (rows.length)
      await this.addMetricPoints(id, r.steps, Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [`final.${k}`, v])));
    return rows.length > 0;
  }

  /** A failed attempt: back to queued while BullMQ will retry it, failed after the last one. */
  async failRun(id: string, error: string, final: boolean): Promise<void> {
    await this.sql(
      `UPDATE runs SET status = $3, error = $2, updated_at = now(), finished_at = CASE WHEN $3 = 'failed' THEN now() ELSE finished_at END
       WHERE id = $1 AND status IN ('queued','running')`,
      [id, error, final ? 'failed' : 'queued'],
    );
  }

  /**
   * Flags a cancel. A queued run is cancelled at once (its job, when a worker takes it, finds it
   * cancelled); a running one stays running until its worker stops it. Null: no such run.
   */
  async requestCancel(id: string): Promise<RunEntity | null> {
    await this.flagCancel('runs', id);
    return this.getRun(id);
  }

  async markCancelled(id: string): Promise<boolean> {
    return this.markCancelledIn('runs', id);
  }

  /** Runs and evaluations share the cancel protocol; `table` is one of the two, never user input. */
  private async flagCancel(table: 'runs' | 'evaluations', id: string): Promise<void> {
    await this.sql(
      `UPDATE ${table} SET cancel_requested = true, updated_at = now(),
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
         finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END
       WHERE id = $1 AND status IN ('queued','running')`,
      [id],
    );
  }

  private async markCancelledIn(table: 'runs' | 'evaluations', id: string): Promise<boolean> {
    const rows = await this.sql<{ id: string }>(
      `UPDATE ${table} SET status = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now()
       WHERE id = $1 AND status IN ('queued','running') RETURNING id`,
      [id],
    );
    return rows.length > 0;
  }

  async metricSeries(runId: string, names?: string[]): Promise<Record<string, { step: number; value: number }[]>> {
    const rows = await this.sql<{ name: string; step: number; value: number }>(
      `SELECT name, step, value FROM metric_points WHERE run_id = $1 AND ($2::text[] IS NULL OR name = ANY($2::text[])) ORDER BY name, step`,
      [runId, names?.length ? names : null],
    );
    const out: Record<string, { step: number; value: number }[]> = {};
    for (const r of rows) (out[r.name] ??= []).push({ step: r.step, value: r.value });
    return out;
  }

  // ---- evaluations --------------------------------------------------------------------------

  createEvaluation(spec: Record<string, unknown>, runId: string | null, protocol: string): Promise<EvaluationEntity> {
    return this.evaluations.save(this.evaluations.create({ spec, runId, protocol, status: 'queued' }));
  }

  getEvaluation(id: string): Promise<EvaluationEntity | null> {
    return this.evaluations.findOneBy({ id });
  }

  async listEvaluations(filter: EvaluationFilter, page: Page): Promise<{ items: EvaluationEntity[]; total: number }> {
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
  async evaluationResults(evaluationIds: string[]): Promise<Map<string, EvaluationResultEntity[]>> {
    const out = new Map<string, EvaluationResultEntity[]>(evaluationIds.map((id) => [id, []]));
    if (!evaluationIds.length) return out;
    const rows = await this.dataSource
      .getRepository(EvaluationResultEntity)
      .find({ where: { evaluationId: In(evaluationIds) }, order: { evaluationId: 'ASC', position: 'ASC' } });
    for (const r of rows) out.get(r.evaluationId)?.push(r);
    return out;
  }

  /** Claims an evaluation for an attempt; false when it finished already (a redelivered job) or was cancelled. */
  async startEvaluation(id: string, workerId: string): Promise<boolean> {
    const rows = await this.sql<{ id: string }>(
      `UPDATE evaluations SET status = 'running', attempts = attempts + 1, worker_id = $2, error = NULL, progress = NULL,
         started_at = coalesce(started_at, now()), updated_at = now()
       WHERE id = $1 AND status IN ('queued','running') AND NOT cancel_requested RETURNING id`,
      [id, workerId],
    );
    return rows.length > 0;
  }

  async recordEvaluationProgress(id: string, progress: EvaluationProgressSnapshot): Promise<void> {
    await this.sql(`UPDATE evaluations SET progress = $2::jsonb, updated_at = now() WHERE id = $1 AND status = 'running'`, [
      id,
      JSON.stringify(progress),
    ]);
  }

  /**
   * Records the outcome once. Success writes the summary and the per-method rows in one
   * transaction guarded by the running status, so that a second delivery of the job changes
   * nothing; false when the evaluation had already left 'running'. A failure goes back to
   * queued while BullMQ will retry it.
   */
  async finishEvaluation(id: string, outcome: EvaluationFinish | { error: string; final: boolean }): Promise<boolean> {
    if (!('result' in outcome)) {
      const rows = await this.sql<{ id: string }>(
        `UPDATE evaluations SET status = $3, error = $2, updated_at = now(), finished_at = CASE WHEN $3 = 'failed' THEN now() ELSE NULL END
         WHERE id = $1 AND status IN ('queued','running') RETURNING id`,
        [id, outcome.error, outcome.final ? 'failed' : 'queued'],
      );
      return rows.length > 0;
    }
    const qr = this.dataSource.createQueryRunner();
    await qr.connect();
    await qr.startTransaction();
    try {
      const updated = (await qr.query(
        `UPDATE evaluations SET status = 'succeeded', result = $2::jsonb, error = NULL, duration_ms = $3, finished_at = now(), updated_at = now(),
           progress = CASE WHEN progress IS NULL THEN NULL ELSE jsonb_set(progress, '{done}', progress->'total') END
         WHERE id = $1 AND status = 'running' RETURNING id`,
        [id, JSON.stringify(outcome.result), outcome.durationMs === undefined ? null : Math.round(outcome.durationMs)],
        true,
      )) as QueryResult<{ id: string }[]>;
      const first = (updated.records ?? []).length > 0;
      if (first && outcome.rows?.length) {
        const rows = outcome.rows.map((r, position) => ({
          position,
          method: r.method,
          label: r.label,
          metrics: r.metrics,
          images: r.images,
          // JSON has no Infinity (an explainer timed at zero seconds); null says "not measurable".
          images_per_second: Number.isFinite(r.imagesPerSecond) ? r.imagesPerSecond : null,
          seconds: r.seconds,
        }));
        await qr.query(
          `INSERT INTO evaluation_results (evaluation_id, position, method, label, metrics, images, images_per_second, seconds)
           SELECT $1, r.position, r.method, r.label, r.metrics, r.images, r.images_per_second, r.seconds
           FROM jsonb_to_recordset($2::jsonb) AS r(position int, method text, label text, metrics jsonb, images int, images_per_second float8, seconds float8)
           ON CONFLICT (evaluation_id, method) DO NOTHING`,
          [id, JSON.stringify(rows)],
        );
      }
      await qr.commitTransaction();
      return first;
    } catch (e) {
      await qr.rollbackTransaction().catch(() => undefined);
      throw e;
    } finally {
      await qr.release();
    }
  }

  /** Flags a cancel: a queued evaluation is cancelled at once, a running one when its worker next looks. Null: no such evaluation. */
  async requestEvaluationCancel(id: string): Promise<EvaluationEntity | null> {
    await this.flagCancel('evaluations', id);
    return this.getEvaluation(id);
  }

  async markEvaluationCancelled(id: string): Promise<boolean> {
    return this.markCancelledIn('evaluations', id);
  }
}
