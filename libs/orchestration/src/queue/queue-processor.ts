import type { Type } from '@nestjs/common';
import { Processor, WorkerHost } from '@nestjs/bullmq';
import type { Job, WorkerOptions } from 'bullmq';
import type { OrchestrationConfig } from '../config/orchestration.config';
import type { QueueName } from './queues';

/** A Worker's settings; the connection and the key prefix are BullModule's (see QueueModule). */
export type QueueWorkerOptions = Omit<WorkerOptions, 'connection' | 'prefix'>;

type Dispatch = (job: Job, token: string | undefined, signal: AbortSignal | undefined) => Promise<unknown>;

/**
 * One queue's consumer: @nestjs/bullmq turns each such provider into a BullMQ Worker. Its Worker
 * does not run until JobWorkers has checked the handler registry and routed the queue through it.
 */
export abstract class QueueProcessor extends WorkerHost {
  abstract readonly queue: QueueName;
  private dispatch: Dispatch | null = null;

  /** Routes this queue's jobs (set at boot, before the Worker runs). */
  route(dispatch: Dispatch): void {
    this.dispatch = dispatch;
  }

  /** BullMQ's processor: (job, token, signal), the signal firing on the job's cancellation. */
  process(job: Job, token?: string, signal?: AbortSignal): Promise<unknown> {
    if (!this.dispatch) return Promise.reject(new Error(`queue ${this.queue}: the job registry has not routed this queue`));
    return this.dispatch(job, token, signal);
  }
}

/** The worker settings of a queue, from the configuration read at start-up. */
export function workerOptions(config: OrchestrationConfig, queue: QueueName): QueueWorkerOptions {
  const w = config.worker;
  return {
    concurrency: queue === 'sweeps' ? 4 : w.concurrency,
    lockDuration: w.lockDurationMs,
    stalledInterval: w.stalledIntervalMs,
    // Each crash of a worker holding the job counts as a stall; allow as many as attempts.
    maxStalledCount: w.attempts,
    // Started by JobWorkers once every job name has its handler.
    autorun: false,
  };
}

/** A processor class for `queue` with these worker options (decorated here: the options come from the configuration). */
export function queueProcessor(queue: QueueName, options: QueueWorkerOptions): Type<QueueProcessor> {
  @Processor(queue, options)
  class ConfiguredQueueProcessor extends QueueProcessor {
    readonly queue = queue;
  }
  Object.defineProperty(ConfiguredQueueProcessor, 'name', { value: `QueueProcessor(${queue})` });
  return ConfiguredQueueProcessor;
}
