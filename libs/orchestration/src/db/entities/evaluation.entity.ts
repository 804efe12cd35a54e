import { Column, Entity } from 'typeorm';
import { BaseEntity } from '../base.entity';
import type { RunStatus } from './status';

@Entity({ name: 'evaluations' })
export class EvaluationEntity extends BaseEntity {
  /** Protocol, data set, methods, and what is evaluated (a run's checkpoint or a weights file). */
  @Column({ type: 'jsonb' })
  spec!: Record<string, unknown>;

  @Column({ name: 'run_id', type: 'uuid', nullable: true })
  runId!: string | null;

  @Column({ type: 'text', default: 'queued' })
  status!: RunStatus;

  @Column({ type: 'jsonb', nullable: true })
  result!: Record<string, unknown> | null;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'started_at', type: 'timestamptz', nullable: true })
  startedAt!: Date | null;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt!: Date | null;
}
