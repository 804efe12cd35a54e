import type { Redis } from 'ioredis';

/** The registry's hash of worker entries for a queue prefix (see WorkerRegistry). */
export function workersKey(queuePrefix: string): string {
  return `${queuePrefix}:workers`;
}

/** The key that lives while worker `id` beats. */
export function workerAliveKey(hashKey: string, id: string): string {
  return `${hashKey}:${id}:alive`;
}

/**
 * Live workers taking jobs from `queue` and their slots, read straight from the registry's keys
 * (Redis only: the all-reduce transport thread reads it too, and loads neither BullMQ nor tfjs).
 */
export async function registeredSlots(redis: Redis, hashKey: string, queue: string): Promise<{ workers: number; slots: number }> {
  const raw = await redis.hgetall(hashKey);
  const entries = Object.values(raw).flatMap((json) => {
    try {
      return [JSON.parse(json) as { id: string; slots: Record<string, number | undefined> }];
    } catch {
      return [];
    }
  });
  if (!entries.length) return { workers: 0, slots: 0 };
  const alive = await redis.mget(entries.map((e) => workerAliveKey(hashKey, e.id)));
  const takers = entries.filter((e, i) => alive[i] !== null && (e.slots[queue] ?? 0) > 0);
  return { workers: takers.length, slots: takers.reduce((n, e) => n + (e.slots[queue] ?? 0), 0) };
}
