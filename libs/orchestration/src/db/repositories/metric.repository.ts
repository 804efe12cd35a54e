import type { OrchestrationDatabase } from '../orchestration.database';

export type MetricSeries = Record<string, { step: number; value: number }[]>;

/** A run's metric series (metric_points): one value per (run, name, step), so a resumed or redelivered run rewrites a step. */
export class MetricRepository {
  constructor(private readonly db: OrchestrationDatabase) {}

  /** Adds (or rewrites) the points of one step; non-finite values are left out. */
  async add(runId: string, step: number, points: Record<string, number>): Promise<void> {
    const entries = Object.entries(points).filter(([, v]) => Number.isFinite(v));
    if (!entries.length) return;
    await this.db.rows(
      `INSERT INTO metric_points (run_id, name, step, value)
       SELECT $1, name, $2, value FROM unnest($3::text[], $4::float8[]) AS t(name, value)
       ON CONFLICT (run_id, name, step) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
      [runId, step, entries.map(([k]) => k), entries.map(([, v]) => v)],
    );
  }

  /** The run's series by name (all, or those named), each in step order. */
  async series(runId: string, names?: string[]): Promise<MetricSeries> {
    const rows = await this.db.rows<{ name: string; step: number; value: number }>(
      `SELECT name, step, value FROM metric_points WHERE run_id = $1 AND ($2::text[] IS NULL OR name = ANY($2::text[])) ORDER BY name, step`,
      [runId, names?.length ? names : null],
    );
    const out: MetricSeries = {};
    for (const r of rows) (out[r.name] ??= []).push({ step: r.step, value: r.value });
    return out;
  }
}
