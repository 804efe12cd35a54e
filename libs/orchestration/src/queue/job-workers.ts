import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { DiscoveryService, Reflector } from '@nestjs/core';
import { MAX_WORLD_SIZE } from '@ice/experiments';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from '../config/orchestration.config';
import { EventBus } from '../events/event-bus';
import {
  buildHandlerMap,
  CANCEL_REASON_SHUTDOWN,
  CANCEL_REASON_USER,
  dispatchJob,
  JOB_HANDLER_METADATA,
  type JobHandler,
} from './job-handler';
import { jobIds, type JobName } from './jobs';
import type { QueueProcessor } from './queue-processor';
import { redisOutage } from './redis';
import { WorkerPresence } from '../workers/worker-presence';

/** The processors of the queues this worker consumes (see QueueModule.forConsumer). */
export const QUEUE_PROCESSORS = Symbol('QUEUE_PROCESSORS');

/**
 * The consuming side of BullMQ, on top of @nestjs/bullmq's Workers: at boot it checks that every
 * job name has exactly one handler, routes each queue through the registry and only then starts the
 * Workers. Cancel requests arrive by pub/sub and abort the job through BullMQ's own cancellation
 * (the processor's AbortSignal). On shutdown the active jobs are handed back before the Workers close.
 */
@Injectable()
export class JobWorkers implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly log = new Logger('worker');
  private offCancel: (() => Promise<void>) | null = null;

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    @Inject(QUEUE_PROCESSORS) private readonly processors: QueueProcessor[],
    private readonly discovery: DiscoveryService,
    private readonly reflector: Reflector,
    private readonly bus: EventBus,
    private readonly presence: WorkerPresence,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const handlers = buildHandlerMap(this.discoverHandlers());
    this.offCancel = await this.bus.onCancel(({ runId }) => this.cancelRun(runId));
    for (const p of this.processors) {
      p.route(async (job, token, signal) => {
        // The registry knows which jobs this worker holds, so that they are taken back at once if it dies.
        if (job.id && token) this.presence.hold(p.queue, job.id, token);
        try {
          return await dispatchJob(handlers, p.queue, job, token, signal);
        } finally {
          if (job.id) this.presence.release(p.queue, job.id);
        }
      });
      const { worker } = p;
      // Connection errors: one line per outage (RedisOutage); anything else is logged as it comes.
      redisOutage().watch(`worker ${p.queue}`, worker);
      worker.on('failed', (job, e) => this.log.warn(`${p.queue}: job ${job?.id} failed: ${e.message}`));
      worker.on('stalled', (id) => this.log.warn(`${p.queue}: job ${id} stalled; it will be retried`));
      worker.run().catch((e: unknown) => this.log.error(`${p.queue}: the worker stopped: ${(e as Error).message}`));
    }
    await Promise.all(this.processors.map((p) => p.worker.waitUntilReady()));
    const w = this.config.worker;
    this.log.log(`worker ${w.id} taking jobs from ${w.queues.join(', ')} (concurrency ${w.concurrency}, lock ${w.lockDurationMs} ms)`);
  }

  private discoverHandlers(): { name: string; handler: JobHandler<JobName>; owner: string }[] {
    const found: { name: string; handler: JobHandler<JobName>; owner: string }[] = [];
    for (const w of this.discovery.getProviders()) {
      if (!w.metatype || !w.instance) continue;
      const name = this.reflector.get<string | undefined>(JOB_HANDLER_METADATA, w.metatype as () => unknown);
      if (name) found.push({ name, handler: w.instance as JobHandler<JobName>, owner: String(w.name) });
    }
    return found;
  }

  /** Any rank of a data-parallel run may be running here; cancelJob ignores ids this worker does not hold. */
  private cancelRun(runId: string): void {
    for (let rank = 0; rank < MAX_WORLD_SIZE; rank++) {
      for (const p of this.processors)
        if (p.worker.cancelJob(jobIds.run(runId, rank), CANCEL_REASON_USER))
          this.log.log(`cancelling run ${runId}${rank ? ` rank ${rank}` : ''}`);
    }
  }

  /** Stops taking jobs; an active run is handed back (it resumes from its checkpoint elsewhere). */
  async beforeApplicationShutdown(): Promise<void> {
    await this.offCancel?.();
    this.offCancel = null;
    for (const p of this.processors) p.worker.cancelAllJobs(CANCEL_REASON_SHUTDOWN);
  }

  /** Waits for the handed-back jobs before the database and Redis connections close (they close after this module's). */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.processors.map((p) => p.worker.close()));
  }
}
