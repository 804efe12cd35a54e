/**
 * One log line when Redis goes away and one when it is back, per process, whatever the number of
 * connections (BullMQ's queues, workers and flow producer, pub/sub, the lease) and of their
 * reconnection attempts: ioredis emits 'error' on every failed retry of every connection, which
 * turned a Redis restart into hundreds of "Unhandled error event" lines.
 */
import type { EventEmitter } from 'node:events';

export interface RedisOutageState {
  /** Null while Redis answers. */
  downSince: Date | null;
  lastError: string | null;
}

type Log = { warn(message: string): void; log(message: string): void };

export class RedisOutage {
  private downSince: Date | null = null;
  private lastError: string | null = null;

  constructor(
    private readonly log: Log,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): RedisOutageState {
    return { downSince: this.downSince, lastError: this.lastError };
  }

  /** A connection failed: logs the start of the outage once. */
  failed(source: string, error: unknown): void {
    this.lastError = error instanceof Error ? error.message : String(error);
    if (this.downSince) return;
    this.downSince = new Date(this.now());
    this.log.warn(
      `Redis unreachable since ${this.downSince.toISOString()} (${source}: ${this.lastError}); retrying quietly until it is back`,
    );
  }

  /** A connection is ready again: logs the end of the outage once. */
  recovered(): void {
    if (!this.downSince) return;
    const seconds = (this.now() - this.downSince.getTime()) / 1000;
    this.downSince = null;
    this.lastError = null;
    this.log.log(`Redis back after ${seconds.toFixed(1)} s`);
  }

  /**
   * Handles a connection's (or a BullMQ object's) 'error' events and, where it emits them,
   * 'ready'/'resumed' (a connection back). Every Redis client of the process goes through this.
   */
  watch(source: string, emitter: EventEmitter): void {
    emitter.on('error', (e: unknown) => {
      if (isConnectionError(e)) this.failed(source, e);
      else this.log.warn(`${source}: ${e instanceof Error ? e.message : String(e)}`);
    });
    emitter.on('ready', () => this.recovered());
  }
}

/** Errors of the link to Redis (as opposed to a command's own error, worth a line of its own). */
export function isConnectionError(e: unknown): boolean {
  const err = e as { code?: string; message?: string } | null;
  const code = err?.code ?? '';
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH'].includes(code))
    return true;
  return /connect|connection|closed|ECONNREFUSED|ECONNRESET|Stream isn't writeable|LOADING|max retries/i.test(err?.message ?? '');
}
