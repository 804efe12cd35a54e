import { Module, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { BullModule } from '@nestjs/bullmq';
import type { OrchestrationConfig } from '../config/orchestration.config';
import { JobQueue } from './job-queue';
import { JobWorkers, QUEUE_PROCESSORS } from './job-workers';
import { QUEUE_NAMES, SWEEP_FLOW, type QueueName } from './queues';
import { queueProcessor, workerOptions } from './queue-processor';
import { WorkerPresence } from '../workers/worker-presence';
import { WorkerRegistry } from '../workers/worker-registry';
import { Reconciler } from '../reconcile/reconciler';

/** One Redis connection setting and one key prefix for every queue, flow producer and worker. */
function bullRoot(config: OrchestrationConfig): DynamicModule {
  return BullModule.forRoot({ connection: { url: config.redisUrl }, prefix: config.queuePrefix });
}

function registerQueues(queues: readonly QueueName[]): DynamicModule {
  return BullModule.registerQueue(...queues.map((name) => ({ name })));
}

/**
 * BullMQ through @nestjs/bullmq, with the typed job registry on top. The producer (the API) gets
 * every queue, the sweep flow producer, JobQueue and the worker registry (to admit data-parallel
 * runs); a consumer (a worker) gets one processor per queue it is configured to take jobs from,
 * JobWorkers, which checks the handler registry at boot before any of them runs, and its presence
 * in the worker registry. Both run the Reconciler (one process at a time).
 */
@Module({})
export class QueueModule {
  /** Global: every feature module of the API submits through JobQueue. */
  static forProducer(config: OrchestrationConfig): DynamicModule {
    return {
      module: QueueModule,
      global: true,
      imports: [bullRoot(config), registerQueues(QUEUE_NAMES), BullModule.registerFlowProducer({ name: SWEEP_FLOW })],
      providers: [JobQueue, { provide: WorkerRegistry, useFactory: () => new WorkerRegistry(config) }, Reconciler],
      exports: [JobQueue, WorkerRegistry, Reconciler],
    };
  }

  /** Not global, so that it shuts down (handing back its active jobs) before the global database and Redis connections close. */
  static forConsumer(config: OrchestrationConfig): DynamicModule {
    const processors = config.worker.queues.map((q) => queueProcessor(q, workerOptions(config, q)));
    return {
      module: QueueModule,
      // Every queue and the flow producer too: the worker's reconciler re-adds lost jobs of any queue.
      imports: [bullRoot(config), registerQueues(QUEUE_NAMES), BullModule.registerFlowProducer({ name: SWEEP_FLOW }), DiscoveryModule],
      providers: [
        ...processors,
        { provide: QUEUE_PROCESSORS, useFactory: (...instances: unknown[]) => instances, inject: processors },
        { provide: WorkerRegistry, useFactory: () => new WorkerRegistry(config) },
        WorkerPresence,
        JobWorkers,
        JobQueue,
        Reconciler,
      ],
      exports: [Reconciler],
    };
  }
}
