import { Inject, Injectable } from '@nestjs/common';
import { InjectFlowProducer, InjectQueue } from '@nestjs/bullmq';
import type { FlowProducer, JobsOptions, Queue } from 'bullmq';
import type { EvaluationSpec } from '@ice/evaluation';
import type { RunConfig } from '@ice/experiments';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from '../config/orchestration.config';
import { JOB_DEFINITIONS, jobIds, type JobName, type JobPayloadInput } from './jobs';
import { SWEEP_FLOW, type QueueName } from './queues';
import { redisOutage } from './redis';

/** What the reconciler needs of a job: where it is, and why it failed. */
export interface JobSnapshot {
  state: string;
  failedReason: string | null;
  attemptsMade: number;
}

/** A run to queue: its row and its parsed config (which says how many data-parallel ranks it has). */
export interface RunJob {
  runId: string;
  config: RunConfig;
}

/** The run's rank jobs, rank 0 first: every rank gets the same config and a job id of its own. */
function rankJobs(job: RunJob): JobPayloadInput<'run.train'>[] {
  return Array.from({ length: job.config.worldSize }, (_, rank) => ({ runId: job.runId, rank, config: job.config }));
}

function payload<N extends JobName>(_name: N, data: JobPayloadInput<N>): JobPayloadInput<N> {
  return data;
}

/**
 * The producing side of BullMQ: typed job submission and the sweep flow, over the queues and the
 * flow producer that @nestjs/bullmq registers (see QueueModule), which the dashboard shows too.
 */
@Injectable()
export class JobQueue {
  readonly queues: Record<QueueName, Queue>;

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    @InjectQueue('training') training: Queue,
    @InjectQueue('evaluation') evaluation: Queue,
    @InjectQueue('sweeps') sweeps: Queue,
    @InjectFlowProducer(SWEEP_FLOW) private readonly flows: FlowProducer,
  ) {
    this.queues = { training, evaluation, sweeps };
    // Each failed reconnection try of each queue emits 'error': one line per outage instead.
    for (const [name, q] of Object.entries(this.queues)) redisOutage().watch(`queue ${name}`, q);
    redisOutage().watch('sweep flows', flows);
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

  /** A run's jobs, one per data-parallel rank, added atomically (all ranks or none). */
  async enqueueRun(job: RunJob): Promise<void> {
    const name = 'run.train' satisfies JobName;
    await this.queues[JOB_DEFINITIONS[name].queue].addBulk(
      rankJobs(job).map((data) => ({ name, data: payload(name, data), opts: this.runJobOptions(job.runId, data.rank) })),
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
      data: payload(parent, { sweepId }),
      opts: { jobId: jobIds.sweep(sweepId), removeOnComplete: { age: 7 * 24 * 3600 } },
      children: runs.flatMap(rankJobs).map((data) => ({
        name: child,
        queueName: JOB_DEFINITIONS[child].queue,
        data: payload(child, data),
        opts: { ...this.runJobOptions(data.runId, data.rank), ignoreDependencyOnFailure: true },
      })),
    });
  }

  async enqueueEvaluation(evaluationId: string, spec: EvaluationSpec): Promise<void> {
    const name = 'evaluation.run' satisfies JobName;
    await this.queues[JOB_DEFINITIONS[name].queue].add(name, payload(name, { evaluationId, spec }), {
      jobId: jobIds.evaluation(evaluationId),
      attempts: 2,
      backoff: { type: 'exponential', delay: this.config.worker.backoffMs },
      removeOnComplete: { age: 7 * 24 * 3600 },
    });
  }

  /**
   * Takes the jobs of cancelled runs (every rank) off the queue, so they leave the waiting list at
   * once instead of each being picked up by a worker only to find its row cancelled. A job a
   * worker has locked meanwhile is not removed (BullMQ answers 0): its worker finds the row
   * cancelled and ends it. Removing a sweep's child also releases the sweep's finalize parent
   * from waiting for it. Returns how many jobs were removed.
   */
  async removeRunJobs(runs: readonly { id: string; worldSize: number }[]): Promise<number> {
    const ids = runs.flatMap((r) => Array.from({ length: Math.max(1, r.worldSize) }, (_, rank) => jobIds.run(r.id, rank)));
    let removed = 0;
    // Pipelined in chunks on the queue's connection: 3,000 removals are a few round trips' worth, not 3,000.
    for (let i = 0; i < ids.length; i += 500) {
      const codes = await Promise.all(ids.slice(i, i + 500).map((id) => this.queues.training.remove(id, { removeChildren: false })));
      removed += codes.filter((c) => c === 1).length;
    }
    return removed;
  }

  /** Where the run's job (rank 0's) is (waiting, active, completed…), or null when BullMQ no longer has it. */
  async runJobState(runId: string): Promise<string | null> {
    return (await this.runJob(runId))?.state ?? null;
  }

  /** The run's rank-0 job: its state and, when it failed, why; null when BullMQ no longer has it. */
  async runJob(runId: string): Promise<JobSnapshot | null> {
    return this.jobSnapshot(this.queues.training, jobIds.run(runId));
  }

  async evaluationJob(evaluationId: string): Promise<JobSnapshot | null> {
    return this.jobSnapshot(this.queues.evaluation, jobIds.evaluation(evaluationId));
  }

  async sweepJob(sweepId: string): Promise<JobSnapshot | null> {
    return this.jobSnapshot(this.queues.sweeps, jobIds.sweep(sweepId));
  }

  private async jobSnapshot(queue: Queue, id: string): Promise<JobSnapshot | null> {
    const job = await queue.getJob(id);
    if (!job) return null;
    const state = await job.getState();
    // 'unknown': the job's hash outlived its state (a partial loss); treat as missing.
    if (state === 'unknown') return null;
    return { state, failedReason: job.failedReason || null, attemptsMade: job.attemptsMade };
  }

  /** A round trip to Redis through a queue's own connection (the health check's probe). */
  async ping(): Promise<void> {
    await this.queues.training.getJobCounts('waiting');
  }
}
