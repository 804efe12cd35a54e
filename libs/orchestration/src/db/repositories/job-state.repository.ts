import type { JobStateEntity } from '../entities';
import type { OrchestrationDatabase } from '../orchestration.database';

export interface Page {
  limit: number;
  offset: number;
}

/**
 * What runs and evaluations share (JobStateEntity's columns): the cancel protocol. A queued row is
 * cancelled at once (its job, when a worker takes it, finds it cancelled); a running one is only
 * flagged until its worker stops it. `table` is one of the two tables, never user input.
 */
export abstract class JobStateRepository<E extends JobStateEntity<object>> {
  protected constructor(
    protected readonly db: OrchestrationDatabase,
    private readonly table: 'runs' | 'evaluations',
  ) {}

  abstract get(id: string): Promise<E | null>;

  /** Flags a cancel (see the class comment) and returns the row; null: no such row. */
  async requestCancel(id: string): Promise<E | null> {
    await this.db.rows(
      `UPDATE ${this.table} SET cancel_requested = true, updated_at = now(),
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
         finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END
       WHERE id = $1 AND status IN ('queued','running')`,
      [id],
    );
    return this.get(id);
  }

  /** The worker stopped it: cancelled, unless it had already finished (false). */
  async markCancelled(id: string): Promise<boolean> {
    const rows = await this.db.rows<{ id: string }>(
      `UPDATE ${this.table} SET status = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now()
       WHERE id = $1 AND status IN ('queued','running') RETURNING id`,
      [id],
    );
    return rows.length > 0;
  }
}
