import type { Redis } from 'ioredis';
import type { OnApplicationShutdown } from '@nestjs/common';
import { Job, Queue } from 'bullmq';
import type { OrchestrationConfig } from '../config/orchestration.config';
import { QUEUE_NAMES, type QueueName } from '../queue/queues';
import { createRedis } from '../queue/redis';
import { workerAliveKey, workersKey } from './worker-slots';

/** A job a worker holds: enough to hand it back (its lock token proves nobody else took it since). */
export interface HeldJob {
  queue: QueueName;
  id: string;
  token: string;
}

/** What a worker process says about itself in the registry. */
export interface WorkerEntry {
  id: string;
  host: string;
  pid: number;
  /** Jobs it runs at once per queue it takes jobs from (its Workers' concurrency). */
  slots: Partial<Record<QueueName, number>>;
  jobs: HeldJob[];
  startedAt: string;
}

/** Free slots of a queue for a job group that needs them at once (a data-parallel run's ranks). */
export interface Capacity {
  workers: number;
  slots: number;
  /** Jobs a worker is running now. */
  active: number;
  /** Jobs waiting for a slot ahead of a new one (waiting, prioritized, delayed retries). */
  queued: number;
  free: number;
}

/**
 * Where the workers say they are: a hash of entries (`<prefix>:workers`, worker id → entry) and
 * one key per worker that lives only while it beats (`<prefix>:workers:<id>:alive`, expiring
 * after 3 heartbeats). The API reads it to admit data-parallel runs against the slots that
 * exist; workers read it to take back at once the jobs of a worker that stopped beating (killed,
 * its machine gone), instead of waiting for BullMQ's lock to expire and its stall check to run.
 */
export class WorkerRegistry implements OnApplicationShutdown {
  private readonly redis: Redis;
  private readonly queues = new Map<QueueName, Queue>();

  constructor(
    private readonly config: Pick<OrchestrationConfig, 'redisUrl' | 'queuePrefix'> & {
      worker: Pick<OrchestrationConfig['worker'], 'heartbeatMs'>;
    },
    redis?: Redis,
  ) {
    // createRedis reports the connection's outages once each, with every other Redis client of the process (RedisOutage).
    this.redis = redis ?? createRedis(config.redisUrl, 'ice-worker-registry');
  }

  private get hashKey(): string {
    return workersKey(this.config.queuePrefix);
  }

  private aliveKey(id: string): string {
    return workerAliveKey(this.hashKey, id);
  }

  /** How long a worker counts as alive after its last heartbeat. */
  get ttlMs(): number {
    return 3 * this.config.worker.heartbeatMs;
  }

  /** Writes the entry and refreshes the worker's liveness (register and every heartbeat). */
  async beat(entry: WorkerEntry): Promise<void> {
    await this.redis.multi().hset(this.hashKey, entry.id, JSON.stringify(entry)).set(this.aliveKey(entry.id), '1', 'PX', this.ttlMs).exec();
  }

  /** A worker that stops cleanly leaves the registry (its jobs were handed back by BullMQ already). */
  async leave(id: string): Promise<void> {
    await this.redis.multi().hdel(this.hashKey, id).del(this.aliveKey(id)).exec();
  }

  /** Every entry, split by whether its worker still beats. */
  async entries(): Promise<{ live: WorkerEntry[]; dead: WorkerEntry[] }> {
    const raw = await this.redis.hgetall(this.hashKey);
    const all = Object.values(raw).flatMap((json) => {
      try {
        return [JSON.parse(json) as WorkerEntry];
      } catch {
        return [];
      }
    });
    if (!all.length) return { live: [], dead: [] };
    const alive = await this.redis.mget(all.map((e) => this.aliveKey(e.id)));
    return { live: all.filter((_, i) => alive[i] !== null), dead: all.filter((_, i) => alive[i] === null) };
  }

  private queue(name: QueueName): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.redis, prefix: this.config.queuePrefix });
      q.on('error', () => undefined); // the shared connection's errors are reported above
      this.queues.set(name, q);
    }
    return q;
  }

  /** Slots of live workers for `queue`, how many are busy or spoken for, and how many are free. */
  async capacity(queue: QueueName): Promise<Capacity> {
    const { live } = await this.entries();
    const takers = live.filter((w) => (w.slots[queue] ?? 0) > 0);
    const slots = takers.reduce((n, w) => n + (w.slots[queue] ?? 0), 0);
    const c = await this.queue(queue).getJobCounts('active', 'waiting', 'prioritized', 'delayed');
    const active = c.active ?? 0;
    const queued = (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0);
    return { workers: takers.length, slots, active, queued, free: Math.max(0, slots - active - queued) };
  }

  /**
   * Takes back the jobs of workers that stopped beating: each goes back to the waiting list at
   * once (no attempt used: the job was not at fault), where a free worker picks it up and resumes
   * it from its checkpoint. Removing the entry first is the claim, so two workers reaping at once
   * move each job once; the lock token makes sure a job another worker already holds is left
   * alone. Returns the ids of the jobs moved.
   */
  async reap(log?: (message: string) => void): Promise<string[]> {
    const { dead } = await this.entries();
    const moved: string[] = [];
    for (const w of dead) {
      if ((await this.redis.hdel(this.hashKey, w.id)) !== 1) continue; // another worker claimed it
      for (const held of w.jobs) {
        if (!(QUEUE_NAMES as readonly string[]).includes(held.queue)) continue;
        try {
          const job = await Job.fromId(this.queue(held.queue), held.id);
          if (!job || !(await job.isActive())) continue;
          // Its lock may have expired meanwhile (then nobody holds it): move it regardless, as BullMQ's stall check would.
          const lock = await this.redis.get(`${this.config.queuePrefix}:${held.queue}:${held.id}:lock`);
          if (lock !== null && lock !== held.token) continue; // another worker holds it now
          await job.moveToWait(lock === null ? '0' : held.token);
          moved.push(held.id);
          log?.(`worker ${w.id} stopped beating: its job ${held.queue}/${held.id} is back in the waiting list`);
        } catch (e) {
          log?.(`could not take back job ${held.queue}/${held.id} of worker ${w.id}: ${(e as Error).message}`);
        }
      }
    }
    return moved;
  }

  private closed = false;

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    await this.redis.quit().catch(() => undefined);
  }
}
