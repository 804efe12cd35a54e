import { parentPort, workerData } from 'node:worker_threads';
import IORedis from 'ioredis';
import { RedisOutage } from '../queue/redis-outage';
import { RingGroup, type RingGroupOptions } from './ring-group';

/**
 * The all-reduce transport's own thread (started by RingGradientReducer): it owns the rendezvous
 * connection, the listener, the ring sockets and their heartbeats, so that they keep running
 * while the training thread is inside a synchronous tfjs step for seconds — a peer that computes
 * is never mistaken for a stalled one, and a dead peer is noticed while this rank computes.
 * It loads no tfjs. The gradient arrives in a SharedArrayBuffer and is replaced in place by the mean.
 */
export type TransportOptions = Omit<RingGroupOptions, 'redis' | 'log'> & { redisUrl: string };

export type ToTransport =
  | { type: 'reduce'; id: number; step: number; length: number; buffer: SharedArrayBuffer; resumable?: number[] }
  | { type: 'abort'; id: number }
  | { type: 'close' };

export type FromTransport =
  | { type: 'log'; message: string }
  | { type: 'reduced'; id: number; formMs?: number; transport?: 'tcp' | 'shm' }
  | { type: 'failed'; id: number; error: { name: string; message: string; code?: string; details?: Record<string, unknown> } }
  | { type: 'closed' };

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('ring-transport.thread must run in a worker thread');
  // Started by startThread, whose bootstrap hands the caller's data as workerData.data (read here
  // directly, as threadData() does: importing @ice/core would load TensorFlow.js into this thread).
  const { options } = (workerData as { data: { options: TransportOptions } }).data;
  const post = (m: FromTransport): void => port.postMessage(m);
  const { redisUrl, ...rest } = options;
  // A few commands per group formation; fail them (and so the attempt) rather than queue them forever while Redis is away.
  const redis = new IORedis(redisUrl, { connectionName: `ice-allreduce-${options.runId}-${options.rank}`, maxRetriesPerRequest: 3 });
  // The commands that fail report the problem to the attempt; the outage itself is logged once, not per reconnection try.
  new RedisOutage({ warn: (message) => post({ type: 'log', message }), log: (message) => post({ type: 'log', message }) }).watch(
    'all-reduce rendezvous',
    redis,
  );
  const group = new RingGroup({ ...rest, redis, log: (message) => post({ type: 'log', message }) });
  const running = new Map<number, AbortController>();
  let formed = false;

  port.on('message', (m: ToTransport) => {
    switch (m.type) {
      case 'reduce': {
        const ac = new AbortController();
        running.set(m.id, ac);
        group
          .allReduceMean(m.step, new Float32Array(m.buffer, 0, m.length), ac.signal, m.resumable)
          .then(
            () => {
              const first = !formed;
              formed = true;
              post({
                type: 'reduced',
                id: m.id,
                ...(first ? { formMs: group.stats.formMs, transport: group.stats.transport } : {}),
              });
            },
            (e: unknown) => {
              const err = e as Error & { code?: string; details?: Record<string, unknown> };
              post({
                type: 'failed',
                id: m.id,
                error: { name: err.name ?? 'Error', message: err.message ?? String(e), code: err.code, details: err.details },
              });
            },
          )
          .finally(() => running.delete(m.id));
        return;
      }
      case 'abort':
        running.get(m.id)?.abort();
        return;
      case 'close':
        for (const ac of running.values()) ac.abort();
        void group
          .close()
          .finally(() => redis.quit().catch(() => redis.disconnect()))
          .finally(() => {
            post({ type: 'closed' });
            port.close();
          });
        return;
    }
  });
}

main();
