import { Global, Module, type DynamicModule, type Provider } from '@nestjs/common';
import { ArtifactStore } from './artifacts/artifact-store';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from './config/orchestration.config';
import { OrchestrationDatabase } from './db/orchestration.database';
import { EvaluationRepository, MetricRepository, RunRepository, SweepRepository } from './db/repositories';
import { EventBus } from './events/event-bus';
import { OutcomeStore } from './outcomes/outcome.store';
import { ClusterState } from './queue/cluster-state';

/**
 * The external systems the API and the workers share, each behind one class: the database
 * (OrchestrationDatabase, read and written through one repository per entity), pub/sub (EventBus),
 * the worker registry and leases (ClusterState)
 * the artifact directory (ArtifactStore) and the run outcomes kept there (OutcomeStore). The queues are QueueModule's. The configuration is
 * read once by the entry point and passed in.
 */
@Global()
@Module({})
export class OrchestrationModule {
  static forRoot(config: OrchestrationConfig): DynamicModule {
    const repositories: Provider[] = [
      { provide: SweepRepository, useFactory: (db: OrchestrationDatabase) => new SweepRepository(db), inject: [OrchestrationDatabase] },
      { provide: MetricRepository, useFactory: (db: OrchestrationDatabase) => new MetricRepository(db), inject: [OrchestrationDatabase] },
      {
        provide: RunRepository,
        useFactory: (db: OrchestrationDatabase, sweeps: SweepRepository, metrics: MetricRepository) =>
          new RunRepository(db, sweeps, metrics),
        inject: [OrchestrationDatabase, SweepRepository, MetricRepository],
      },
      {
        provide: EvaluationRepository,
        useFactory: (db: OrchestrationDatabase) => new EvaluationRepository(db),
        inject: [OrchestrationDatabase],
      },
    ];
    return {
      module: OrchestrationModule,
      providers: [
        { provide: ORCHESTRATION_CONFIG, useValue: config },
        // Async factory: nothing that needs the database is constructed before it is connected and migrated.
        { provide: OrchestrationDatabase, useFactory: () => OrchestrationDatabase.open(config) },
        ...repositories,
        { provide: EventBus, useFactory: () => new EventBus(config) },
        { provide: ClusterState, useFactory: () => new ClusterState(config) },
        { provide: ArtifactStore, useFactory: () => new ArtifactStore(config.artifactDir) },
        { provide: OutcomeStore, useFactory: (artifacts: ArtifactStore) => new OutcomeStore(artifacts), inject: [ArtifactStore] },
      ],
      exports: [
        ORCHESTRATION_CONFIG,
        OrchestrationDatabase,
        SweepRepository,
        MetricRepository,
        RunRepository,
        EvaluationRepository,
        EventBus,
        ClusterState,
        ArtifactStore,
        OutcomeStore,
      ],
    };
  }
}
