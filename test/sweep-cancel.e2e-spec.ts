/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return -- response bodies are untyped JSON of the API under test */
import { Queue } from 'bullmq';
import {
  createTestEnv,
  http,
  REDIS_URL,
  spawnWorker,
  startApi,
  TINY_RUN,
  waitFor,
  type TestApi,
  type TestEnv,
  type TestWorker,
} from './support/harness';

const RUNS = 3000;

/**
 * POST /sweeps/:id/cancel on a 3,000-run sweep with one worker busy on its first run: one call
 * cancels the queued runs at once (one UPDATE, their jobs removed from the waiting list in bulk),
 * stops the running one, and the sweep ends cancelled. Prints the time the cancel took.
 */
describe('bulk cancel of a sweep (e2e)', () => {
  let t: TestEnv;
  let api: TestApi;
  let worker: TestWorker;
  let queue: Queue;

  beforeAll(async () => {
    t = await createTestEnv('sweep_cancel');
    api = await startApi(t);
    worker = spawnWorker(t, { WORKER_ID: 'worker-a', WORKER_CONCURRENCY: '1' });
    queue = new Queue('training', { connection: { url: REDIS_URL }, prefix: t.env.QUEUE_PREFIX });
  });
  afterAll(async () => {
    await worker?.stop();
    await queue?.close();
    await api?.close();
    await t?.cleanup();
  });

  it(`cancels ${RUNS} runs in one call, in seconds; their jobs leave the waiting list at once`, async () => {
    const submitted = await http(api.url, 'POST', '/sweeps', {
      name: 'big',
      base: { ...TINY_RUN, steps: 20_000, checkpointEvery: 10_000 },
      grid: { alpha: [0.5] },
      seeds: Array.from({ length: RUNS }, (_, i) => i),
      allowLargeGrid: true,
    });
    expect(submitted.status).toBe(201);
    const id = submitted.body.id as string;
    expect(submitted.body.runCount).toBe(RUNS);
    await worker.ready;
    await waitFor(
      'the first run to be running',
      async () => (await http(api.url, 'GET', `/sweeps/${id}`)).body.counts.running === 1,
      90_000,
    );
    expect(await queue.getWaitingCount()).toBeGreaterThan(RUNS - 10);

    const t0 = performance.now();
    const cancel = await http(api.url, 'POST', `/sweeps/${id}/cancel`, {});
    const ms = Math.round(performance.now() - t0);
    const waitingAfter = await queue.getWaitingCount();
    console.log(JSON.stringify({ bulkCancel: { runs: RUNS, ms, cancelled: cancel.body.cancelled, stopping: cancel.body.stopping } }));
    expect(cancel.status).toBe(202);
    expect(cancel.body).toMatchObject({ cancelled: RUNS - 1, stopping: 1, removedJobs: RUNS - 1 });
    expect(cancel.body.counts).toMatchObject({ cancelled: RUNS - 1, running: 1, queued: 0 });
    expect(waitingAfter).toBe(0);
    // Seconds, not minutes (one by one took 259 s); generous for a shared 2-core machine.
    expect(ms).toBeLessThan(15_000);

    // The running run stops between two steps; the sweep's finalize job then settles it.
    const done = await waitFor(
      'the sweep to end',
      async () => {
        const s = await http(api.url, 'GET', `/sweeps/${id}`);
        return s.body.status === 'cancelled' ? s.body : undefined;
      },
      60_000,
    );
    expect(done.counts).toEqual({ queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: RUNS });
    // No cancelled run was ever started by the worker.
    expect(done.runs.filter((r: { attempts: number }) => r.attempts > 0)).toHaveLength(1);
    expect((await http(api.url, 'POST', `/sweeps/${id}/cancel`, {})).status).toBe(409);
  }, 240_000);

  it('a queued single run cancelled leaves the waiting list at once', async () => {
    // The worker is idle now; hold it with a long run so the next one stays queued.
    const busy = await http(api.url, 'POST', '/experiments', { ...TINY_RUN, steps: 20_000, checkpointEvery: 10_000 });
    await waitFor(
      'the worker to take the first run',
      async () => (await http(api.url, 'GET', `/runs/${busy.body.id}`)).body.status === 'running',
      30_000,
    );
    const queued = await http(api.url, 'POST', '/experiments', TINY_RUN);
    expect(await queue.getJob(`run-${queued.body.id}`)).toBeDefined();
    const r = await http(api.url, 'POST', `/runs/${queued.body.id}/cancel`, {});
    expect(r.body.status).toBe('cancelled');
    expect(await queue.getJob(`run-${queued.body.id}`)).toBeUndefined();
    expect(await queue.getWaitingCount()).toBe(0);
    await http(api.url, 'POST', `/runs/${busy.body.id}/cancel`, {});
  }, 60_000);
});
