import IORedis, { type Redis } from 'ioredis';

/** BullMQ needs maxRetriesPerRequest: null on connections that block (workers, subscribers). */
export function createRedis(url: string, name: string): Redis {
  return new IORedis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
}

/** Deletes every key under `${prefix}:` (a queue prefix's BullMQ keys), by SCAN so Redis never blocks. */
export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<void> {
  const redis = new IORedis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await redis.quit();
  }
}
