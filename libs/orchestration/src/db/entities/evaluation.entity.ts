import { Column, Entity, Index } from 'typeorm';
import { JobStateEntity } from './job-state.entity';

/** The latest progress an evaluation's worker reported. */
export interface EvaluationProgressSnapshot {
  /** Images scored so far, of `total` (the accuracy protocol reports none). */
  done: number;
  total: number;
  at: string;
}

@Entity({ name: 'evaluations' })
@Index('evaluations_created_at_idx', ['createdAt'])
@Index('evaluations_run_id_idx', ['runId'])
export class EvaluationEntity extends JobStateEntity<EvaluationProgressSnapshot> {
  /** The resolved EvaluationSpec: protocol, data set, methods, checkpoint and model. */
  @Column({ type: 'jsonb' })
  spec!: Record<string, unknown>;

  /** Copied out of the spec for filtering lists. */
  @Column({ type: 'text', default: 'accuracy' })
  protocol!: string;

  @Column({ name: 'run_id', type: 'uuid', nullable: true })
  runId!: string | null;

  /**
   * The outcome without its per-method rows (those are evaluation_results): protocol, data set,
   * model, backend, metric columns, conventions and saved maps — or the accuracy protocol's metrics.
   */
  @Column({ type: 'jsonb', nullable: true })
  result!: Record<string, unknown> | null;
}
