import type { OrchestrationDatabase } from '../orchestration.database';
import { EvaluationRepository } from './evaluation.repository';
import { MetricRepository } from './metric.repository';
import { RunRepository } from './run.repository';
import { SweepRepository } from './sweep.repository';

export * from './job-state.repository';
export * from './metric.repository';
export * from './sweep.repository';
export * from './run.repository';
export * from './evaluation.repository';

export interface Repositories {
  sweeps: SweepRepository;
  runs: RunRepository;
  metrics: MetricRepository;
  evaluations: EvaluationRepository;
}

/** One repository per entity over one database (the Nest module provides the same set). */
export function createRepositories(db: OrchestrationDatabase): Repositories {
  const sweeps = new SweepRepository(db);
  const metrics = new MetricRepository(db);
  return { sweeps, metrics, runs: new RunRepository(db, sweeps, metrics), evaluations: new EvaluationRepository(db) };
}
