import { Module, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { OrchestrationModule, type OrchestrationConfig } from '@ice/orchestration';
import { EvaluationHandler } from './handlers/evaluation.handler';
import { FinalizeSweepHandler } from './handlers/finalize-sweep.handler';
import { TrainRunHandler } from './handlers/train-run.handler';
import { QueueWorkers } from './queue-workers';

@Module({})
export class WorkerModule {
  static forRoot(config: OrchestrationConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [OrchestrationModule.forRoot(config), DiscoveryModule],
      providers: [TrainRunHandler, FinalizeSweepHandler, EvaluationHandler, QueueWorkers],
    };
  }
}
