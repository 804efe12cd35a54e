import type * as tf from '@tensorflow/tfjs-core';
import type { Redis } from 'ioredis';
import { flattenGradients, IceError, meanInRankOrder, unflattenGradients, type GradientReducer } from '@ice/core';
import { createRedis } from '../queue/redis';

export interface RedisGradientReducerOptions {
  /** A connection of its own: waiting blocks it (BLPOP). Closed by close() only when created here from `redisUrl`. */
  redis?: Redis;
  redisUrl?: string;
  /** Namespace of the keys, e.g. `${queuePrefix}:allreduce`. */
  keyPrefix: string;
  runId: string;
  rank: number;
  worldSize: number;
  /** How long a rank waits for the others at one step before it gives up with RANK_TIMEOUT. */
  timeoutMs: number;
  /** Lifetime of every key (refreshed on write): left-overs of a failed step disappear on their own. */
  ttlSeconds?: number;
}

/** Redis bounds a blocking pop's timeout by the second; waiting in slices lets a cancel through. */
const WAIT_SLICE_MS = 1000;
export const DEFAULT_ALLREDUCE_TTL_SECONDS = 600;

/**
 * The one door to Redis for gradient averaging. For step s, rank r:
 *  1. stores its flattened float32 gradient under `…:s:g:r` and, in the same transaction, pushes
 *     its rank onto the arrival list `…:s:n:o` of every other rank o;
 *  2. blocks on its own arrival list until every rank has arrived (or the timeout passes);
 *  3. reads all W gradients and averages them in rank order (bit-identical on every rank);
 *  4. counts itself done; the last rank to finish reading deletes the step's keys.
 * Keys expire after `ttlSeconds` whatever happens, so a group that failed mid-step leaves nothing
 * behind for long. A rank that re-sends a step after a retry writes the same bytes (training is
 * deterministic from a checkpoint), so a stale copy is as good as a fresh one.
 */
export class RedisGradientReducer implements GradientReducer {
  readonly rank: number;
  readonly worldSize: number;
  private readonly redis: Redis;
  private readonly ownsConnection: boolean;
  private readonly ttl: number;
  private busy = false;

  constructor(private readonly o: RedisGradientReducerOptions) {
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1)
      throw new IceError('CONFIG_INVALID', `worldSize must be a positive integer, got ${o.worldSize}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize)
      throw new IceError('CONFIG_INVALID', `rank must be an integer in [0, ${o.worldSize}), got ${o.rank}`);
    if (!(o.timeoutMs > 0)) throw new IceError('CONFIG_INVALID', `all-reduce timeout must be positive, got ${o.timeoutMs}`);
    if (!o.redis && !o.redisUrl) throw new IceError('CONFIG_INVALID', 'RedisGradientReducer needs a connection or a Redis URL');
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    // Outlive the wait, so that a slow rank's gradient is still there when the others arrive.
    this.ttl = Math.max(o.ttlSeconds ?? DEFAULT_ALLREDUCE_TTL_SECONDS, Math.ceil((2 * o.timeoutMs) / 1000));
    this.ownsConnection = !o.redis;
    this.redis = o.redis ?? createRedis(o.redisUrl!, `ice-allreduce-${o.runId}-${o.rank}`);
  }

  private key(step: number, ...rest: (string | number)[]): string {
    return [this.o.keyPrefix, this.o.runId, step, ...rest].join(':');
  }

  /** Every key of a step (for cleanup and tests). */
  stepKeys(step: number): string[] {
    const ranks = Array.from({ length: this.worldSize }, (_, r) => r);
    return [...ranks.map((r) => this.key(step, 'g', r)), ...ranks.map((r) => this.key(step, 'n', r)), this.key(step, 'done')];
  }

  async allReduceMean(step: number, grads: Map<string, tf.Tensor>, signal?: AbortSignal): Promise<Map<string, tf.Tensor>> {
    if (!Number.isSafeInteger(step) || step < 0)
      throw new IceError('INPUT_INVALID', `all-reduce step must be a non-negative integer, got ${step}`);
    const { layout, data } = flattenGradients(grads);
    if (this.worldSize === 1) return unflattenGradients(layout, data);
    if (this.busy) throw new IceError('INPUT_INVALID', 'RedisGradientReducer: one all-reduce at a time per rank');
    this.busy = true;
    try {
      const parts = await this.exchange(step, Buffer.from(data.buffer, data.byteOffset, data.byteLength), signal);
      for (const [r, p] of parts.entries()) {
        if (p.length !== layout.size) {
          throw new IceError(
            'INPUT_INVALID',
            `step ${step}: rank ${r} sent ${p.length} gradient elements, rank ${this.rank} has ${layout.size}: the ranks train different models`,
          );
        }
      }
      return unflattenGradients(layout, meanInRankOrder(parts));
    } finally {
      this.busy = false;
    }
  }

  private async exchange(step: number, mine: Buffer, signal: AbortSignal | undefined): Promise<Float32Array[]> {
    const W = this.worldSize;
    const announce = this.redis.multi().set(this.key(step, 'g', this.rank), mine, 'EX', this.ttl);
    for (let o = 0; o < W; o++) {
      if (o === this.rank) continue;
      announce.rpush(this.key(step, 'n', o), String(this.rank)).expire(this.key(step, 'n', o), this.ttl);
    }
    await announce.exec();

    const arrived = new Set<number>([this.rank]);
    const deadline = Date.now() + this.o.timeoutMs;
    const inbox = this.key(step, 'n', this.rank);
    for (;;) {
      while (arrived.size < W) {
        if (signal?.aborted)
          throw await this.giveUp(step, new IceError('CANCELLED', `cancelled while waiting for the other ranks at step ${step}`));
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw await this.giveUp(step, this.timeoutError(step, arrived));
        const popped = await this.redis.blpop(inbox, Math.min(remaining, WAIT_SLICE_MS) / 1000);
        if (popped) arrived.add(Number(popped[1]));
      }
      const raw = await this.redis.mgetBuffer(...Array.from({ length: W }, (_, r) => this.key(step, 'g', r)));
      // An arrival whose gradient is gone was a left-over of an earlier attempt: wait for the rank to send it again.
      const gone = raw.flatMap((b, r) => (b ? [] : [r]));
      if (gone.length) {
        for (const r of gone) arrived.delete(r);
        continue;
      }
      const parts = raw.map((b) => {
        const copy = new Uint8Array(b!.byteLength);
        copy.set(b!);
        return new Float32Array(copy.buffer, 0, Math.floor(copy.byteLength / 4));
      });
      const done = this.key(step, 'done');
      const [[, count]] = (await this.redis.multi().incr(done).expire(done, this.ttl).exec()) as [
        [Error | null, number],
        [Error | null, number],
      ];
      if (count >= W) await this.redis.del(...this.stepKeys(step));
      return parts;
    }
  }

  private timeoutError(step: number, arrived: Set<number>): IceError {
    const missing = Array.from({ length: this.worldSize }, (_, r) => r).filter((r) => !arrived.has(r));
    return new IceError(
      'RANK_TIMEOUT',
      `rank ${this.rank} of run ${this.o.runId} waited ${this.o.timeoutMs} ms at step ${step} for the gradients of ` +
        `rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ` +
        `(of ${this.worldSize}); is a worker free for every rank? The job is retried from its last checkpoint`,
      { runId: this.o.runId, step, rank: this.rank, missingRanks: missing },
    );
  }

  /** Takes this rank's gradient back (the others cannot complete the step without it anyway) and returns `e`. */
  private async giveUp(step: number, e: IceError): Promise<IceError> {
    await this.redis.del(this.key(step, 'g', this.rank)).catch(() => undefined);
    return e;
  }

  async close(): Promise<void> {
    if (this.ownsConnection && this.redis.status !== 'end') await this.redis.quit().catch(() => undefined);
  }
}
