import { In, type FindOptionsWhere } from 'typeorm';
import { isTerminalSweepStatus, RunEntity, SweepEntity, type RunStatus, type SweepStatus } from '../entities';
import type { OrchestrationDatabase } from '../orchestration.database';
import type { Page } from './job-state.repository';
import type { NewRun } from './run.repository';

export type StatusCounts = Record<RunStatus, number>;

export interface NewSweep {
  name: string | null;
  spec: Record<string, unknown>;
  axes: string[];
  runs: NewRun[];
}

/** Sweeps, their run counts per status, and their lifecycle. */
export class SweepRepository {
  constructor(private readonly db: OrchestrationDatabase) {}

  private get sweeps() {
    return this.db.repository(SweepEntity);
  }

  /** The sweep and all its runs (in the order given) in one transaction: a sweep is never visible half-created. */
  async create(input: NewSweep): Promise<{ sweep: SweepEntity; runs: RunEntity[] }> {
    return this.db.transaction(async (m) => {
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

  get(id: string): Promise<SweepEntity | null> {
    return this.sweeps.findOneBy({ id });
  }

  /** Every queued or running sweep, oldest first (what the reconciler looks at). */
  unfinished(): Promise<SweepEntity[]> {
    return this.sweeps.find({ where: { status: In(['queued', 'running']) }, order: { createdAt: 'ASC' } });
  }

  async list(filter: { status?: SweepStatus; name?: string }, page: Page): Promise<{ items: SweepEntity[]; total: number }> {
    const where: FindOptionsWhere<SweepEntity> = {};
    if (filter.status) where.status = filter.status;
    if (filter.name) where.name = filter.name;
    const [items, total] = await this.sweeps.findAndCount({ where, order: { createdAt: 'DESC' }, take: page.limit, skip: page.offset });
    return { items, total };
  }

  /** Runs per status of each sweep (every status present, 0 when none). */
  async counts(sweepIds: string[]): Promise<Map<string, StatusCounts>> {
    const out = new Map<string, StatusCounts>();
    if (!sweepIds.length) return out;
    const rows = await this.db.rows<{ sweep_id: string; status: RunStatus; n: string }>(
      'SELECT sweep_id, status, count(*) AS n FROM runs WHERE sweep_id = ANY($1::uuid[]) GROUP BY sweep_id, status',
      [sweepIds],
    );
    for (const id of sweepIds) out.set(id, { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
    for (const r of rows) out.get(r.sweep_id)![r.status] = Number(r.n);
    return out;
  }

  /** One sweep's counts. */
  async countsOf(sweepId: string): Promise<StatusCounts> {
    return (await this.counts([sweepId])).get(sweepId)!;
  }

  /** Moves a sweep forward; a terminal sweep is not reopened. Returns false when nothing changed. */
  async setStatus(id: string, status: SweepStatus): Promise<boolean> {
    const terminal = isTerminalSweepStatus(status);
    const rows = await this.db.rows<{ id: string }>(
      `UPDATE sweeps SET status = $2, updated_at = now(), finished_at = CASE WHEN $3 THEN now() ELSE finished_at END
       WHERE id = $1 AND status IN ('queued','running') AND status <> $2 RETURNING id`,
      [id, status, terminal],
    );
    return rows.length > 0;
  }
}
