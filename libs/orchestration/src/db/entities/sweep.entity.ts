import { Column, Entity } from 'typeorm';
import { BaseEntity } from '../base.entity';
import type { SweepStatus } from './status';

@Entity({ name: 'sweeps' })
export class SweepEntity extends BaseEntity {
  @Column({ type: 'text', nullable: true })
  name!: string | null;

  /** The request as submitted (base config, grid, seeds), for display and resubmission. */
  @Column({ type: 'jsonb' })
  spec!: Record<string, unknown>;

  /** Grid axes in submission order (α and λ_class first by convention). */
  @Column({ type: 'jsonb' })
  axes!: string[];

  @Column({ type: 'text', default: 'queued' })
  status!: SweepStatus;

  /** When the status last changed (set by a database trigger on every status change). */
  @Column({ name: 'status_changed_at', type: 'timestamptz', default: () => 'now()' })
  statusChangedAt!: Date;

  @Column({ name: 'run_count', type: 'integer' })
  runCount!: number;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt!: Date | null;
}
