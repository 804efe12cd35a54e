import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { DiscoveryService, Reflector } from '@nestjs/core';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  buildHandlerMap,
  createRedis,
  EventBus,
  isJobName,
  JOB_DEFINITIONS,
  JOB_HANDLER_METADATA,
  jobIds,
  ORCHESTRATION_CONFIG,
  parseJobPayload,
  type HandlerMap,
  type JobHandler,
  type JobName,
  type OrchestrationConfig,
  type QueueName,
} from '@ice/orchestration';
import { MAX_WORLD_SIZE } from '@ice/experiments';
import { CANCEL_REASON_SHUTDOWN, CANCEL_REASON_USER } from './handlers/cancel-reasons';

/**
 * The consuming side of BullMQ: one Worker per configured queue, each job routed by name to its
 * one handler (checked at boot) after its payload is validated again. Cancel requests arrive by
 * pub/sub and abort the job through BullMQ's own cancellation (the processor's AbortSignal).
 */
@Injectable()
export class QueueWorkers implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('worker');
  private handlers!: HandlerMap;
  private readonly workers: Worker[] = [];
  private readonly connections: Redis[] = [];
  private offCancel: (() => Promise<void>) | null = null;

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly discovery: DiscoveryService,
    private readonly reflector: Reflector,
    private readonly bus: EventBus,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const found: { name: string; handler: JobHandler<JobName>; owner: string }[] = [];
    for (const w of this.discovery.getProviders()) {
      if (!w.metatype || !w.instance) continue;
      const name = this.reflector.get<string | undefined>(JOB_HANDLER_METADATA, w.metatype as () => unknown);
      if (name) found.push({ name, handler: w.instance as JobHandler<JobName>, owner: String(w.name) });
    }
    this.handlers = buildHandlerMap(found);

    this.offCancel = await this.bus.onCancel(({ runId }) => {
      // Any rank of a data-parallel run may be running here; cancelJob ignores ids this worker does not hold.
      for (let rank = 0; rank < MAX_WORLD_SIZE; rank++) {
        for (const w of this.workers)
          if (w.cancelJob(jobIds.run(runId, rank), CANCEL_REASON_USER))
            this.log.log(`cancelling run ${runId}${rank ? ` rank ${rank}` : ''}`);
      }
    });

    const w = this.config.worker;
    for (const queue of w.queues) {
      const connection = createRedis(this.config.redisUrl, `ice-worker-${queue}`);
      this.connections.push(connection);
      const worker = new Worker(queue, (job, token, signal) => this.dispatch(queue, job, token, signal), {
        connection,
        prefix: this.config.queuePrefix,
        concurrency: queue === 'sweeps' ? 4 : w.concurrency,
        lockDuration: w.lockDurationMs,
        stalledInterval: w.stalledIntervalMs,
        // Each crash of a worker holding the job counts as a stall; allow as many as attempts.
        maxStalledCount: w.attempts,
        autorun: true,
      });
      worker.on('error', (e) => this.log.error(`${queue}: ${e.message}`));
      worker.on('failed', (job, e) => this.log.warn(`${queue}: job ${job?.id} failed: ${e.message}`));
      worker.on('stalled', (id) => this.log.warn(`${queue}: job ${id} stalled; it will be retried`));
      this.workers.push(worker);
    }
    await Promise.all(this.workers.map((x) => x.waitUntilReady()));
    this.log.log(`worker ${w.id} taking jobs from ${w.queues.join(', ')} (concurrency ${w.concurrency}, lock ${w.lockDurationMs} ms)`);
  }

  private async dispatch(queue: QueueName, job: Job, token: string | undefined, signal: AbortSignal | undefined): Promise<unknown> {
    if (!isJobName(job.name) || JOB_DEFINITIONS[job.name].queue !== queue) {
      throw new UnrecoverableError(`no job named ${job.name} belongs on queue ${queue}`);
    }
    let payload;
    try {
      payload = parseJobPayload(job.name, job.data);
    } catch (e) {
      throw new UnrecoverableError((e as Error).message);
    }
    const handler: JobHandler<JobName> = this.handlers[job.name];
    return handler.handle(payload, { job, token, signal });
  }

  /** Stops taking jobs; an active run is handed back (it resumes from its checkpoint elsewhere). */
  async onApplicationShutdown(): Promise<void> {
    await this.offCancel?.();
    for (const w of this.workers) w.cancelAllJobs(CANCEL_REASON_SHUTDOWN);
    await Promise.all(this.workers.map((w) => w.close()));
    // Connections we created are ours to close (BullMQ leaves a passed-in instance open).
    await Promise.all(this.connections.map((c) => c.quit().catch(() => undefined)));
  }
}
