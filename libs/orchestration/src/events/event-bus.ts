import type { Redis } from 'ioredis';
import type { OnApplicationShutdown } from '@nestjs/common';
import type { OrchestrationConfig } from '../config/orchestration.config';
import { createRedis, redisOutage } from '../queue/redis';
import type { OrchestrationEvent } from './orchestration.events';

/** A request to stop a run, broadcast to every worker (only the one holding its job acts). */
export interface CancelMessage {
  runId: string;
}

type Listener = (message: string) => void;

/**
 * The one door to Redis pub/sub: live run/sweep events (workers → API → SSE) and cancel
 * requests (API → workers). Pub/sub is fire-and-forget; the database stays the record, and SSE
 * streams start from a database snapshot.
 */
export class EventBus implements OnApplicationShutdown {
  private sub: Redis | null = null;
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(
    private readonly config: OrchestrationConfig,
    private readonly pub: Redis = createRedis(config.redisUrl, 'ice-events-pub'),
  ) {}

  private channel(kind: 'run' | 'sweep' | 'cancel', id?: string): string {
    return id ? `${this.config.queuePrefix}:events:${kind}:${id}` : `${this.config.queuePrefix}:${kind}`;
  }

  async publish(event: OrchestrationEvent): Promise<void> {
    const body = JSON.stringify(event);
    switch (event.type) {
      case 'run.status':
      case 'run.progress':
        await this.pub.publish(this.channel('run', event.runId), body);
        if (event.sweepId) await this.pub.publish(this.channel('sweep', event.sweepId), body);
        return;
      case 'sweep.status':
        await this.pub.publish(this.channel('sweep', event.sweepId), body);
        return;
    }
  }

  async requestCancel(msg: CancelMessage): Promise<void> {
    await this.pub.publish(this.channel('cancel'), JSON.stringify(msg));
  }

  /** Calls `fn` for every cancel request; resolves once subscribed. Returns the unsubscribe function. */
  async onCancel(fn: (msg: CancelMessage) => void): Promise<() => Promise<void>> {
    return this.listen(this.channel('cancel'), (m) => fn(JSON.parse(m) as CancelMessage));
  }

  /** Calls `fn` for each event of the run; resolves once subscribed (events from then on are delivered). */
  onRunEvent(runId: string, fn: (e: OrchestrationEvent) => void): Promise<() => Promise<void>> {
    return this.listen(this.channel('run', runId), (m) => fn(JSON.parse(m) as OrchestrationEvent));
  }

  /** Events of the sweep and of each of its runs. */
  onSweepEvent(sweepId: string, fn: (e: OrchestrationEvent) => void): Promise<() => Promise<void>> {
    return this.listen(this.channel('sweep', sweepId), (m) => fn(JSON.parse(m) as OrchestrationEvent));
  }

  private async listen(channel: string, fn: Listener): Promise<() => Promise<void>> {
    if (!this.sub) {
      this.sub = this.pub.duplicate({ connectionName: 'ice-events-sub' });
      redisOutage().watch('ice-events-sub', this.sub);
      this.sub.on('message', (ch: string, message: string) => {
        for (const l of this.listeners.get(ch) ?? []) l(message);
      });
    }
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      await this.sub.subscribe(channel);
    }
    set.add(fn);
    return async () => {
      const s = this.listeners.get(channel);
      if (!s) return;
      s.delete(fn);
      if (s.size === 0) {
        this.listeners.delete(channel);
        await this.sub?.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    this.listeners.clear();
    for (const c of [this.sub, this.pub]) if (c && c.status !== 'end') await c.quit().catch(() => undefined);
    this.sub = null;
  }
}
