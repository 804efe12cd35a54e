import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { OrchestrationModule, QueueModule, type OrchestrationConfig } from '@ice/orchestration';
import { ApiKeyGuard } from './common/api-key';
import { IceErrorFilter } from './common/ice-error.filter';
import { PublicPaths, PublicPathsInterceptor } from './common/public-paths';
import { QueueDashboardModule } from './common/queue-dashboard.module';
import { EvaluationsModule } from './evaluations/evaluations.module';
import { ExperimentsModule } from './experiments/experiments.module';
import { HealthModule } from './health/health.module';
import { RunsModule } from './runs/runs.module';
import { SchemasModule } from './schemas/schemas.module';
import { SweepsModule } from './sweeps/sweeps.module';

/**
 * The HTTP API: the shared external systems (OrchestrationModule), the producing side of the
 * queues (QueueModule), and one feature module per resource. Every mutation needs an API key
 * (and every read too with READ_AUTH=on); domain errors become HTTP statuses in one filter;
 * responses name server files relative to their root (PublicPaths).
 */
@Module({})
export class ApiModule {
  static forRoot(config: OrchestrationConfig): DynamicModule {
    return {
      module: ApiModule,
      imports: [
        OrchestrationModule.forRoot(config),
        QueueModule.forProducer(config),
        QueueDashboardModule.forRoot(config.apiKeys),
        ExperimentsModule,
        SweepsModule,
        RunsModule,
        EvaluationsModule,
        HealthModule,
        SchemasModule,
      ],
      providers: [
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        { provide: APP_FILTER, useClass: IceErrorFilter },
        PublicPaths,
        { provide: APP_INTERCEPTOR, useClass: PublicPathsInterceptor },
      ],
    };
  }
}
