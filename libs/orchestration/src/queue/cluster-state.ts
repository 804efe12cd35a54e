import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { OnApplicationShutdown } from '@nestjs/common';
import type { OrchestrationConfig } from '../config/orchestration.config';
import { createRedis } from './redis';

/** A worker as it announces itself: the jobs it is running right now. */
export interface WorkerPresence {
  id: string;
  pid: number;
  host: string;
  /** BullMQ job ids of its active jobs. */
  jobs: string[];
  at: string;
}

/** Deletes the lease only if this holder still has it. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * The one door to the Redis keys that coordinate processes (besides BullMQ's and pub/sub):
 * the worker registry — each worker's presence key, refreshed every heartbeat and expiring after
 * three, listing the jobs it runs — and the leases that let one process at a time do a job such
 * as reconciling. Both are soft state: after a Redis restart they come back within a heartbeat.
 */
export class ClusterState implements OnApplicationShutdown {
  private readonly prefix: string;

  constructor(
    private readonly config: OrchestrationConfig,
    private readonly redis: Redis = createRedis(config.redisUrl, 'ice-cluster'),
  ) {
    this.prefix = `${config.queuePrefix}:cluster`;
  }

  /** How long a worker's presence outlives its last heartbeat. */
  get presenceTtlMs(): number {
    return 3 * this.config.worker.heartbeatMs;
  }

  async announce(p: WorkerPresence): Promise<void> {
    await this.redis.set(`${this.prefix}:worker:${p.id}`, JSON.stringify(p), 'PX', this.presenceTtlMs);
  }

  async withdraw(workerId: string): Promise<void> {
    await this.redis.del(`${this.prefix}:worker:${workerId}`);
  }

  /** The workers whose presence has not expired. */
  async liveWorkers(): Promise<WorkerPresence[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}:worker:*`, 'COUNT', 500);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
    if (!keys.length) return [];
    const values = await this.redis.mget(...keys);
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerPresence);
  }

  /** Takes the named lease for `ttlMs` if nobody holds it; returns its token, or null when another process has it. */
  async acquire(name: string, ttlMs: number): Promise<string | null> {
    const token = randomUUID();
    const ok = await this.redis.set(`${this.prefix}:lease:${name}`, token, 'PX', ttlMs, 'NX');
    return ok === 'OK' ? token : null;
  }

  async release(name: string, token: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, `${this.prefix}:lease:${name}`, token);
  }

  /**
   * Whether every live worker has had time to announce itself: Redis has been up for longer than
   * a presence lives (after a restart without persistence the registry starts empty).
   */
  async registryComplete(): Promise<boolean> {
    const info = await this.redis.info('server');
    const uptime = Number(/uptime_in_seconds:(\d+)/.exec(info)?.[1] ?? 0);
    return uptime * 1000 >= this.presenceTtlMs;
  }

  /** True while the connection is up (a command would not wait for a reconnection). */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.redis.status !== 'end') await this.redis.quit().catch(() => undefined);
  }
}
