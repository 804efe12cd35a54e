import { Column } from 'typeorm';
import { BaseEntity } from '../base.entity';
import type { RunStatus } from './status';

/**
 * The state every queued job's row keeps (runs and evaluations): lifecycle status, attempts,
 * latest progress report, error, the worker holding it, the cancel flag and timings. Declared once
 * here; each table keeps the same column names and types.
 */
export abstract class JobStateEntity<P extends object> extends BaseEntity {
  @Column({ type: 'text', default: 'queued' })
  status!: RunStatus;

  /** When the status last changed (set by a database trigger on every status change). */
  @Column({ name: 'status_changed_at', type: 'timestamptz', default: () => 'now()' })
  statusChangedAt!: Date;

  @Column({ type: 'integer', default: 0 })
  attempts!: number;

  /** The latest progress the worker reported (the table's own snapshot shape). */
  @Column({ type: 'jsonb', nullable: true })
  progress!: P | null;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'worker_id', type: 'text', nullable: true })
  workerId!: string | null;

  @Column({ name: 'cancel_requested', type: 'boolean', default: false })
  cancelRequested!: boolean;

  @Column({ name: 'started_at', type: 'timestamptz', nullable: true })
  startedAt!: Date | null;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt!: Date | null;

  /** Wall time of the attempt that finished (for a run: training and scoring). */
  @Column({ name: 'duration_ms', type: 'integer', nullable: true })
  durationMs!: number | null;
}
