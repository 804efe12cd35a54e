import { Column, Entity, Index } from 'typeorm';
import type { RunProgressSnapshot } from '@ice/experiments';
import { JobStateEntity } from './job-state.entity';

/** The stored config: what ran, with which code, on which backend. */
export interface StoredRunConfig {
  run: Record<string, unknown>;
  codeVersion: string;
  /** Null until a worker has picked a tfjs backend. */
  backend: string | null;
}

@Entity({ name: 'runs' })
// One row per (sweep, grid cell, seed): a duplicated submission or redelivered job cannot add a second.
@Index('runs_sweep_cell_seed_key', ['sweepId', 'cellKey', 'seed'], { unique: true })
export class RunEntity extends JobStateEntity<RunProgressSnapshot> {
  @Column({ name: 'sweep_id', type: 'uuid', nullable: true })
  sweepId!: string | null;

  @Column({ name: 'cell_key', type: 'text', default: '' })
  cellKey!: string;

  /** Grid axis → value of this run's cell (empty for a single experiment). */
  @Column({ type: 'jsonb', default: {} })
  cell!: Record<string, number | string | boolean>;

  @Column({ type: 'integer' })
  seed!: number;

  @Column({ type: 'jsonb' })
  config!: StoredRunConfig;

  @Column({ type: 'jsonb', nullable: true })
  metrics!: Record<string, number> | null;

  /** Final checkpoint (the finished model). */
  @Column({ type: 'text', nullable: true })
  checkpoint!: string | null;

  /** Latest resumable checkpoint. */
  @Column({ name: 'last_checkpoint', type: 'text', nullable: true })
  lastCheckpoint!: string | null;

  @Column({ name: 'resumed_from_step', type: 'integer', nullable: true })
  resumedFromStep!: number | null;
}
