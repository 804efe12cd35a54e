import * as os from 'node:os';
import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from '../config/orchestration.config';
import { workerOptions } from '../queue/queue-processor';
import type { QueueName } from '../queue/queues';
import { WorkerRegistry, type HeldJob, type WorkerEntry } from './worker-registry';

/**
 * This worker process in the registry: its slots per queue and the jobs it holds, beating every
 * WORKER_HEARTBEAT_MS; at each beat (and at start-up, so a restarted worker takes back what its
 * predecessor held) it hands back the jobs of workers that stopped beating. A clean stop leaves
 * the registry.
 */
@Injectable()
export class WorkerPresence implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly log = new Logger('presence');
  private readonly held = new Map<string, HeldJob>();
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = new Date().toISOString();
  /** Logged once per outage, not per beat. */
  private failing = false;
  private leaving = false;

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly registry: WorkerRegistry,
  ) {}

  private entry(): WorkerEntry {
    const slots: Partial<Record<QueueName, number>> = {};
    for (const q of this.config.worker.queues) slots[q] = workerOptions(this.config, q).concurrency ?? 1;
    return {
      id: this.config.worker.id,
      host: os.hostname(),
      pid: process.pid,
      slots,
      jobs: [...this.held.values()],
      startedAt: this.startedAt,
    };
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.config.worker.heartbeatMs);
    this.timer.unref();
  }

  /** A job this worker now runs (written at once: a crash a moment later must still find it here). */
  hold(queue: QueueName, id: string, token: string): void {
    this.held.set(`${queue}/${id}`, { queue, id, token });
    void this.beat();
  }

  release(queue: QueueName, id: string): void {
    this.held.delete(`${queue}/${id}`);
    void this.beat();
  }

  private async beat(): Promise<boolean> {
    if (this.leaving) return false;
    try {
      await this.registry.beat(this.entry());
      if (this.failing) this.log.log('the worker registry answers again');
      this.failing = false;
      return true;
    } catch (e) {
      if (!this.failing) this.log.warn(`cannot reach the worker registry (Redis): ${(e as Error).message}; retrying every beat`);
      this.failing = true;
      return false;
    }
  }

  private async tick(): Promise<void> {
    if (!(await this.beat())) return;
    await this.registry
      .reap((m) => this.log.log(m))
      .catch((e: unknown) => this.log.warn(`reaping stopped workers failed: ${(e as Error).message}`));
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    this.leaving = true;
    await this.registry.leave(this.config.worker.id).catch(() => undefined);
  }
}
