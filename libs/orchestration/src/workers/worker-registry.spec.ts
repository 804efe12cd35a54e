import { randomBytes, randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import { RingGroup } from '../allreduce/ring-group';
import { deleteKeysWithPrefix } from '../queue/redis';
import { WorkerRegistry, type WorkerEntry } from './worker-registry';
import { registeredSlots, workersKey } from './worker-slots';

/** The worker registry against the real Redis, under a prefix of its own. */
const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('WorkerRegistry', () => {
  const queuePrefix = `ice-test-registry-${randomBytes(4).toString('hex')}`;
  const config = { redisUrl: REDIS_URL, queuePrefix, worker: { heartbeatMs: 100 } };
  let registry: WorkerRegistry;
  let redis: IORedis;
  let queue: Queue;

  const entry = (id: string, slots: number, jobs: WorkerEntry['jobs'] = []): WorkerEntry => ({
    id,
    host: 'h',
    pid: 1,
    slots: { training: slots, evaluation: 1 },
    jobs,
    startedAt: new Date().toISOString(),
  });

  beforeAll(() => {
    registry = new WorkerRegistry(config);
    redis = new IORedis(REDIS_URL);
    queue = new Queue('training', { connection: { url: REDIS_URL }, prefix: queuePrefix });
  });
  afterAll(async () => {
    await queue.close();
    await registry.close();
    await redis.quit();
    await deleteKeysWithPrefix(REDIS_URL, queuePrefix);
  });

  it('counts the slots of live workers only, and the jobs running or queued ahead', async () => {
    await registry.beat(entry('a', 2));
    await registry.beat(entry('b', 1));
    await queue.add('run.train', {}, { jobId: 'queued-1' });
    expect(await registry.capacity('training')).toEqual({ workers: 2, slots: 3, active: 0, queued: 1, free: 2 });
    expect(await registeredSlots(redis, workersKey(queuePrefix), 'training')).toEqual({ workers: 2, slots: 3 });
    // b stops beating: after 3 heartbeats it no longer counts.
    await new Promise((r) => setTimeout(r, 400));
    await registry.beat(entry('a', 2));
    expect((await registry.entries()).dead.map((e) => e.id)).toEqual(['b']);
    expect(await registry.capacity('training')).toMatchObject({ workers: 1, slots: 2, free: 1 });
    await registry.leave('a');
    expect(await registry.capacity('training')).toMatchObject({ workers: 0, slots: 0, free: 0 });
    await queue.remove('queued-1');
    await registry.reap();
  });

  it("takes back a dead worker's active job at once (lock token checked), and only once", async () => {
    await queue.add('run.train', { n: 1 }, { jobId: 'held' });
    // A BullMQ worker takes the job (it holds the lock), then "dies": no more heartbeats, no lock renewal.
    const consumer = new Worker('training', null, { connection: { url: REDIS_URL }, prefix: queuePrefix, lockDuration: 60_000 });
    const token = randomUUID();
    const job = await consumer.getNextJob(token);
    expect(job?.id).toBe('held');
    expect(await queue.getJobState('held')).toBe('active');
    await registry.beat(entry('dead', 1, [{ queue: 'training', id: 'held', token }]));
    // A job another worker has re-taken since (another token on the lock) is left alone.
    await registry.beat(entry('stale', 1, [{ queue: 'training', id: 'held', token: 'someone-else' }]));
    await new Promise((r) => setTimeout(r, 400));
    const logs: string[] = [];
    const moved = await Promise.all([registry.reap((m) => logs.push(m)), registry.reap((m) => logs.push(m))]);
    expect(moved.flat()).toEqual(['held']);
    expect(await queue.getJobState('held')).toBe('waiting');
    expect(logs.join('\n')).toMatch(/worker dead stopped beating: its job training\/held is back in the waiting list/);
    expect((await registry.entries()).dead).toEqual([]);
    await consumer.close(true);
    await queue.remove('held');
  });

  it('a data-parallel group that can never form (fewer live slots than ranks) says so, not retried', async () => {
    // Rank 0 of a fresh 3-rank run, waiting 150 ms: within the entries' 300 ms of life after their beat.
    const rankZero = (): RingGroup =>
      new RingGroup({
        redis,
        keyPrefix: `${queuePrefix}:allreduce`,
        runId: randomUUID(),
        rank: 0,
        worldSize: 3,
        timeoutMs: 150,
        heartbeatTimeoutMs: 1000,
        pollMs: 20,
        workersKey: workersKey(queuePrefix),
        attempt: { number: 1, of: 3 },
      });
    await registry.beat(entry('only', 2));
    const g = rankZero();
    await expect(g.allReduceSum(0, new Float32Array(4))).rejects.toMatchObject({
      code: 'NO_CAPACITY',
      message: expect.stringMatching(
        /waited 150 ms at step 0 for ranks 1, 2: only 2 training slots are registered \(1 live worker\) for 3 ranks, so the group cannot form\. Not retried/,
      ),
    });
    await g.close();
    // With enough slots the wait is an ordinary, retried timeout that says which attempt it was.
    await registry.beat(entry('only', 2));
    await registry.beat(entry('more', 1));
    const h = rankZero();
    await expect(h.allReduceSum(0, new Float32Array(4))).rejects.toMatchObject({
      code: 'RANK_TIMEOUT',
      message: expect.stringMatching(/Attempt 1 of 3 fails; the job is retried/),
    });
    await h.close();
  });
});
