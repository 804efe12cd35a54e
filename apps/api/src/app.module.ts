import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { BullBoardModule } from '@bull-board/nestjs';
import { ExpressAdapter } from '@bull-board/express';
import { OrchestrationModule, type OrchestrationConfig } from '@ice/orchestration';
import { ApiKeyGuard, dashboardKeyMiddleware } from './common/api-key';
import { IceErrorFilter } from './common/ice-error.filter';
import { QueueDashboard } from './common/queue-dashboard';
import { EvaluationsController } from './evaluations/evaluations.controller';
import { EvaluationsService } from './evaluations/evaluations.service';
import { ExperimentsController } from './experiments/experiments.controller';
import { HealthController } from './health/health.controller';
import { RunsController } from './runs/runs.controller';
import { RunsService } from './runs/runs.service';
import { SubmissionRules } from './runs/submission.rules';
import { SweepsController } from './sweeps/sweeps.controller';
import { SweepsService } from './sweeps/sweeps.service';

@Module({})
export class ApiModule {
  static forRoot(config: OrchestrationConfig): DynamicModule {
    return {
      module: ApiModule,
      imports: [
        OrchestrationModule.forRoot(config),
        BullBoardModule.forRoot({ route: '/queues', adapter: ExpressAdapter, middleware: dashboardKeyMiddleware(config.apiKeys) }),
      ],
      controllers: [ExperimentsController, SweepsController, RunsController, EvaluationsController, HealthController],
      providers: [
        SubmissionRules,
        RunsService,
        SweepsService,
        EvaluationsService,
        QueueDashboard,
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        { provide: APP_FILTER, useClass: IceErrorFilter },
      ],
    };
  }
}
