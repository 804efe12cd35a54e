/**
 * The property the worker design rests on: a long CPU-bound job keeps its BullMQ lock when it
 * runs in a worker thread (the way runs are trained), and loses it when the same work blocks the
 * event loop (the control). Lock duration 1 s, 4 s of CPU work.
 */
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import IORedis from 'ioredis';
import { runInThread } from '@ice/orchestration';
import { REDIS_URL } from './support/harness';

const SPIN = path.join(__dirname, '..', 'libs', 'orchestration', 'src', 'threads', 'fixtures', 'spin.task.ts');

function busyLoop(ms: number): void {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
}

describe('lock renewal under CPU-bound jobs (e2e, real Redis)', () => {
  const prefix = `e2e-lock-${randomBytes(4).toString('hex')}`;
  const connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('cpu', { connection, prefix });
  const events = new QueueEvents('cpu', { connection: { url: REDIS_URL }, prefix });

  afterAll(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
    await events.close();
    await connection.quit();
  });

  async function runOne(
    processor: (job: Job) => Promise<unknown>,
  ): Promise<{ completed: boolean; stalled: number; renewals: number; failures: string[] }> {
    const workerConn = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    const worker = new Worker('cpu', processor, {
      connection: workerConn,
      prefix,
      lockDuration: 1000,
      stalledInterval: 500,
      maxStalledCount: 0,
      concurrency: 1,
    });
    let renewals = 0;
    let stalled = 0;
    const failures: string[] = [];
    worker.on('locksRenewed', () => renewals++);
    worker.on('stalled', () => stalled++);
    worker.on('error', (e) => failures.push(e.message));
    worker.on('failed', (_job, e) => failures.push(e.message));
    await worker.waitUntilReady();
    const job = await queue.add('spin', {}, { attempts: 1 });
    let completed = false;
    try {
      await job.waitUntilFinished(events, 15_000);
      completed = true;
    } catch (e) {
      failures.push((e as Error).message);
    }
    await worker.close(true);
    await workerConn.quit();
    return { completed, stalled, renewals, failures };
  }

  it('keeps the lock of a job whose CPU work runs in a worker thread', async () => {
    const r = await runOne(() => runInThread(SPIN, { totalMs: 4000, sliceMs: 200, honourCancel: true }));
    expect(r.failures).toEqual([]);
    expect(r.completed).toBe(true);
    expect(r.stalled).toBe(0);
    // Renewed every ~500 ms while the thread burned CPU.
    expect(r.renewals).toBeGreaterThanOrEqual(4);
  }, 30_000);

  it('(control) loses the lock when the same work blocks the event loop', async () => {
    const r = await runOne(() => {
      busyLoop(4000);
      return Promise.resolve('done');
    });
    expect(r.completed).toBe(false);
    expect(r.failures.join('\n')).toMatch(/lock|stalled/i);
  }, 30_000);
});
