import { Module, type DynamicModule } from '@nestjs/common';
import { OrchestrationModule, QueueModule, type OrchestrationConfig } from '@ice/orchestration';
import { EvaluationHandler } from './handlers/evaluation.handler';
import { FinalizeSweepHandler } from './handlers/finalize-sweep.handler';
import { TrainRunHandler } from './handlers/train-run.handler';

/** A worker process: the shared external systems, the configured queues' consumers, and one handler per job name. */
@Module({})
export class WorkerModule {
  static forRoot(config: OrchestrationConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [OrchestrationModule.forRoot(config), QueueModule.forConsumer(config)],
      providers: [TrainRunHandler, FinalizeSweepHandler, EvaluationHandler],
    };
  }
}
