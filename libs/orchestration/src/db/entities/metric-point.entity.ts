import { Column, Entity, Index } from 'typeorm';
import { BaseEntity } from '../base.entity';

/** One value of a run's metric series; a resumed or redelivered run rewrites a step, never duplicates it. */
@Entity({ name: 'metric_points' })
@Index('metric_points_run_name_step_key', ['runId', 'name', 'step'], { unique: true })
export class MetricPointEntity extends BaseEntity {
  @Column({ name: 'run_id', type: 'uuid' })
  runId!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'integer' })
  step!: number;

  @Column({ type: 'double precision' })
  value!: number;
}
