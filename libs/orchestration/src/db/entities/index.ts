export * from './status';
export * from './job-state.entity';
export * from './sweep.entity';
export * from './run.entity';
export * from './metric-point.entity';
export * from './evaluation.entity';
export * from './evaluation-result.entity';
import { EvaluationEntity } from './evaluation.entity';
import { EvaluationResultEntity } from './evaluation-result.entity';
import { MetricPointEntity } from './metric-point.entity';
import { RunEntity } from './run.entity';
import { SweepEntity } from './sweep.entity';

export const ENTITIES = [SweepEntity, RunEntity, MetricPointEntity, EvaluationEntity, EvaluationResultEntity];
