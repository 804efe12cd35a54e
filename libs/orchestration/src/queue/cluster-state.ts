import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { OnApplicationShutdown } from '@nestjs/common';
import type { OrchestrationConfig } from '../config/orchestration.config';
import { createRedis } from './redis';

/** Deletes the lease only if this holder still has it. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * The Redis keys that coordinate processes besides BullMQ's, pub/sub and the worker registry
 * (WorkerRegistry): leases that let one process at a time do a job such as reconciling (with
 * expiry, so that a process dying with one blocks nobody), and whether the registry can be trusted
 * to list every live worker yet (after a Redis restart it is empty until the workers beat again).
 */
export class ClusterState implements OnApplicationShutdown {
  private readonly prefix: string;

  constructor(
    private readonly config: OrchestrationConfig,
    private readonly redis: Redis = createRedis(config.redisUrl, 'ice-cluster'),
  ) {
    this.prefix = `${config.queuePrefix}:cluster`;
  }

  /** How long a worker's presence outlives its last heartbeat (WorkerRegistry's). */
  get presenceTtlMs(): number {
    return 3 * this.config.worker.heartbeatMs;
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
