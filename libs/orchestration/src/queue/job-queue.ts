import { FlowProducer, Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { OnApplicationShutdown } from '@nestjs/common';
import type { OrchestrationConfig } from '../config/orchestration.config';
import { JOB_DEFINITIONS, jobIds, QUEUE_NAMES, type JobName, type JobPayloadInput, type QueueName } from './jobs';
import { createRedis } from './redis';

export interface RunJob {
  runId: string;
  config: Record<string, unknown>;
  /** Data-parallel ranks: one job each (default 1). */
  worldSize?: number;
}

/** The run's rank jobs, rank 0 first: every rank gets the same config and a job id of its own. */
function rankJobs(job: RunJob): JobPayloadInput<'run.train'>[] {
  return Array.from({ length: job.worldSize ?? 1 }, (_, rank) => ({ runId: job.runId, rank, config: job.config }));
}

/**
 * The one door to BullMQ on the producing side: typed job submission, the sweep flow, and the
 * queue handles that the dashboard shows.
 */
export class JobQueue implements OnApplicationShutdown {
  readonly queues: Record<QueueName, Queue>;
  private readonly flows: FlowProducer;

  constructor(
    private readonly config: OrchestrationConfig,
    private readonly connection: Redis = createRedis(config.redisUrl, 'ice-producer'),
  ) {
    const prefix = config.queuePrefix;
    this.queues = Object.fromEntries(QUEUE_NAMES.map((q) => [q, new Queue(q, { connection: this.connection, prefix })])) as Record<
      QueueName,
      Queue
    >;
    this.flows = new FlowProducer({ connection: this.connection, prefix });
  }

  /** Retries with exponential backoff; finished jobs are kept a while for the dashboard, then dropped. */
  private runJobOptions(runId: string, rank = 0): JobsOptions {
    return {
      jobId: jobIds.run(runId, rank),
      attempts: this.config.worker.attempts,
      backoff: { type: 'exponential', delay: this.config.worker.backoffMs },
      removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
      removeOnFail: { age: 30 * 24 * 3600 },
    };
  }

  private payload<N extends JobName>(_name: N, data: JobPayloadInput<N>): JobPayloadInput<N> {
    return data;
  }

  /** A run's jobs, one per data-parallel rank, added atomically (all ranks or none). */
  async enqueueRun(job: RunJob): Promise<void> {
    const name = 'run.train' satisfies JobName;
    await this.queues[JOB_DEFINITIONS[name].queue].addBulk(
      rankJobs(job).map((data) => ({ name, data: this.payload(name, data), opts: this.runJobOptions(job.runId, data.rank) })),
    );
  }

  /**
   * A sweep as one flow: the finalize parent waits for every run. A run that fails after its last
   * retry is moved to the parent's failed dependencies (ignoreDependencyOnFailure) instead of
   * failing the parent, so the other runs go on and the parent still completes. A data-parallel
   * run is one child per rank.
   */
  async enqueueSweep(sweepId: string, runs: RunJob[]): Promise<void> {
    const parent = 'sweep.finalize' satisfies JobName;
    const child = 'run.train' satisfies JobName;
    await this.flows.add({
      name: parent,
      queueName: JOB_DEFINITIONS[parent].queue,
      data: this.payload(parent, { sweepId }),
      opts: { jobId: jobIds.sweep(sweepId), removeOnComplete: { age: 7 * 24 * 3600 } },
      children: runs.flatMap(rankJobs).map((data) => ({
        name: child,
        queueName: JOB_DEFINITIONS[child].queue,
        data: this.payload(child, data),
        opts: { ...this.runJobOptions(data.runId, data.rank), ignoreDependencyOnFailure: true },
      })),
    });
  }

  async enqueueEvaluation(evaluationId: string, spec: Record<string, unknown>): Promise<void> {
    const name = 'evaluation.run' satisfies JobName;
    await this.queues[JOB_DEFINITIONS[name].queue].add(name, this.payload(name, { evaluationId, spec }), {
      jobId: jobIds.evaluation(evaluationId),
      attempts: 2,
      backoff: { type: 'exponential', delay: this.config.worker.backoffMs },
      removeOnComplete: { age: 7 * 24 * 3600 },
    });
  }

  /** Where the run's job (rank 0's) is (waiting, active, completed…), or null when BullMQ no longer has it. */
  async runJobState(runId: string): Promise<string | null> {
    const job = await this.queues.training.getJob(jobIds.run(runId));
    return job ? await job.getState() : null;
  }

  async ping(): Promise<void> {
    await this.connection.ping();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((q) => q.close()));
    await this.flows.close();
    if (this.connection.status !== 'end') await this.connection.quit().catch(() => undefined);
  }
}
