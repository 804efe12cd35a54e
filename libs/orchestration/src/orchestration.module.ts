import { Global, Module, type DynamicModule } from '@nestjs/common';
import { ArtifactStore } from './artifacts/artifact-store';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from './config/orchestration.config';
import { OrchestrationStore } from './db/orchestration.store';
import { EventBus } from './events/event-bus';
import { JobQueue } from './queue/job-queue';

/**
 * The external systems shared by the API and the workers, each behind one class: the database
 * (OrchestrationStore), the queue (JobQueue), pub/sub (EventBus) and the artifact directory
 * (ArtifactStore). The configuration is read once by the entry point and passed in.
 */
@Global()
@Module({})
export class OrchestrationModule {
  static forRoot(config: OrchestrationConfig): DynamicModule {
    return {
      module: OrchestrationModule,
      providers: [
        { provide: ORCHESTRATION_CONFIG, useValue: config },
        // Async factory: nothing that needs the database is constructed before it is connected and migrated.
        { provide: OrchestrationStore, useFactory: () => OrchestrationStore.open(config) },
        { provide: JobQueue, useFactory: () => new JobQueue(config) },
        { provide: EventBus, useFactory: () => new EventBus(config) },
        { provide: ArtifactStore, useFactory: () => new ArtifactStore(config.artifactDir) },
      ],
      exports: [ORCHESTRATION_CONFIG, OrchestrationStore, JobQueue, EventBus, ArtifactStore],
    };
  }
}
