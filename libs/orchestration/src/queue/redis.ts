import IORedis, { type Redis } from 'ioredis';

/** BullMQ needs maxRetriesPerRequest: null on connections that block (workers, subscribers). */
export function createRedis(url: string, name: string): Redis {
  return new IORedis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
}
