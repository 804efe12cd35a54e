import IORedis, { type Redis } from 'ioredis';
import { Logger } from '@nestjs/common';
import { RedisOutage } from './redis-outage';

let processOutage: RedisOutage | null = null;

/** The process's one Redis outage tracker (its lines under the 'redis' logger). */
export function redisOutage(): RedisOutage {
  processOutage ??= new RedisOutage(new Logger('redis'));
  return processOutage;
}

/** BullMQ needs maxRetriesPerRequest: null on connections that block (workers, subscribers). Outages are logged once (RedisOutage). */
export function createRedis(url: string, name: string): Redis {
  const client = new IORedis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
  redisOutage().watch(name, client);
  return client;
}

/** Deletes every key under `${prefix}:` (a queue prefix's BullMQ keys), by SCAN so Redis never blocks. */
export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<void> {
  const redis = new IORedis(url);
  redis.on('error', () => undefined); // the command below fails with the reason
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
